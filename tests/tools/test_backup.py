"""manage.py backup_db and restore_db against the real database files, as docs/operations.md says."""

from __future__ import annotations

import shlex
import shutil
import sqlite3
import subprocess
import threading
from io import StringIO
from pathlib import Path

import pytest
import redis
from django.apps import apps
from django.conf import settings
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection, connections, transaction
from django.db.models import F
from django.test import Client
from django.urls import reverse

from characters.models import Character, Lorebook, LorebookEntry
from chats import services
from chats.models import ChatSession, Message, MessageAlternative
from core.databases import attached_database
from settings_app.models import Persona, SiteSettings
from tests.factories import add_messages, make_character
from tests.postgres import create_database, database_url, drop_database

pytestmark = pytest.mark.django_db(transaction=True)

on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's online backup")
on_postgresql = pytest.mark.skipif(connection.vendor != "postgresql", reason="pg_dump and pg_restore")


def _write_data(owner, other) -> None:
    """A bit of everything: characters with tags and a lorebook, chats with swipes, a persona."""
    wren = make_character(
        owner=owner,
        name="Wren",
        public=False,
        tags=["fantasy", "mystery"],
        alternate_greetings=["Oh, it's you again.", "*waves*"],
    )
    make_character(name="Ash", tags=["fantasy"])
    book = Lorebook.objects.create(character=wren, name="Wren's world")
    LorebookEntry.objects.create(lorebook=book, keys=["river"], content="The river runs north.")
    Persona.objects.create(user=owner, name="Traveler", description="Tall, tired.", is_default=True)
    site = SiteSettings.load()
    site.instance_name = "Backed-up instance"
    site.save()
    chat = services.chat_start(user=owner, character=wren)  # three greetings: three swipes
    chat.refresh_from_db()
    add_messages(chat, 40)
    services.chat_start(user=other, character=Character.objects.get(name="Ash"))


def _rows(alias: str) -> dict[str, list[tuple]]:
    """Every row of every table Django knows (app tables, auth, sessions), in key order."""
    rows = {}
    for model in apps.get_models(include_auto_created=True):
        rows[model._meta.db_table] = list(model._base_manager.using(alias).order_by("pk").values_list())
    return rows


def _sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@on_sqlite
def test_a_backup_holds_every_row_of_every_table(owner, other, tmp_path):
    _write_data(owner, other)
    out = StringIO()
    call_command("backup_db", str(tmp_path / "rpchat.sqlite3"), stdout=out)

    assert "Backed up" in out.getvalue()
    backup_file = tmp_path / "rpchat.sqlite3"
    assert [r.name for r in tmp_path.iterdir()] == ["rpchat.sqlite3"]  # no temporary file left
    with sqlite3.connect(backup_file) as conn:  # one self-contained file, no -wal needed beside it
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    with attached_database("backup", _sqlite_url(backup_file)):
        copy = _rows("backup")
    original = _rows("default")
    assert copy == original
    assert len(original[Message._meta.db_table]) == 42  # 41 in one chat, a greeting in the other
    assert len(original[MessageAlternative._meta.db_table]) == 3


@on_sqlite
def test_a_folder_as_the_path_gets_a_dated_file(owner, other, tmp_path):
    _write_data(owner, other)
    call_command("backup_db", str(tmp_path), stdout=StringIO())
    (made,) = tmp_path.iterdir()
    assert made.name.startswith("rpchat-") and made.suffix == ".sqlite3"


@on_sqlite
def test_restore_brings_back_exactly_the_backed_up_rows_and_keeps_the_replaced_ones(owner, other, tmp_path):
    _write_data(owner, other)
    backup_file = tmp_path / "before.sqlite3"
    call_command("backup_db", str(backup_file), stdout=StringIO())
    backed_up = _rows("default")

    # Things go wrong after the backup: a chat deleted, a character renamed, a setting changed.
    ChatSession.objects.filter(user=other).delete()
    Character.objects.filter(name="Wren").update(name="Wren (vandalised)")
    site = SiteSettings.load()
    site.instance_name = "Changed"
    site.save()
    changed = _rows("default")
    assert changed != backed_up
    # Read through the caches, so that a restore which left them alone would show the old answers.
    assert SiteSettings.load().instance_name == "Changed"
    assert not Character.objects.filter(name="Wren").exists()

    out = StringIO()
    call_command("restore_db", str(backup_file), interactive=False, stdout=out)

    assert _rows("default") == backed_up
    assert SiteSettings.load().instance_name == "Backed-up instance"  # not the cached "Changed"
    assert Character.objects.filter(name="Wren").exists()  # the query cache did not keep the new name
    kept = next(Path(connection.settings_dict["NAME"]).parent.glob("*.before-restore-*"))
    try:
        with attached_database("kept", _sqlite_url(kept)):
            assert _rows("kept") == changed
    finally:
        kept.unlink()
    assert "Restored" in out.getvalue()


@on_sqlite
def test_restore_refuses_a_file_that_is_not_an_rpchat_backup(tmp_path):
    junk = tmp_path / "notes.sqlite3"
    junk.write_text("not a database at all" * 100)
    with pytest.raises(CommandError, match="not an SQLite database"):
        call_command("restore_db", str(junk), interactive=False, stdout=StringIO())
    other_db = tmp_path / "other.sqlite3"
    with sqlite3.connect(other_db) as conn:
        conn.execute("CREATE TABLE t (x)")
    with pytest.raises(CommandError, match="not an rpchat database"):
        call_command("restore_db", str(other_db), interactive=False, stdout=StringIO())


@on_sqlite
def test_a_backup_taken_while_the_app_writes_is_one_consistent_moment(owner, tmp_path):
    """Messages keep arriving during the copy; the copy has every one committed before it began,
    and its counters agree with its rows (no half of one moment and half of another)."""
    chat = services.chat_start(user=owner, character=make_character(name="Wren"))
    chat.refresh_from_db()
    add_messages(chat, 30_000, text="A long enough message to fill pages: {seq} " + "x" * 80)
    before = Message.objects.filter(session=chat).count()
    stop = threading.Event()
    written = []

    def writer():
        try:
            while not stop.is_set() and len(written) < 2000:
                with transaction.atomic():
                    seq = ChatSession.objects.select_for_update().get(pk=chat.pk).last_seq + 1
                    Message.objects.create(session=chat, seq=seq, role="user", content=f"late {seq}")
                    ChatSession.objects.filter(pk=chat.pk).update(
                        last_seq=seq, message_count=F("message_count") + 1
                    )
                written.append(seq)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        call_command("backup_db", str(tmp_path / "live.sqlite3"), pages_per_step=8, stdout=StringIO())
    finally:
        stop.set()
        thread.join(60)

    assert written, "the writer never wrote during the backup"
    with sqlite3.connect(tmp_path / "live.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        count, last = conn.execute(
            "SELECT message_count, last_seq FROM chats_chatsession WHERE id = ?", [chat.pk]
        ).fetchone()
        rows, top = conn.execute(
            "SELECT count(*), max(seq) FROM chats_message WHERE session_id = ?", [chat.pk]
        ).fetchone()
    assert (count, last) == (rows, top)
    assert rows >= before


# --- PostgreSQL ---------------------------------------------------------------------------------


@on_postgresql
@pytest.mark.skipif(shutil.which("pg_restore") is None, reason="pg_dump/pg_restore are not installed")
def test_on_postgresql_backup_runs_pg_dump_and_the_printed_restore_brings_every_row_back(
    owner, other, tmp_path
):
    _write_data(owner, other)
    out = StringIO()
    call_command("backup_db", str(tmp_path / "rpchat.pgdump"), stdout=out)
    dump = tmp_path / "rpchat.pgdump"
    assert dump.read_bytes()[:5] == b"PGDMP"

    config = connection.settings_dict
    restored = f"{config['NAME']}_restored"
    create_database(restored)
    try:
        # The restore command the backup printed, pointed at the new database.
        restore = out.getvalue().split("To restore it:\n  ")[1].split("  (with")[0]
        argv = shlex.split(restore.replace(f"--dbname={config['NAME']}", f"--dbname={restored}"))
        subprocess.run(argv, check=True, capture_output=True)
        with attached_database("restored", database_url(restored)):
            assert _rows("restored") == _rows("default")
    finally:
        drop_database(restored)


@on_postgresql
def test_on_postgresql_without_pg_dump_it_says_which_commands_to_run(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(CommandError) as caught:
        call_command("backup_db", str(tmp_path / "x.pgdump"), stdout=StringIO())
    message = str(caught.value)
    assert "pg_dump is not installed" in message
    assert f"pg_dump --host {connection.settings_dict['HOST']}" in message
    assert "pg_restore" in message and "--clean --if-exists" in message
    with pytest.raises(CommandError, match="restore with pg_restore while the server is stopped"):
        call_command("restore_db", str(tmp_path / "x.pgdump"), interactive=False, stdout=StringIO())


# --- what is cached must not outlive the rows a restore takes away ------------------------------


def _send(client, chat, content: str) -> int:
    from chats import generation

    response = client.post(reverse("chats:send", args=[chat.code]), {"content": content})
    assert response.status_code == 200, response.content
    generation.wait_for(Message.objects.get(session=chat, seq=response.json()["reply_seq"]).pk)
    return response.status_code


def _backup(tmp_path: Path):
    """Back up as docs/operations.md says; returns how to restore that backup into the live database."""
    out = StringIO()
    if connection.vendor == "sqlite":
        backup_file = tmp_path / "before.sqlite3"
        call_command("backup_db", str(backup_file), stdout=out)

        def restore():
            call_command("restore_db", str(backup_file), interactive=False, stdout=StringIO())
            for kept in Path(connection.settings_dict["NAME"]).parent.glob("*.before-restore-*"):
                kept.unlink()

        return restore
    if shutil.which("pg_restore") is None:
        pytest.skip("pg_dump/pg_restore are not installed")
    call_command("backup_db", str(tmp_path / "before.pgdump"), stdout=out)

    def restore():
        # By hand, as printed: pg_restore with the server stopped, then clear_caches.
        printed = out.getvalue().split("To restore it:\n  ")[1]
        pg_restore = printed.split("  (with")[0]
        assert "then: manage.py clear_caches" in printed
        connections.close_all()
        subprocess.run(shlex.split(pg_restore), check=True, capture_output=True)
        call_command("clear_caches", stdout=StringIO())

    return restore


def test_after_a_restore_nobody_is_shown_text_the_restore_took_away(owner, other, tmp_path, tiny_builtin):
    """Backup; Alice sends a secret and reads it; restore; Bob's message takes the ids hers had."""
    alice, bob = Client(), Client()
    alice.force_login(owner)
    alice_chat = services.chat_start(user=owner, character=make_character(name="Wren"))
    bob_chat = services.chat_start(user=other, character=make_character(name="Ash"))
    restore = _backup(tmp_path)

    _send(alice, alice_chat, "My bank PIN is 4921")
    assert "My bank PIN is 4921" in alice.get(alice_chat.get_absolute_url()).content.decode()
    secret_id = Message.objects.get(session=alice_chat, content="My bank PIN is 4921").pk

    restore()
    bob.force_login(other)
    _send(bob, bob_chat, "Good morning")

    assert Message.objects.get(session=bob_chat, content="Good morning").pk == secret_id  # reused
    page = bob.get(bob_chat.get_absolute_url()).content.decode()
    assert "Good morning" in page
    assert "4921" not in page


def test_after_a_restore_a_new_account_does_not_inherit_a_removed_ones_limits(
    owner, django_user_model, tmp_path, tiny_builtin, settings
):
    """Rate limits are counted per user id; the restore hands the removed account's id out again."""
    settings.RPCHAT = {**settings.RPCHAT, "GENERATIONS_PER_MINUTE": 1}
    character = make_character(name="Wren")
    restore = _backup(tmp_path)
    carol = django_user_model.objects.create_user("carol", password="pw-carol-123")
    client = Client()
    client.force_login(carol)
    _send(client, services.chat_start(user=carol, character=character), "Hello")  # her one a minute

    restore()
    dave = django_user_model.objects.create_user("dave", password="pw-dave-123")
    assert dave.pk == carol.pk
    client = Client()
    client.force_login(dave)

    assert _send(client, services.chat_start(user=dave, character=character), "Hello") == 200


def test_clear_caches_drops_this_environments_keys_and_only_those():
    cache.set("rl:generate:7:1", 3)
    cache.set("md:2:0:abc", "<p>old</p>")
    others = None
    if settings.REDIS_URL:  # a second environment sharing the Redis
        others = redis.Redis.from_url(settings.REDIS_URL)
        others.set(f"{settings.CACHE_KEY_PREFIX}-other:1:md:2:0:abc", "theirs")
    try:
        out = StringIO()
        call_command("clear_caches", stdout=out)
        assert cache.get("rl:generate:7:1") is None and cache.get("md:2:0:abc") is None
        if others is not None:
            assert others.get(f"{settings.CACHE_KEY_PREFIX}-other:1:md:2:0:abc") == b"theirs"
    finally:
        if others is not None:
            others.delete(f"{settings.CACHE_KEY_PREFIX}-other:1:md:2:0:abc")
            others.close()
    assert "Dropped" in out.getvalue()
