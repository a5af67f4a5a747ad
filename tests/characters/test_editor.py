"""The character editor: writing a character from nothing, editing one (every field, greetings,
the character's note), its limits and errors, stale saves, permissions, pictures and duplicates."""

from __future__ import annotations

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from characters import services
from characters.models import Character, Lorebook
from tests import cardkit
from tests.characters.formkit import read_form
from tests.factories import make_character

pytestmark = pytest.mark.django_db


@pytest.fixture
def no_cachalot():
    """Count the queries themselves, not cachalot's hits (a settings change does not turn it off)."""
    from cachalot.api import cachalot_disabled

    with cachalot_disabled():
        yield


def editor_form(client, character) -> dict:
    response = client.get(reverse("characters:edit", args=[character.code]))
    assert response.status_code == 200
    return read_form(response.content.decode())


def new_character_form(client) -> dict:
    return read_form(client.get(reverse("characters:new")).content.decode())


def picture(fmt: str = "PNG", size=(300, 300), color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def imported(owner, card: dict | None = None) -> Character:
    card = card or cardkit.v3_card("Ada")
    data = cardkit.png_card({"chara": cardkit.b64(cardkit.v2_card("Ada")), "ccv3": cardkit.b64(card)})
    result = services.card_import(source=data, file_name="ada.png", owner=owner)
    assert result.status == "imported", result.reason
    return result.object


# --- writing from nothing -------------------------------------------------------------------------


def test_a_user_writes_a_character_from_nothing(owner_client, owner):
    form = new_character_form(owner_client)
    form.update(
        name=["Mara the Cartographer"],
        description=["Maps every coast she sees.\r\nNever lost."],
        first_message=["*Unrolls a map.* Where to, {{user}}?"],
        alternate_greetings=["Another coast, another map.", "You again!"],
        tags=["Fantasy, maps,  fantasy"],
        depth_prompt_prompt=["Mara mentions the weather."],
        depth_prompt_depth=["2"],
        depth_prompt_role=["user"],
        talkativeness=["0.8"],
        avatar=[SimpleUploadedFile("mara.png", picture(), content_type="image/png")],
    )
    response = owner_client.post(reverse("characters:new"), form)
    assert response.status_code == 302
    mara = Character.objects.get(name="Mara the Cartographer")
    assert response["Location"] == reverse("characters:edit", args=[mara.code])
    assert (mara.owner, mara.visibility, mara.revision) == (owner, "private", 1)
    assert mara.description == "Maps every coast she sees.\nNever lost."
    assert mara.greetings() == [
        "*Unrolls a map.* Where to, {{user}}?",
        "Another coast, another map.",
        "You again!",
    ]
    assert sorted(t.name for t in mara.tags.all()) == ["Fantasy", "maps"]
    assert mara.extensions == {
        "depth_prompt": {"prompt": "Mara mentions the weather.", "depth": 2, "role": "user"},
        "talkativeness": 0.8,
    }
    assert mara.avatar and mara.thumbnail
    # Its exported card carries every field entered, in both chunks.
    card = json.loads(owner_client.get(reverse("characters:card_json", args=[mara.code])).content)
    assert card["data"]["alternate_greetings"] == ["Another coast, another map.", "You again!"]
    assert card["data"]["extensions"]["depth_prompt"]["prompt"] == "Mara mentions the weather."
    assert sorted(card["data"]["tags"]) == ["Fantasy", "maps"]
    # The PNG card as SillyTavern reads it: both chunks, every field entered.
    png = owner_client.get(reverse("characters:card_png", args=[mara.code])).content
    for keyword, spec in (("chara", "chara_card_v2"), ("ccv3", "chara_card_v3")):
        chunk = _chunk(png, keyword)
        assert chunk["spec"] == spec
        data = chunk["data"]
        assert (data["name"], data["description"], data["first_mes"]) == (
            "Mara the Cartographer",
            "Maps every coast she sees.\nNever lost.",
            "*Unrolls a map.* Where to, {{user}}?",
        )
        assert data["alternate_greetings"] == ["Another coast, another map.", "You again!"]
        assert data["extensions"]["depth_prompt"] == {
            "prompt": "Mara mentions the weather.",
            "depth": 2,
            "role": "user",
        }
        assert data["extensions"]["talkativeness"] == 0.8


def test_an_empty_name_and_an_oversize_description_are_refused_next_to_their_fields(owner_client, settings):
    form = new_character_form(owner_client)
    limit = settings.RPCHAT["MAX_CARD_FIELD_CHARS"]
    form.update(name=["   "], description=["x" * 2_000_000], scenario=["A harbour at dawn."])
    response = owner_client.post(reverse("characters:new"), form)
    assert response.status_code == 400
    page = read_form(response.content.decode())
    assert page["scenario"] == ["A harbour at dawn."]  # nothing the user wrote is lost
    assert len(page["description"][0]) == 2_000_000
    html = response.content.decode()
    assert "A character needs a name." in html
    assert f"Description is 2,000,000 characters long; the limit is {limit:,}." in html
    assert not Character.objects.exists()


# --- editing --------------------------------------------------------------------------------------


def test_an_imported_card_edited_in_one_field_exports_with_only_that_field_changed(owner_client, owner):
    ada = imported(owner)
    # The card's texts hold CRLF and a leading line break, which browsers send back changed.
    Character.objects.filter(pk=ada.pk).update(personality="\nprecise,\r\ncurious")
    ada.refresh_from_db()
    before_v2 = json.loads(services.card_export_json(character=ada))
    before_png = services.card_export_png(character=ada)
    form = editor_form(owner_client, ada)
    form["description"] = ["A clockwork archivist, now retired."]
    response = owner_client.post(reverse("characters:edit", args=[ada.code]), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    ada.refresh_from_db()
    after_v2 = json.loads(services.card_export_json(character=ada))
    changed = {k for k in before_v2["data"] if before_v2["data"][k] != after_v2["data"].get(k)}
    assert changed == {"description"}
    assert {k for k in before_v2 if before_v2[k] != after_v2.get(k)} == {"data", "description"}
    assert after_v2["data"]["extensions"]["vendor/x"] == {"y": [1, "z"]}
    assert after_v2["data"]["extensions"]["talkativeness"] == "0.5"  # the string it came as
    assert after_v2["data"]["an_unknown_data_key"] == {"kept": True}
    assert after_v2["an_unknown_top_key"] == 7
    # The PNG card's two chunks likewise.
    for keyword in ("chara", "ccv3"):
        old = _chunk(before_png, keyword)
        new = _chunk(services.card_export_png(character=ada), keyword)
        assert {k for k in old["data"] if old["data"][k] != new["data"].get(k)} == {"description"}


def _chunk(png: bytes, keyword: str) -> dict:
    import base64

    from characters import cards

    for ctype, _, _, body in cards.png_chunks(png):
        if ctype == b"tEXt" and body.startswith(keyword.encode() + b"\x00"):
            return json.loads(base64.b64decode(body.split(b"\x00", 1)[1]))
    raise AssertionError(f"no {keyword} chunk")


def test_saving_an_untouched_form_changes_nothing(owner_client, owner):
    ada = imported(owner)
    response = owner_client.post(reverse("characters:edit", args=[ada.code]), editor_form(owner_client, ada))
    assert response.status_code == 302
    ada.refresh_from_db()
    assert ada.revision == 1 and not ada.revisions.exists()


def test_the_characters_note_and_talkativeness_change_only_their_keys(owner_client, owner):
    ada = imported(owner)
    form = editor_form(owner_client, ada)
    form.update(depth_prompt_prompt=["Ada hums."], depth_prompt_depth=["0"], talkativeness=["0.25"])
    owner_client.post(reverse("characters:edit", args=[ada.code]), form)
    ada.refresh_from_db()
    assert ada.extensions["depth_prompt"] == {"prompt": "Ada hums.", "depth": 0, "role": "system"}
    assert ada.extensions["talkativeness"] == 0.25
    assert ada.extensions["vendor/x"] == {"y": [1, "z"]} and ada.extensions["fav"] is False


def test_greetings_are_added_moved_and_removed_without_script(owner_client, owner):
    mara = make_character(owner=owner, alternate_greetings=["One", "Two", "Three"])
    url = reverse("characters:edit", args=[mara.code])
    form = editor_form(owner_client, mara)
    form["description"] = ["Edited while moving greetings."]
    page = owner_client.post(url, {**form, "greeting_op": "up-2"})
    assert page.status_code == 200 and "Not saved yet" in page.content.decode()
    form = read_form(page.content.decode())
    assert form["alternate_greetings"] == ["One", "Three", "Two"]
    assert form["description"] == ["Edited while moving greetings."]
    form = read_form(owner_client.post(url, {**form, "greeting_op": "remove-0"}).content.decode())
    form = read_form(owner_client.post(url, {**form, "greeting_op": "add"}).content.decode())
    assert form["alternate_greetings"] == ["Three", "Two", ""]
    form["alternate_greetings"][2] = "Four"
    assert owner_client.post(url, form).status_code == 302
    mara.refresh_from_db()
    assert mara.alternate_greetings == ["Three", "Two", "Four"]
    assert mara.description == "Edited while moving greetings."


def test_an_oversize_greeting_is_refused_with_its_own_error(owner_client, owner, settings):
    mara = make_character(owner=owner)
    form = editor_form(owner_client, mara)
    form["alternate_greetings"] = ["fine", "y" * (settings.RPCHAT["MAX_CARD_FIELD_CHARS"] + 1)]
    response = owner_client.post(reverse("characters:edit", args=[mara.code]), form)
    assert response.status_code == 400
    assert "Greeting 2 is" in response.content.decode()
    mara.refresh_from_db()
    assert mara.alternate_greetings == []


# --- stale saves ----------------------------------------------------------------------------------


def test_a_stale_save_is_refused_with_409_and_the_text_kept_then_overwrites_on_purpose(owner_client, owner):
    ada = imported(owner)
    url = reverse("characters:edit", args=[ada.code])
    first_tab = editor_form(owner_client, ada)
    second_tab = editor_form(owner_client, ada)
    second_tab["scenario"] = ["Second tab's scenario."]
    assert owner_client.post(url, second_tab).status_code == 302
    first_tab["description"] = ["First tab's description."]
    response = owner_client.post(url, first_tab)
    assert response.status_code == 409
    html = response.content.decode()
    assert "this character changed since you opened the editor" in html
    assert "Reload the saved version" in html and "Overwrite with my version" in html
    assert "Scenario" in html  # what the other save changed
    kept = read_form(html)
    assert kept["description"] == ["First tab's description."]
    ada.refresh_from_db()
    assert (ada.description, ada.scenario, ada.revision) == (
        "A clockwork archivist.",
        "Second tab's scenario.",
        2,
    )
    # Overwrite: the same form sent again, now naming the newer version.
    assert owner_client.post(url, {**kept, "overwrite": "1"}).status_code == 302
    ada.refresh_from_db()
    assert ada.description == "First tab's description." and ada.revision == 3


def test_an_edit_that_does_not_name_its_version_is_refused(owner_client, owner):
    mara = make_character(owner=owner)
    form = editor_form(owner_client, mara)
    del form["revision"]
    form["description"] = ["From a page that lost its version."]
    response = owner_client.post(reverse("characters:edit", args=[mara.code]), form)
    assert response.status_code == 400
    assert "does not say which version it edited" in response.content.decode()
    mara.refresh_from_db()
    assert mara.description == "A test character."


# --- who may edit ---------------------------------------------------------------------------------


def test_others_get_404_on_the_editor_and_history_even_of_a_public_character(client, owner, other):
    mara = make_character(owner=owner, public=True)
    client.force_login(other)
    for name in ("characters:edit", "characters:history"):
        assert client.get(reverse(name, args=[mara.code])).status_code == 404
        assert client.post(reverse(name, args=[mara.code]), {"name": "Hijacked"}).status_code in (404, 405)
    assert client.get(mara.get_absolute_url()).status_code == 200  # viewable
    mara.refresh_from_db()
    assert mara.name != "Hijacked"


def test_staff_edit_every_character(client, owner, admin_user):
    mara = make_character(owner=owner, public=False)
    client.force_login(admin_user)
    form = editor_form(client, mara)
    form["name"] = ["Mara, reviewed"]
    assert client.post(reverse("characters:edit", args=[mara.code]), form).status_code == 302
    mara.refresh_from_db()
    assert mara.name == "Mara, reviewed" and mara.owner == owner
    assert mara.revisions.get().author == admin_user


# --- pictures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_a_picture_is_cropped_to_2_3_reencoded_and_its_thumbnail_remade(owner_client, owner, fmt):
    mara = make_character(owner=owner)
    form = editor_form(owner_client, mara)
    form["avatar"] = [SimpleUploadedFile("wide.img", picture(fmt, size=(900, 300)))]
    assert owner_client.post(reverse("characters:edit", args=[mara.code]), form).status_code == 302
    mara.refresh_from_db()
    with mara.avatar.open("rb") as fh:
        stored = Image.open(io.BytesIO(fh.read()))
    assert stored.format == "PNG" and stored.size == (200, 300)
    with mara.thumbnail.open("rb") as fh:
        assert Image.open(fh).size == services.THUMBNAIL_SIZE  # remade at once, in the same frame
    assert owner_client.get(reverse("characters:thumbnail", args=[mara.code])).status_code == 200


def test_a_picture_that_is_no_image_or_too_large_is_refused_next_to_the_field(owner_client, owner, settings):
    mara = make_character(owner=owner)
    url = reverse("characters:edit", args=[mara.code])
    form = editor_form(owner_client, mara)
    form["description"] = ["Kept while the picture is refused."]
    form["avatar"] = [SimpleUploadedFile("notes.png", b"not an image at all")]
    response = owner_client.post(url, form)
    assert response.status_code == 400
    assert "The image could not be read" in response.content.decode()
    assert read_form(response.content.decode())["description"] == ["Kept while the picture is refused."]
    gif = io.BytesIO()
    Image.new("RGB", (20, 30)).save(gif, format="GIF")
    form["avatar"] = [SimpleUploadedFile("a.gif", gif.getvalue())]
    assert "use a PNG, JPEG or WebP picture" in owner_client.post(url, form).content.decode()
    settings.RPCHAT = {**settings.RPCHAT, "MAX_AVATAR_BYTES": 10_000}
    form["avatar"] = [SimpleUploadedFile("big.png", picture("PNG", size=(900, 900)) + b"\0" * 20_000)]
    response = owner_client.post(url, form)
    assert response.status_code == 400
    assert "The picture is larger than" in response.content.decode()
    mara.refresh_from_db()
    assert not mara.avatar and mara.description == "A test character."


# --- token counts ---------------------------------------------------------------------------------


def test_the_editor_shows_token_counts_per_field_and_in_total(owner_client, owner):
    from core.tokens import estimate_tokens

    mara = make_character(owner=owner, description="d" * 350, scenario="s" * 35, creator_notes="n" * 700)
    html = owner_client.get(reverse("characters:edit", args=[mara.code])).content.decode()
    assert f'data-count-for="description" data-permanent><span>{estimate_tokens("d" * 350)}</span>' in html
    greeting = estimate_tokens(mara.first_message)
    permanent = estimate_tokens("d" * 350) + estimate_tokens("s" * 35)
    assert f'data-total="permanent">{permanent}<' in html
    assert f'data-total="all">{permanent + greeting}<' in html  # creator's notes are never sent
    counts = owner_client.post(reverse("characters:token_counts"), {"text": "x" * 70}).json()
    assert counts == {"counts": {"text": estimate_tokens("x" * 70)}}


# --- duplicates -----------------------------------------------------------------------------------


def test_a_public_character_of_another_user_is_duplicated_as_a_private_copy(client, owner, other):
    ada = imported(owner)
    Character.objects.filter(pk=ada.pk).update(visibility="public")
    client.force_login(other)
    response = client.post(reverse("characters:duplicate", args=[ada.code]))
    copy = Character.objects.get(owner=other)
    assert response["Location"] == reverse("characters:edit", args=[copy.code])
    assert (copy.name, copy.visibility, copy.description) == ("Ada", "private", ada.description)
    assert copy.avatar and copy.avatar.name != ada.avatar.name
    assert Lorebook.objects.get(character=copy).entries.count() == 2
    exported = json.loads(services.card_export_json(character=copy))
    original = json.loads(services.card_export_json(character=ada))
    assert exported == original
    assert client.get(reverse("characters:edit", args=[copy.code])).status_code == 200


def test_another_users_private_character_cannot_be_duplicated(client, owner, other):
    secret = make_character(owner=owner, public=False)
    client.force_login(other)
    assert client.post(reverse("characters:duplicate", args=[secret.code])).status_code == 404
    assert not Character.objects.filter(owner=other).exists()


# --- page cost ------------------------------------------------------------------------------------


def test_the_editor_costs_the_same_queries_with_many_greetings_tags_and_revisions(
    no_cachalot, owner_client, owner, settings, django_assert_max_num_queries
):
    from characters import revisions

    mara = make_character(owner=owner, tags=["a", "b"])
    url = reverse("characters:edit", args=[mara.code])
    owner_client.get(url)
    # the user, the character, its tags (the session is cached)
    with django_assert_max_num_queries(3):
        assert owner_client.get(url).status_code == 200
    for i in range(50):
        before = revisions.snapshot(mara)
        Character.objects.filter(pk=mara.pk).update(description=f"take {i}", alternate_greetings=["g"] * i)
        revisions.record(mara, before=before, author=owner)
    services.character_update(
        character=mara, author=owner, values={"tags": [f"t{i}" for i in range(40)]}, expected_revision=None
    )
    with django_assert_max_num_queries(3):
        assert owner_client.get(url).status_code == 200


def test_saves_are_limited_per_minute_and_a_refused_save_keeps_the_text(
    owner_client, owner, settings, ratelimit_clock
):
    settings.RPCHAT = {**settings.RPCHAT, "EDITS_PER_MINUTE": 2}
    mara = make_character(owner=owner)
    url = reverse("characters:edit", args=[mara.code])
    for text in ("One.", "Two."):
        form = editor_form(owner_client, mara)
        form["description"] = [text]
        assert owner_client.post(url, form).status_code == 302
    form = editor_form(owner_client, mara)
    form["description"] = ["Three, too soon."]
    response = owner_client.post(url, form)
    assert response.status_code == 429
    assert "Too many saves in a minute" in response.content.decode()
    assert read_form(response.content.decode())["description"] == ["Three, too soon."]
    ratelimit_clock.now += 61
    assert owner_client.post(url, read_form(response.content.decode())).status_code == 302
    mara.refresh_from_db()
    assert mara.description == "Three, too soon." and mara.revision == 4
