"""The lorebook editor: writing books and entries in the pages, what each book is used with, and
the guards (owners only, stale edits refused, bad keys explained, constant queries)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from characters.models import Character, Lorebook, LorebookEntry
from chats.prompt import build_prompt
from chats.services import chat_start
from settings_app.models import Persona, SiteSettings
from tests import cardkit
from tests.factories import add_messages as _add_messages

pytestmark = pytest.mark.django_db


def new_book(client, name="Harbor lore") -> Lorebook:
    response = client.post(
        reverse("characters:lorebook_new"), {"name": name, "scan_depth": 4, "token_budget": 512}
    )
    assert response.status_code == 302
    return Lorebook.objects.get(name=name)


def entry_data(prefix="entry-new", **fields) -> dict:
    data = {
        "comment": "The harbor",
        "keys": "harbor\nquay",
        "secondary_keys": "",
        "selective_logic": 0,
        "content": "Ships come in at dawn.",
        "insertion_order": 100,
        "st_position": 0,
        "depth": 4,
        "role": 0,
        "probability": 100,
        "group": "",
        "group_weight": 100,
        "sticky": "",
        "cooldown": "",
        "delay": "",
        "scan_depth": "",
        **fields,
    }
    return {f"{prefix}-{k}": v for k, v in data.items() if v is not False}


def add_entry(client, book, **fields) -> LorebookEntry:
    response = client.post(reverse("characters:lorebook_entry_new", args=[book.code]), entry_data(**fields))
    assert response.status_code == 302, response.content.decode()[:2000]
    return LorebookEntry.objects.filter(lorebook=book).latest("id")


def edit_entry(client, entry, **fields):
    data = entry_data(prefix=f"entry-{entry.pk}", version=entry.version, **fields)
    return client.post(reverse("characters:lorebook_entry_save", args=[entry.lorebook.code, entry.pk]), data)


def import_card(client, name="Mira") -> Character:
    card = cardkit.v2_card(name, book=False)
    upload = SimpleUploadedFile(f"{name}.json", json.dumps(card).encode(), content_type="application/json")
    client.post(reverse("characters:import"), {"files": [upload]})
    return Character.objects.get(name=name)


def add_messages(chat, count, *, text):
    chat.refresh_from_db()  # chat_start wrote the greeting past this object
    _add_messages(chat, count, text=text)


def prompt_text(chat) -> str:
    prompt = build_prompt(
        session=chat,
        character=chat.character,
        user_name="Olivia",
        persona_description="",
        site=SiteSettings.load(),
        context_size=2048,
        reply_tokens=100,
        before_seq=chat.last_seq + 1,
    )
    return "\n".join(m["content"] for m in prompt.messages)


def test_a_user_writes_a_lorebook_and_an_entry_from_an_empty_account(owner_client, owner):
    page = owner_client.get(reverse("characters:lorebooks")).content.decode()
    assert reverse("characters:lorebook_new") in page
    book = new_book(owner_client)
    assert book.owner == owner and book.character is None
    entry = add_entry(owner_client, book, keys="harbor\n  quay \n\n")
    assert entry.keys == ["harbor", "quay"]
    assert entry.content == "Ships come in at dawn." and entry.enabled and not entry.constant
    html = owner_client.get(reverse("characters:lorebook_edit", args=[book.code])).content.decode()
    assert "The harbor" in html and "<code>harbor</code>" in html and "<code>quay</code>" in html
    # The list shows entries closed; an entry's form comes with ?edit= or alone, opened in place.
    assert "Ships come in at dawn." in html and "harbor\nquay</textarea>" not in html
    for response in (
        owner_client.get(reverse("characters:lorebook_edit", args=[book.code]), {"edit": entry.pk}),
        owner_client.get(reverse("characters:lorebook_entry_save", args=[book.code, entry.pk])),
    ):
        html = response.content.decode()
        # Keys are shown to edit one per line, never as JSON.
        assert "harbor\nquay</textarea>" in html and '["harbor"' not in html


def test_entry_settings_without_a_column_go_to_extensions_and_export_as_sillytavern_keys(owner_client):
    book = new_book(owner_client)
    add_entry(
        owner_client,
        book,
        st_position=4,
        depth=2,
        role=1,
        probability=40,
        group="places",
        sticky=3,
        match_whole_words="on",
        secondary_keys="night",
        selective_logic=3,
    )
    exported = owner_client.get(reverse("characters:lorebook_world_info", args=[book.code])).json()
    (entry,) = exported["entries"].values()
    assert entry["key"] == ["harbor", "quay"] and entry["keysecondary"] == ["night"]
    assert (entry["position"], entry["depth"], entry["role"]) == (4, 2, 1)
    assert (entry["probability"], entry["useProbability"]) == (40, True)
    assert (entry["group"], entry["sticky"], entry["matchWholeWords"]) == ("places", 3, True)
    assert entry["selectiveLogic"] == 3 and entry["selective"] is True


def test_an_imported_entry_edited_in_one_field_keeps_every_other_setting(owner_client):
    upload = SimpleUploadedFile("Harbor.json", json.dumps(cardkit.world_info()).encode())
    owner_client.post(reverse("characters:lorebooks"), {"files": [upload]})
    book = Lorebook.objects.get()
    before = owner_client.get(reverse("characters:lorebook_world_info", args=[book.code])).json()
    entry = LorebookEntry.objects.get(lorebook=book, uid="0")
    page = owner_client.get(reverse("characters:lorebook_edit", args=[book.code]), {"edit": entry.pk})
    form = next(f for e, f, _ in page.context["rows"] if e.pk == entry.pk)
    # What the page's form holds, with one change: the content.
    data = {
        form.add_prefix(name): value for name, value in form.initial.items() if value not in (None, False)
    }
    data[form.add_prefix("keys")] = "\n".join(entry.keys)
    data[form.add_prefix("secondary_keys")] = "\n".join(entry.secondary_keys)
    data[form.add_prefix("content")] = "Ships come in at noon."
    for name in ("comment", "selective_logic", "insertion_order", "case_sensitive", "use_regex", "constant"):
        value = getattr(entry, name)
        if value not in (None, False):
            data[form.add_prefix(name)] = value
    url = reverse("characters:lorebook_entry_save", args=[book.code, entry.pk])
    assert owner_client.post(url, data).status_code == 302
    after = owner_client.get(reverse("characters:lorebook_world_info", args=[book.code])).json()
    assert after["entries"]["0"].pop("content") == "Ships come in at noon."
    before["entries"]["0"].pop("content")
    a0, b0 = after["entries"]["0"], before["entries"]["0"]
    assert {k: (a0.get(k), b0.get(k)) for k in a0.keys() | b0.keys() if a0.get(k) != b0.get(k)} == {}
    assert after == before


def test_an_invalid_regex_key_is_explained_next_to_the_field_and_nothing_is_saved(owner_client):
    book = new_book(owner_client)
    entry = add_entry(owner_client, book)
    response = edit_entry(owner_client, entry, keys="/(a+)\\1/", use_regex="on", content="changed")
    assert response.status_code == 400
    html = response.content.decode()
    assert "The regular expression /(a+)\\1/ cannot be used" in html
    # The user's text is still in the form, and the saved entry is as it was.
    assert "changed</textarea>" in html
    entry.refresh_from_db()
    assert entry.content == "Ships come in at dawn." and entry.version == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"keys": "", "constant": False}, "Give at least one key, or make the entry always on."),
        ({"content": "x" * 100_001}, "Ensure this value has at most 100000 characters"),
        ({"probability": 101}, "less than or equal to 100"),
    ],
)
def test_bad_entries_get_a_clear_error_and_change_nothing(owner_client, fields, message):
    book = new_book(owner_client)
    entry = add_entry(owner_client, book)
    response = edit_entry(owner_client, entry, **fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert LorebookEntry.objects.get(pk=entry.pk).version == 1


def test_a_stale_edit_from_a_second_tab_is_refused_with_the_text_kept_then_can_overwrite(owner_client):
    book = new_book(owner_client)
    entry = add_entry(owner_client, book)
    tab_a = LorebookEntry.objects.get(pk=entry.pk)
    tab_b = LorebookEntry.objects.get(pk=entry.pk)
    assert edit_entry(owner_client, tab_a, content="From tab A").status_code == 302
    response = edit_entry(owner_client, tab_b, content="From tab B")
    assert response.status_code == 409
    html = response.content.decode()
    assert "changed in another tab" in html and "From tab B</textarea>" in html
    assert LorebookEntry.objects.get(pk=entry.pk).content == "From tab A"
    # The refused form carries the current version: sending it again overwrites, knowingly.
    form = next(f for e, f, _ in response.context["rows"] if e.pk == entry.pk)
    tab_b.version = int(form.data[form.add_prefix("version")])
    assert edit_entry(owner_client, tab_b, content="From tab B").status_code == 302
    assert LorebookEntry.objects.get(pk=entry.pk).content == "From tab B"


def test_stale_book_settings_are_refused(owner_client):
    book = new_book(owner_client)
    url = reverse("characters:lorebook_edit", args=[book.code])
    fields = {"name": "Renamed", "scan_depth": 4, "token_budget": 512, "version": 1}
    assert owner_client.post(url, fields).status_code == 302
    response = owner_client.post(url, {**fields, "name": "Other tab"})
    assert response.status_code == 409
    assert Lorebook.objects.get(pk=book.pk).name == "Renamed"


def test_other_users_cannot_open_or_change_a_book_or_its_entries(client, owner, other):
    client.force_login(owner)
    book = new_book(client)
    entry = add_entry(client, book)
    client.force_login(other)
    edit = reverse("characters:lorebook_edit", args=[book.code])
    assert client.get(edit).status_code == 404
    assert (
        client.post(edit, {"name": "mine", "scan_depth": 4, "token_budget": 1, "version": 1}).status_code
        == 404
    )
    assert edit_entry(client, entry, content="mine").status_code == 404
    assert (
        client.post(reverse("characters:lorebook_entry_new", args=[book.code]), entry_data()).status_code
        == 404
    )
    delete = reverse("characters:lorebook_entry_delete", args=[book.code, entry.pk])
    assert client.post(delete).status_code == 404
    assert client.post(reverse("characters:lorebook_delete", args=[book.code])).status_code == 404
    assert client.post(reverse("characters:lorebook_duplicate", args=[book.code])).status_code == 404
    assert LorebookEntry.objects.get(pk=entry.pk).content == "Ships come in at dawn."


def test_an_entry_id_of_another_book_is_not_found(owner_client):
    first, second = new_book(owner_client, "First"), new_book(owner_client, "Second")
    entry = add_entry(owner_client, first)
    url = reverse("characters:lorebook_entry_save", args=[second.code, entry.pk])
    assert owner_client.post(url, entry_data(prefix=f"entry-{entry.pk}", version=1)).status_code == 404


def test_staff_may_edit_any_book(client, owner, admin_user):
    client.force_login(owner)
    book = new_book(client)
    client.force_login(admin_user)
    assert client.get(reverse("characters:lorebook_edit", args=[book.code])).status_code == 200


def test_deleting_an_entry_and_a_book(owner_client):
    book = new_book(owner_client)
    entry = add_entry(owner_client, book)
    owner_client.post(reverse("characters:lorebook_entry_delete", args=[book.code, entry.pk]))
    assert not LorebookEntry.objects.filter(pk=entry.pk).exists()
    confirm = owner_client.get(reverse("characters:lorebook_delete", args=[book.code]))
    assert "cannot be undone" in confirm.content.decode()
    owner_client.post(reverse("characters:lorebook_delete", args=[book.code]))
    assert not Lorebook.objects.filter(pk=book.pk).exists()


def big_book(client, entries: int) -> Lorebook:
    """A World Info file of `entries` entries, imported through the page as a user would."""
    wi = {
        "entries": {
            str(i): {
                "uid": i,
                "key": [f"key{i}"],
                "comment": f"Entry {i:04}",
                "content": f"Lore {i}.",
                "order": i,
            }
            for i in range(entries)
        }
    }
    upload = SimpleUploadedFile("Big.json", json.dumps(wi).encode())
    client.post(reverse("characters:lorebooks"), {"files": [upload]})
    return Lorebook.objects.get(name="Big")


def test_the_book_page_costs_the_same_queries_for_10_and_1000_entries(
    owner_client, django_assert_num_queries
):
    small = big_book(owner_client, 10)
    small.name = "Small"
    small.save()
    large = big_book(owner_client, 1000)
    counts = []
    for book in (small, large):
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as queries:
            response = owner_client.get(reverse("characters:lorebook_edit", args=[book.code]) + "?sort=title")
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
    # One page of entries (50), not the whole book.
    assert len(response.context["rows"]) == 50
    assert "Entry 0000" in response.content.decode() and "Entry 0050" not in response.content.decode()


def test_search_and_sort_find_an_entry_in_a_1000_entry_book(owner_client):
    book = big_book(owner_client, 1000)
    url = reverse("characters:lorebook_edit", args=[book.code])
    found = owner_client.get(url, {"q": "key777"}).context["rows"]
    assert [e.comment for e, _, _ in found] == ["Entry 0777"]
    newest = owner_client.get(url, {"sort": "newest"}).context["rows"]
    assert newest[0][0].comment == "Entry 0999"
    assert "No entry matches" in owner_client.get(url, {"q": "nothing like it"}).content.decode()


def test_duplicating_a_1000_entry_book_is_one_bulk_write(owner_client, owner, django_assert_max_num_queries):
    book = big_book(owner_client, 1000)
    with django_assert_max_num_queries(12):
        response = owner_client.post(reverse("characters:lorebook_duplicate", args=[book.code]))
    copy = Lorebook.objects.get(name="Copy of Big")
    assert response["Location"] == reverse("characters:lorebook_edit", args=[copy.code])
    assert copy.owner == owner and copy.entries.count() == 1000
    assert list(copy.entries.order_by("insertion_order").values_list("keys", flat=True)[:2]) == [
        ["key0"],
        ["key1"],
    ]


def test_a_book_attached_to_a_character_fires_when_its_key_is_mentioned(owner_client, owner):
    character = import_card(owner_client)
    book = new_book(owner_client)
    add_entry(owner_client, book, keys="lighthouse", content="The lighthouse keeper is Bram.")
    page = owner_client.get(reverse("characters:world_info", args=[character.code])).content.decode()
    assert "Harbor lore" in page
    owner_client.post(reverse("characters:world_info", args=[character.code]), {"books": [str(book.code)]})
    assert list(character.lorebooks.all()) == [book]
    chat = chat_start(user=owner, character=character)
    add_messages(chat, 1, text="Who lives in the lighthouse?")
    assert "The lighthouse keeper is Bram." in prompt_text(chat)
    add_messages(chat, 1, text="Nothing to see.")
    chat.refresh_from_db()
    other_chat = chat_start(user=owner, character=character)
    add_messages(other_chat, 1, text="Tell me about the sea.")
    assert "lighthouse keeper" not in prompt_text(other_chat)


def test_a_user_cannot_attach_another_users_book_or_set_another_users_world_info(client, owner, other):
    client.force_login(other)
    theirs = new_book(client, "Theirs")
    client.force_login(owner)
    character = import_card(client)
    client.post(reverse("characters:world_info", args=[character.code]), {"books": [str(theirs.code)]})
    assert not character.lorebooks.exists()
    client.force_login(other)
    assert client.get(reverse("characters:world_info", args=[character.code])).status_code == 404


def test_a_characters_own_book_is_written_in_the_editor_and_exported_inside_the_card(owner_client, owner):
    character = import_card(owner_client)
    response = owner_client.post(reverse("characters:lorebook_new_for", args=[character.code]))
    book = Lorebook.objects.get(character=character)
    assert response["Location"] == reverse("characters:lorebook_edit", args=[book.code])
    add_entry(owner_client, book, keys="storm", content="Storms come from the west.")
    card = owner_client.get(reverse("characters:card_json", args=[character.code])).json()
    (entry,) = card["data"]["character_book"]["entries"]
    assert entry["keys"] == ["harbor", "quay"] or entry["keys"] == ["storm"]
    assert entry["content"] == "Storms come from the west."
    chat = chat_start(user=owner, character=character)
    add_messages(chat, 1, text="A storm is coming.")
    assert "Storms come from the west." in prompt_text(chat)


def test_a_persona_brings_its_books_and_a_locked_persona_starts_new_chats(owner_client, owner):
    character = import_card(owner_client)
    sailor = Persona.objects.create(user=owner, name="Sailor")
    Persona.objects.create(user=owner, name="Default me", is_default=True)
    book = new_book(owner_client)
    add_entry(owner_client, book, keys="compass", content="Olivia's compass points home.")
    owner_client.post(
        reverse("characters:lorebook_personas", args=[book.code]), {"personas": [str(sailor.code)]}
    )
    assert list(book.personas.all()) == [sailor]

    chat = chat_start(user=owner, character=character)
    assert chat.persona.name == "Default me"
    add_messages(chat, 1, text="Where is my compass?")
    assert "compass points home" not in prompt_text(chat)
    # Choosing the sailor in the chat's settings, locked to this character.
    settings_url = reverse("chats:settings", args=[chat.code])
    form = owner_client.get(settings_url).context["form"]
    data = {k: v for k, v in form.initial.items() if v not in (None, False, "") and k != "lorebooks"}
    data.update(persona=sailor.pk, lock_persona="on", title="At sea")
    assert owner_client.post(settings_url, data).status_code == 302
    chat.refresh_from_db()
    assert "compass points home" in prompt_text(chat)
    assert chat_start(user=owner, character=character).persona == sailor
    # Unticking the lock goes back to the default persona for new chats.
    data.pop("lock_persona")
    owner_client.post(settings_url, data)
    assert chat_start(user=owner, character=character).persona.name == "Default me"
