"""Admin for authors: the owner picked by name (autocomplete), lorebook keys edited one per line,
and admin saves kept as revisions like the editor's."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from characters import services
from characters.models import Character, LorebookEntry, Revision
from tests import cardkit
from tests.characters.formkit import read_form
from tests.factories import make_character

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def test_the_owner_is_chosen_by_name_with_an_autocomplete(staff, owner):
    mara = make_character(owner=owner)
    html = staff.get(reverse("admin:characters_character_change", args=[mara.pk])).content.decode()
    assert 'class="admin-autocomplete' in html and 'name="owner"' in html
    assert 'id="lookup_id_owner"' not in html  # not a raw id with a magnifier
    found = staff.get(
        reverse("admin:autocomplete"),
        {"term": "oliv", "app_label": "characters", "model_name": "character", "field_name": "owner"},
    ).json()
    assert [r["text"] for r in found["results"]] == ["olivia"]


def _book_page(staff, lorebook) -> tuple[str, dict]:
    url = reverse("admin:characters_lorebook_change", args=[lorebook.pk])
    html = staff.get(url).content.decode()
    return url, read_form(html, form_id="lorebook_form")


def test_lorebook_keys_are_edited_one_per_line_and_the_save_is_a_revision(staff, owner, admin_user):
    result = services.lorebook_import(
        source=json.dumps(cardkit.world_info()).encode(), file_name="harbor.json", owner=owner
    )
    book = result.object
    url, form = _book_page(staff, book)
    keys = next(name for name, value in form.items() if name.endswith("-keys") and value == ["harbor"])
    # A line per key, not ["harbor"] as JSON.
    form[keys] = ["harbor\r\nport, dock\r\n\r\n  quay  "]
    form["_save"] = ["Save"]
    response = staff.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    entry = LorebookEntry.objects.get(lorebook=book, uid="0")
    assert entry.keys == ["harbor", "port, dock", "quay"]
    revision = Revision.objects.get(lorebook=book)
    assert revision.author == admin_user and revision.number == 2
    assert revision.changes["entries"]["changed"] == {
        str(entry.pk): {"keys": [["harbor"], ["harbor", "port, dock", "quay"]]}
    }


def test_an_admin_edit_of_a_character_is_a_revision_the_history_can_undo(staff, owner, admin_user):
    mara = make_character(owner=owner, description="Before the admin.")
    url = reverse("admin:characters_character_change", args=[mara.pk])
    form = read_form(staff.get(url).content.decode(), form_id="character_form")
    form["description"] = ["After the admin."]
    form["_save"] = ["Save"]
    response = staff.post(url, form)
    assert response.status_code == 302, response.context["adminform"].form.errors
    mara.refresh_from_db()
    assert (mara.description, mara.revision) == ("After the admin.", 2)
    assert Revision.objects.get(character=mara).author == admin_user
    staff.post(reverse("characters:revision_restore", args=[mara.code, 1]))
    assert Character.objects.get(pk=mara.pk).description == "Before the admin."
