"""Every URL of the site, fed hostile parameters, answers without a server error.

The walk takes every named URL from the resolver (as test_security does), learns which query and
form parameters each view reads by watching the request's QueryDicts during a first, plausible
request, and then lets Hypothesis post hostile values to them: huge and negative integers, NUL,
lone surrogates, very long strings, non-UUIDs, repeated keys (?a=1&a=2), odd Unicode and hostile
files. The client is the owner of a real chat (a card imported, a chat started, a reply generated
by the tiny model), so the values reach the views' deeper paths, not only the 404 of a stranger.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from urllib.parse import quote, quote_from_bytes

import pytest
from asgiref.sync import async_to_sync
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.http import QueryDict
from django.urls import URLPattern, reverse
from django.utils.datastructures import MultiValueDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from characters.models import Character
from characters.services import card_import, lorebook_import
from chats.models import ChatSession, Message
from settings_app.models import ApiToken, Persona
from settings_app.services import preset_import
from tests import cardkit
from tests.urlwalk import named_patterns

pytestmark = pytest.mark.django_db(transaction=True)

HOSTILE = [
    "9" * 25,
    "9223372036854775808",
    "-9223372036854775809",
    "-1",
    "0",
    "1e999",
    "NaN",
    "a\x00b",
    "\x00",
    "\ud800",
    "lone \udfff surrogate",
    "x" * 20_001,
    "y" * 300_000,
    "not-a-uuid",
    "00000000-0000-0000-0000-000000000000",
    "\uff4f\uff4c\uff49\uff56\uff49\uff41",
    "\U0001f642" * 50,
    "\u202e\u2028\ufeff",
    "' OR 1=1 --",
    '"quoted" term*',
    "*",
    "<script>alert(1)</script>",
    "{{roll:d6}} {{user}}",
    "%00%ff",
    " ",
]
# Dates at the edges of the calendar, in a SillyTavern chat.
EDGE_DATES = ["0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00", 1e20, -1e20]
HOSTILE_FILES = [
    b"",
    b"\x00" * 64,
    b"\xff\xfe not text",
    b'{"name": "Nul \\u0000", "description": "x"}',
    b'{"name": "Half \\ud800"}',
    b'{"name": "Big", "x": 1e999, "y": NaN}',
    b'{"name": "Digits", "x": ' + b"9" * 5000 + b"}",
    b"PK\x03\x04" + b"\x00" * 60,
    json.dumps(cardkit.v2_card("Fuzzed")).encode(),
    *(
        (json.dumps({"user_name": "Olivia", "character_name": "Ada", "create_date": date}) + "\n").encode()
        + (json.dumps({"name": "Ada", "is_user": False, "mes": "Hi", "send_date": date}) + "\n").encode()
        for date in EDGE_DATES
    ),
    *(
        (json.dumps({"name": "Ada", "is_user": False, "mes": "Hi", "send_date": date}) + "\n").encode()
        for date in EDGE_DATES
    ),
    (json.dumps({"user_name": "Olivia", "chat_metadata": {"note_prompt": "\x00"}}) + "\n").encode(),
    b'{"mes": "\\u0000", "name": "Olivia", "is_user": true}\n',
    b'{"mes": "\\ud800", "name": "Olivia", "is_user": true}\n',
    b'{"entries": {"0": {"uid": 0, "key": ["a"], "content": "\\u0000", "order": 1e999}}}',
]


# Left out of the walk, with why.
LEFT_OUT = {"logout": "logging out would end the walk's session"}


# --- the walk ------------------------------------------------------------------------------------


class Reads:
    """Which parameter names a view reads, from the request's QueryDicts and its files."""

    def __init__(self):
        self.on = False
        self.params: set[str] = set()
        self.files: set[str] = set()

    def record(self, mvd, key):
        if not self.on or not isinstance(key, str) or key == "csrfmiddlewaretoken":
            return
        if getattr(mvd, "_mutable", False):
            return  # a QueryDict being filled: Django parsing the request, not the view reading it
        if sys._getframe(2).f_code.co_filename.endswith(os.path.join("django", "utils", "datastructures.py")):
            return  # items(), values(), copy(): every key, not one the view asked for
        if isinstance(mvd, QueryDict):
            self.params.add(key)
        elif all(isinstance(f, UploadedFile) for f in mvd.values()):
            self.files.add(key)  # request.FILES (URL resolvers keep MultiValueDicts of their own)

    @contextmanager
    def watching(self):
        self.on = True
        try:
            yield
        finally:
            self.on = False


@pytest.fixture
def reads(monkeypatch):
    watcher = Reads()
    for name in ("__getitem__", "get", "getlist", "__contains__"):
        original = getattr(MultiValueDict, name)

        def wrapped(self, key, *args, _original=original, **kwargs):
            watcher.record(self, key)
            return _original(self, key, *args, **kwargs)

        monkeypatch.setattr(MultiValueDict, name, wrapped)
    return watcher


@pytest.fixture
def world(owner, client, tiny_builtin, settings):
    """The owner's real data: an imported card with a lorebook, a chat with a generated reply, a
    persona, a global lorebook and an API token."""
    from chats import generation

    settings.RPCHAT = {**settings.RPCHAT, "GENERATIONS_PER_MINUTE": 0}
    client.force_login(owner)
    card = cardkit.v3_card("Fuzz Target")
    character = card_import(source=json.dumps(card).encode(), file_name="fuzz.json", owner=owner).object
    chat_url = client.post(reverse("chats:new", args=[character.code]))["Location"]
    chat = ChatSession.objects.get(user=owner)
    assert chat_url == chat.get_absolute_url()
    sent = client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello", "client_token": "t1"})
    generation.wait_for(chat.messages.get(seq=sent.json()["reply_seq"]).pk)
    client.post(reverse("personas:new"), {"name": "Vera", "description": "A traveler."})
    lorebook = lorebook_import(
        source=json.dumps(cardkit.world_info()).encode(), file_name="world.json", owner=owner
    ).object
    client.post(reverse("settings_app:api_tokens"), {"name": "fuzz"})
    preset = preset_import(
        source=json.dumps({"name": "Fuzz", "content": "Be {{char}}."}).encode(),
        file_name="f.json",
        owner=owner,
    ).object
    # A pinned fact (the one-click pin) and a summary (as the background worker writes one).
    client.post(reverse("chats:message_pin", args=[chat.code, 1]))
    from chats.models import Memory

    summary = Memory.objects.create(
        session=chat, start_seq=1, end_seq=20, text="A summary.", status="written"
    )
    # A model server of the user's own, which staff allowed (settings_app's models/<code>/ pages).
    from settings_app.models import ConnectionProfile, SiteSettings

    site = SiteSettings.load()
    site.allow_user_profiles = True
    site.user_profile_hosts = "models.example.com"
    site.save()
    profile = ConnectionProfile.objects.create(
        owner=owner, name="Fuzz", base_url="https://models.example.com/v1", model="fuzz", api_key="k"
    )
    return {
        "profile": profile,
        "preset": preset,
        "fact": chat.facts.get(),
        "summary": summary,
        "chat": chat,
        "character": character,
        "persona": Persona.objects.get(user=owner),
        "lorebook": lorebook,
        "entry_id": lorebook.entries.order_by("id").values_list("id", flat=True).first(),
        "token": ApiToken.objects.get(user=owner),
    }


def _path_kwargs(name: str, entry: URLPattern, world, seq: int) -> dict:
    by_namespace = {
        "chats": world["chat"],
        "characters": world["character"],
        "personas": world["persona"],
        "presets": world["preset"],
        "settings_app": world["profile"],
        "api": world["chat"],
    }
    namespace = name.split(":", maxsplit=1)[0]
    kwargs = {}
    for param in entry.pattern.converters:
        if param == "seq":
            kwargs[param] = seq
        elif param == "number":
            kwargs[param] = 1
        elif param == "pk":
            kwargs[param] = world["token"].pk
        elif param == "character_code":
            kwargs[param] = world["character"].code
        elif param == "entry_id":
            kwargs[param] = world["entry_id"]
        elif (
            param == "code"
            and name.startswith("characters:lorebook")
            and name != "characters:lorebook_new_for"
        ):
            kwargs[param] = world["lorebook"].code
        elif param == "code" and name == "api:character":
            kwargs[param] = world["character"].code
        elif param == "code":
            kwargs[param] = by_namespace[namespace].code
        elif param == "fact_id":
            kwargs[param] = world["fact"].pk
        elif param == "memory_id":
            kwargs[param] = world["summary"].pk
        else:
            raise AssertionError(f"the fuzz walk does not know how to fill <{param}> in {name}: teach it")
    return kwargs


def _query(params: dict[str, list[str]]) -> str:
    return "&".join(
        f"{quote(key)}={quote_from_bytes(value.encode('utf-8', 'surrogatepass'))}"
        for key, values in params.items()
        for value in values
    )


def _body(params: dict[str, list[str]], files: dict[str, bytes]) -> dict:
    # Lists of bytes: the test client encodes them as they are (lone surrogates included) and
    # sends a list as the same key repeated.
    data: dict = {key: [v.encode("utf-8", "surrogatepass") for v in values] for key, values in params.items()}
    for key, content in files.items():
        data[key] = SimpleUploadedFile("fuzz.bin", content)
    return data


def _consume(response) -> None:
    """Read a streamed body to its end: an error while streaming surfaces here."""
    if not response.streaming:
        return
    if response.is_async:

        async def drain():
            return [chunk async for chunk in response.streaming_content]

        async_to_sync(drain)()
    else:
        b"".join(response.streaming_content)


def _heal(world) -> None:
    """Undo what a fuzzed POST may have removed, so later examples still reach the owner's data."""
    ChatSession.objects.filter(pk=world["chat"].pk).update(deleted_at=None, archived_at=None)
    Character.objects.filter(pk=world["character"].pk).update(deleted_at=None, is_active=True)


# Each parameter a view reads is also sent alone with each of these, the others plausible.
SWEEP = ["9" * 25, "-9223372036854775809", "a\x00b", "\ud800", "not-a-uuid", "y" * 300_000]


def test_no_url_answers_a_hostile_parameter_with_a_server_error(client, owner, world, reads):
    from chats import generation

    routes = [(name, entry) for name, entry in named_patterns() if name not in LEFT_OUT]
    assert len(routes) >= 40
    client.raise_request_exception = False  # a 500 names the request below; the log has the traceback
    seqs = list(Message.objects.filter(session=world["chat"]).values_list("seq", flat=True))
    plausible = {
        "content": "Hello again",
        "version": "1",
        "index": "1",
        "action": "mute",
        "character_id": str(world["character"].pk),
        "q": "hello",
        "before": "3",
        "after": "1",
        "at": "2",
        "page": "1",
        "chat": str(world["chat"].code),
        "character": str(world["character"].code),
        "limit": "5",
        "hidden": "1",
        "name": "Fuzz",
    }
    learned: dict[tuple[str, str], tuple[set[str], set[str]]] = {}

    def request(method: str, route, *, seq: int, params: dict, files: dict | None = None):
        name, entry = route
        files = files or {}
        url = reverse(name, kwargs=_path_kwargs(name, entry, world, seq))
        client.force_login(owner)
        reads.params, reads.files = learned.setdefault((name, method), (set(), set()))
        with reads.watching():
            if method == "get":
                response = client.get(f"{url}?{_query(params)}" if params else url)
            else:
                response = client.post(url, _body(params, files))
            _consume(response)
        for message in Message.objects.filter(status=Message.Status.STREAMING):
            generation.wait_for(message.pk)
        _heal(world)
        shown = {k: [v[:40] for v in vs] for k, vs in params.items()} | {k: f[:300] for k, f in files.items()}
        assert response.status_code < 500, f"{method.upper()} {url} {shown!r} gave {response.status_code}"

    # A first, plausible request to every URL teaches which parameters each view reads.
    for route in routes:
        for method in ("get", "post"):
            request(method, route, seq=seqs[-1], params={k: [v] for k, v in plausible.items()})
    every = set().union(*(params for params, _ in learned.values()))
    assert {"content", "version", "q", "before", "character_id", "at", "index"} <= every

    # Each parameter alone with each hostile value, the others plausible.
    by_name = dict(routes)
    for (name, method), (keys, _) in list(learned.items()):
        for key in sorted(keys):
            for value in SWEEP:
                params = {k: [v] for k, v in plausible.items() if k in keys}
                request(method, (name, by_name[name]), seq=seqs[-1], params={**params, key: [value]})

    # Each hostile file to each view that reads an upload.
    for (name, method), (_, file_keys) in list(learned.items()):
        for key in sorted(file_keys):
            for content in HOSTILE_FILES:
                request(method, (name, by_name[name]), seq=seqs[-1], params={}, files={key: content})
    assert {"file", "files"} <= set().union(*(files for _, files in learned.values()))

    # Then mixtures: several parameters at once, repeated keys, other values, files.
    values = st.one_of(
        st.sampled_from(HOSTILE),
        st.sampled_from(sorted(set(plausible.values()))),
        st.integers(min_value=-(2**80), max_value=2**80).map(str),
        st.text(max_size=40),
    )

    @st.composite
    def requests(draw):
        route = draw(st.sampled_from(routes))
        method = draw(st.sampled_from(["get", "post"]))
        keys, file_keys = learned[(route[0], method)]
        pool = sorted(keys) or sorted(every)
        params = draw(
            st.dictionaries(st.sampled_from(pool), st.lists(values, min_size=1, max_size=3), max_size=4)
        )
        files = {}
        if file_keys and method == "post":
            files = draw(st.dictionaries(st.sampled_from(sorted(file_keys)), st.sampled_from(HOSTILE_FILES)))
        seq = draw(st.sampled_from([*seqs, 0, 10**25]))
        return {"method": method, "route": route, "seq": seq, "params": params, "files": files}

    @settings(
        max_examples=500,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests())
    def fuzz(args):
        request(**args)

    fuzz()
