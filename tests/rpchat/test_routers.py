"""The read replica router: which reads may lag, and the gallery served through a replica."""

from __future__ import annotations

import copy

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.models import Session
from django.db import connections
from django.db.utils import load_backend
from django.test.utils import CaptureQueriesContext

from characters.models import Character, Tag
from chats.models import ChatSession, Message
from core.routers import ReplicaRouter, replica_reads
from settings_app.models import SiteSettings
from tests.factories import make_character, make_chat

router = ReplicaRouter()


@pytest.fixture
def replica_configured(settings):
    """A replica is configured (no connection is made by the tests that use only this)."""
    settings.DATABASE_REPLICA_URL = "postgres://rpchat@replica.invalid:5432/rpchat"


# --- without a replica: nothing changes ---------------------------------------------------------


def test_without_a_replica_no_read_is_routed_even_where_lag_is_allowed():
    with replica_reads():
        assert router.db_for_read(Character) is None
        assert router.db_for_read(Message) is None
    assert router.db_for_read(Character) is None


def test_writes_and_migrations_go_to_the_primary_only():
    assert router.db_for_write(Character) == "default"
    assert router.db_for_write(Message) == "default"
    assert router.allow_migrate("default", "chats") is True
    assert router.allow_migrate("replica", "chats") is False


def test_the_router_is_installed_only_when_a_replica_is_configured(settings):
    assert settings.DATABASE_REPLICA_URL == ""
    assert "replica" not in settings.DATABASES
    assert not settings.DATABASE_ROUTERS


# --- with a replica -----------------------------------------------------------------------------


def test_lag_tolerant_reads_go_to_the_replica_only_inside_replica_reads(replica_configured):
    assert router.db_for_read(Character) is None
    with replica_reads():
        assert router.db_for_read(Character) == "replica"
        assert router.db_for_read(Tag) == "replica"
    assert router.db_for_read(Character) is None


@pytest.mark.parametrize(
    "model", [ChatSession, Message, SiteSettings, get_user_model(), Session], ids=lambda m: m.__name__
)
def test_chats_settings_users_and_sessions_are_never_read_from_the_replica(replica_configured, model):
    with replica_reads():
        assert router.db_for_read(model) == "default"


def test_writes_go_to_the_primary_and_relations_across_both_are_allowed(replica_configured):
    assert router.db_for_write(Character) == "default"
    a, b = Character(name="A"), Character(name="B")
    a._state.db, b._state.db = "replica", "default"
    assert router.allow_relation(a, b) is True
    b._state.db = "elsewhere"
    assert router.allow_relation(a, b) is None


def test_related_rows_are_read_from_where_their_row_came_from(replica_configured):
    character = Character(name="A")
    character._state.db = "default"
    with replica_reads():
        assert router.db_for_read(Tag, instance=character) == "default"


# --- a replica that mirrors the test database, behind the real views ----------------------------


@pytest.fixture
def replica(transactional_db, settings):
    """A `replica` connection set up the way Django sets up a TEST MIRROR: the test database itself.

    Transactional: a second connection sees only committed rows, as a real replica does.
    """
    default = connections["default"]
    config = {**copy.deepcopy(default.settings_dict), "TEST": {"MIRROR": "default"}}
    mirror = load_backend(config["ENGINE"]).DatabaseWrapper(config, "replica")
    mirror.creation.set_as_test_mirror(default.settings_dict)
    # Registered for this thread only (the test client runs views in it), as attached_database does.
    connections._connections.replica = mirror
    settings.DATABASE_REPLICA_URL = "the test database"
    settings.DATABASE_ROUTERS = ["core.routers.ReplicaRouter"]
    try:
        yield mirror
    finally:
        mirror.close()
        if getattr(mirror, "pool", None) is not None:
            mirror.close_pool()
        del connections._connections.replica


def _tables(queries) -> str:
    return " ".join(q["sql"] for q in queries)


def test_the_gallery_is_read_from_the_replica_and_shows_what_the_primary_holds(replica, client):
    owner = get_user_model().objects.create_user("olivia", password="pw-olivia-123")
    make_character(owner=owner, name="Wren", public=False, tags=["fantasy"])
    client.force_login(owner)

    with (
        CaptureQueriesContext(replica) as on_replica,
        CaptureQueriesContext(connections["default"]) as on_primary,
    ):
        page = client.get("/characters/")

    assert page.status_code == 200
    assert "Wren" in page.content.decode()
    assert '"characters_character"' in _tables(on_replica.captured_queries)
    assert '"characters_character"' not in _tables(on_primary.captured_queries)
    # Who is logged in, and the session, come from the primary.
    assert '"auth_user"' in _tables(on_primary.captured_queries)
    assert '"auth_user"' not in _tables(on_replica.captured_queries)
    assert '"django_session"' not in _tables(on_replica.captured_queries)


def test_chat_pages_and_character_pages_never_touch_the_replica(replica, client):
    owner = get_user_model().objects.create_user("olivia", password="pw-olivia-123")
    character = make_character(owner=owner, name="Wren", public=False)
    chat = make_chat(user=owner, character=character, messages=4)
    client.force_login(owner)

    with CaptureQueriesContext(replica) as on_replica:
        assert client.get(chat.get_absolute_url()).status_code == 200
        assert client.get(character.get_absolute_url()).status_code == 200
        assert client.get("/chats/").status_code == 200

    assert on_replica.captured_queries == []
