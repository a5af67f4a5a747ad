"""Revisions: every save of a character or a lorebook keeps what it changed, the History page
shows them with readable diffs, a restore brings any version back as a new one, and a chat says
when its character changed since it began."""

from __future__ import annotations

import pytest
from django.db import transaction
from django.urls import reverse

from characters import revisions, services
from characters.models import Character, Lorebook, LorebookEntry, Revision
from chats.services import chat_start
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


def save(client, character, **changes) -> None:
    """One save through the editor, as a browser sends it."""
    url = reverse("characters:edit", args=[character.code])
    form = read_form(client.get(url).content.decode())
    form.update({k: v if isinstance(v, list) else [v] for k, v in changes.items()})
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    character.refresh_from_db()


# --- characters -----------------------------------------------------------------------------------


def test_each_save_keeps_only_what_changed_with_who_and_when(owner_client, owner):
    mara = make_character(owner=owner, description="Maps coasts.", scenario="A harbour.")
    save(owner_client, mara, description="Maps coasts and rivers.")
    save(owner_client, mara, tags="maps, Fantasy", alternate_greetings=["Ahoy."])
    first, second = Revision.objects.filter(character=mara).order_by("number")
    assert (first.number, first.author, first.summary) == (2, owner, "Description")
    assert first.changes == {"fields": {"description": ["Maps coasts.", "Maps coasts and rivers."]}}
    assert set(second.changes["fields"]) == {"tags", "alternate_greetings"}
    assert second.changes["fields"]["tags"] == [[], ["Fantasy", "maps"]]
    assert mara.revision == 3


def test_the_history_page_lists_versions_and_a_diff_reads_as_words_struck_and_added(owner_client, owner):
    mara = make_character(owner=owner, description="She maps every coast she sees.")
    save(owner_client, mara, description="She maps every river she sees.")
    history = owner_client.get(reverse("characters:history", args=[mara.code])).content.decode()
    assert 'data-version="2"' in history and 'data-version="1"' in history
    assert "Restore version 1" in history and "Restore version 2" not in history  # 2 is current
    diff = owner_client.get(reverse("characters:revision", args=[mara.code, 2])).content.decode()
    assert "<span>She maps every </span><del>coast</del><ins>river</ins><span> she sees.</span>" in diff


def test_a_restore_brings_an_old_version_back_as_a_new_version(owner_client, owner):
    mara = make_character(owner=owner, name="Mara", description="One.", tags=["old"])
    save(owner_client, mara, description="Two.", tags="new")
    save(owner_client, mara, name="Mara II", description="Three.", alternate_greetings=["Hi"])
    response = owner_client.post(reverse("characters:revision_restore", args=[mara.code, 1]))
    assert response.status_code == 302
    mara.refresh_from_db()
    assert (mara.name, mara.description, mara.alternate_greetings, mara.revision) == ("Mara", "One.", [], 4)
    assert [t.name for t in mara.tags.all()] == ["old"]
    restore = Revision.objects.get(character=mara, number=4)
    assert restore.restored_from == 1 and restore.author == owner
    # Nothing is lost to a restore: version 3 comes back too.
    owner_client.post(reverse("characters:revision_restore", args=[mara.code, 3]))
    mara.refresh_from_db()
    assert (mara.name, mara.description, mara.revision) == ("Mara II", "Three.", 5)
    assert [t.name for t in mara.tags.all()] == ["new"]


def test_a_restore_brings_the_old_picture_back(owner_client, owner):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.characters.test_editor import picture

    mara = make_character(owner=owner)
    save(owner_client, mara, avatar=[SimpleUploadedFile("a.png", picture(color=(255, 0, 0)))])
    first = mara.avatar.name
    save(owner_client, mara, avatar=[SimpleUploadedFile("b.png", picture(color=(0, 255, 0)))])
    assert mara.avatar.name != first
    owner_client.post(reverse("characters:revision_restore", args=[mara.code, 2]))
    mara.refresh_from_db()
    assert mara.avatar.name == first


def test_history_pages_cost_the_same_queries_with_fifty_revisions(
    no_cachalot, owner_client, owner, settings, django_assert_max_num_queries
):
    mara = make_character(owner=owner, description="v1")
    save(owner_client, mara, description="v2")
    history = reverse("characters:history", args=[mara.code])
    diff = reverse("characters:revision", args=[mara.code, 2])
    # the user, the character, one page of revisions with their authors (the session is cached)
    with django_assert_max_num_queries(3):
        owner_client.get(history)
    with django_assert_max_num_queries(3):
        owner_client.get(diff)
    for i in range(3, 53):
        with transaction.atomic():
            before = revisions.snapshot(mara)
            Character.objects.filter(pk=mara.pk).update(description=f"v{i} " + "long text " * 500)
            revisions.record(mara, before=before, author=owner)
    with django_assert_max_num_queries(3):
        page = owner_client.get(history)
    assert page.content.decode().count('class="revision card"') == 25
    with django_assert_max_num_queries(3):
        owner_client.get(history + "?page=3")
    with django_assert_max_num_queries(3):
        owner_client.get(reverse("characters:revision", args=[mara.code, 40]))
    # A restore reads the rows it undoes in one query, however many.
    with django_assert_max_num_queries(12):
        owner_client.post(reverse("characters:revision_restore", args=[mara.code, 1]))
    mara.refresh_from_db()
    assert mara.description == "v1" and mara.revision == 53


def test_a_diff_of_very_long_texts_stays_bounded():
    old = "word " * 50_000
    new = "other " * 50_000
    pieces = revisions.text_diff(old, new)
    assert pieces == [("del", old[:-1]), ("ins", new[:-1]), ("same", " ")]
    assert revisions.text_diff("a b c", "a x c") == [
        ("same", "a "),
        ("del", "b"),
        ("ins", "x"),
        ("same", " c"),
    ]


# --- lorebooks --------------------------------------------------------------------------------------


def big_book(owner, n: int = 1000) -> Lorebook:
    book = cardkit.world_info()
    template = next(iter(book["entries"].values()))
    book["entries"] = {
        str(i): {**template, "uid": i, "key": [f"key{i}"], "content": f"Entry {i}."} for i in range(n)
    }
    import json

    result = services.lorebook_import(source=json.dumps(book).encode(), file_name="big.json", owner=owner)
    assert result.status == "imported", result.reason
    return result.object


def test_a_lorebook_save_stores_only_changed_added_and_removed_entries_in_one_write(
    owner, django_assert_max_num_queries
):
    book = big_book(owner)
    entries = list(book.entries.order_by("id")[:3])
    with transaction.atomic():
        # lock and read the book, read its entries
        with django_assert_max_num_queries(2):
            before = revisions.snapshot(book, expected=1)
        LorebookEntry.objects.filter(pk=entries[0].pk).update(content="Changed.")
        LorebookEntry.objects.filter(pk=entries[1].pk).delete()
        added = LorebookEntry.objects.create(lorebook=book, keys=["new"], content="Added.")
        Lorebook.objects.filter(pk=book.pk).update(name="Renamed")
        # read the book and its entries again, move the version, insert the one revision row
        with django_assert_max_num_queries(4):
            revision = revisions.record(book, before=before, author=owner)
    assert revision.number == 2 and book.revision == 2
    entries_changed = revision.changes["entries"]
    assert entries_changed["changed"] == {str(entries[0].pk): {"content": ["Entry 0.", "Changed."]}}
    assert list(entries_changed["removed"]) == [str(entries[1].pk)]
    assert list(entries_changed["added"]) == [str(added.pk)]
    assert revision.changes["fields"] == {"name": [before.fields["name"], "Renamed"]}
    assert revision.summary == "Name, 1 entry added, 1 entry changed, 1 entry removed"
    assert len(str(revision.changes)) < 2000  # not a copy of the 1,000-entry book


def test_a_lorebook_restore_brings_removed_entries_back_under_their_ids(owner, django_assert_max_num_queries):
    book = big_book(owner)
    snapshot_before = revisions.snapshot(book)
    with transaction.atomic():
        before = revisions.snapshot(book)
        LorebookEntry.objects.filter(
            lorebook=book, pk__in=list(book.entries.values_list("pk", flat=True)[:500])
        ).delete()
        LorebookEntry.objects.filter(lorebook=book).update(content="Rewritten.")
        LorebookEntry.objects.create(lorebook=book, keys=["extra"], content="Extra.")
        revisions.record(book, before=before, author=owner)
    assert book.entries.count() == 501
    # savepoint, lock/read book and entries, the rows to undo (one query), the book, one delete, the
    # entries back and the changed ones in batches (SQLite takes 999 parameters a statement, so
    # about 55 entries an INSERT there; one batch of 500 on PostgreSQL), the version, the revision
    with django_assert_max_num_queries(40):
        revision = revisions.restore(book, number=1, author=owner)
    assert revision.number == 3 and revision.restored_from == 1
    assert revisions.snapshot(book).entries == snapshot_before.entries
    # Editor forms opened before the restore are stale now (the book's and each rewritten entry's
    # edit counter moved on), so they cannot save over what came back.
    book.refresh_from_db()
    assert book.version == 2
    assert set(
        book.entries.exclude(pk__in=[int(k) for k in snapshot_before.entries][:500]).values_list(
            "version", flat=True
        )
    ) == {2}


def test_a_stale_lorebook_save_is_refused_and_its_writes_rolled_back(owner):
    book = big_book(owner, n=3)
    with transaction.atomic():
        before = revisions.snapshot(book)
        Lorebook.objects.filter(pk=book.pk).update(name="First")
        revisions.record(book, before=before, author=owner)
    with pytest.raises(revisions.StaleEdit), transaction.atomic():
        revisions.snapshot(book, expected=1)
    book.refresh_from_db()
    assert book.name == "First" and book.revision == 2


# --- chats ----------------------------------------------------------------------------------------


def test_a_chat_remembers_its_characters_version_and_says_when_it_changed(owner_client, owner):
    mara = make_character(owner=owner)
    chat = chat_start(user=owner, character=mara)
    assert chat.character_revision == 1
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "data-character-changed" not in page
    save(owner_client, mara, description="Edited after the chat began.")
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "was edited since this chat began (version 1, now 2)" in page
    assert reverse("characters:history", args=[mara.code]) in page


def test_the_chat_page_costs_no_extra_query_for_the_notice(
    no_cachalot, owner_client, owner, settings, django_assert_num_queries
):
    mara = make_character(owner=owner)
    chat = chat_start(user=owner, character=mara)
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    owner_client.get(chat.get_absolute_url())  # the site's settings and the session, cached
    with CaptureQueriesContext(connection) as unchanged:
        owner_client.get(chat.get_absolute_url())
    n = len(unchanged)  # now: the next request empties the connection's query log
    save(owner_client, mara, description="Edited.")
    with django_assert_num_queries(n):
        assert "data-character-changed" in owner_client.get(chat.get_absolute_url()).content.decode()


# --- lorebook history pages -------------------------------------------------------------------------


def test_a_lorebook_history_lists_admin_saves_and_restores_a_removed_entry(
    no_cachalot, client, owner, other, admin_user, settings, django_assert_max_num_queries
):
    import json

    result = services.lorebook_import(
        source=json.dumps(cardkit.world_info()).encode(), file_name="harbor.json", owner=owner
    )
    book = result.object
    gone = book.entries.order_by("id").first()
    gone_id = gone.pk
    with transaction.atomic():  # what the lead's lorebook editor does on a save
        before = revisions.snapshot(book, expected=book.revision)
        gone.delete()
        revisions.record(book, before=before, author=owner)
    client.force_login(owner)
    url = reverse("characters:lorebook_history", args=[book.code])
    client.get(url)
    # the user, the book, one page of its revisions
    with django_assert_max_num_queries(3):
        html = client.get(url).content.decode()
    assert "1 entry removed" in html and "Restore version 1" in html
    diff = client.get(reverse("characters:lorebook_revision", args=[book.code, 2])).content.decode()
    assert "Entry removed: The harbor" in diff and "<del>Ships come in at dawn.</del>" in diff
    client.post(reverse("characters:lorebook_revision_restore", args=[book.code, 1]))
    assert book.entries.filter(pk=gone_id, content="Ships come in at dawn.").exists()
    client.force_login(other)
    assert client.get(url).status_code == 404
    assert (
        client.post(reverse("characters:lorebook_revision_restore", args=[book.code, 2])).status_code == 404
    )


def test_lorebook_editor_saves_are_revisions_and_any_version_comes_back(owner_client, owner):
    from tests.characters.test_lorebook_editor import add_entry, edit_entry, new_book

    book = new_book(owner_client)
    page = owner_client.get(reverse("characters:lorebook_edit", args=[book.code])).content.decode()
    assert reverse("characters:lorebook_history", args=[book.code]) in page
    entry = add_entry(owner_client, book)
    assert edit_entry(owner_client, entry, content="Ships come in at dusk.").status_code == 302
    owner_client.post(reverse("characters:lorebook_entry_new", args=[book.code]), {})  # refused: no revision
    book.refresh_from_db()
    rows = list(Revision.objects.filter(lorebook=book).order_by("number"))
    assert [(r.number, r.summary, r.author) for r in rows] == [
        (2, "1 entry added", owner),
        (3, "1 entry changed", owner),
    ]
    assert rows[1].changes["entries"]["changed"][str(entry.pk)] == {
        "content": ["Ships come in at dawn.", "Ships come in at dusk."]
    }
    owner_client.post(reverse("characters:lorebook_entry_delete", args=[book.code, entry.pk]))
    assert not book.entries.exists()
    history = owner_client.get(reverse("characters:lorebook_history", args=[book.code])).content.decode()
    assert "1 entry removed" in history
    owner_client.post(reverse("characters:lorebook_revision_restore", args=[book.code, 3]))
    assert list(book.entries.values_list("pk", "content")) == [(entry.pk, "Ships come in at dusk.")]
    owner_client.post(reverse("characters:lorebook_revision_restore", args=[book.code, 1]))
    assert not book.entries.exists()
    assert Lorebook.objects.get(pk=book.pk).revision == 6


def test_a_characters_world_info_is_in_its_history_and_comes_back(owner_client, owner):
    from tests.characters.test_lorebook_editor import new_book

    mara = make_character(owner=owner)
    harbor, woods = new_book(owner_client, "Harbor"), new_book(owner_client, "Woods")
    url = reverse("characters:world_info", args=[mara.code])
    owner_client.post(url, {"books": [str(harbor.code), str(woods.code)]})
    owner_client.post(url, {"books": [str(woods.code)]})
    mara.refresh_from_db()
    assert mara.revision == 3
    assert Revision.objects.get(character=mara, number=3).changes == {
        "fields": {"lorebooks": [sorted([harbor.pk, woods.pk]), [woods.pk]]}
    }
    diff = owner_client.get(reverse("characters:revision", args=[mara.code, 3])).content.decode()
    assert "World Info" in diff and "<del>Harbor </del>" in diff
    owner_client.post(reverse("characters:revision_restore", args=[mara.code, 2]))
    assert set(mara.lorebooks.values_list("pk", flat=True)) == {harbor.pk, woods.pk}


def test_a_branch_keeps_the_version_its_chat_began_with(owner_client, owner):
    from chats.services import chat_branch

    mara = make_character(owner=owner)
    chat = chat_start(user=owner, character=mara)
    save(owner_client, mara, description="Edited after the chat began.")
    branch = chat_branch(session=chat, at_seq=1)
    assert branch.character_revision == 1
    assert "was edited since this chat began" in owner_client.get(branch.get_absolute_url()).content.decode()
