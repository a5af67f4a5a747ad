"""Security across the site: CSP, rate limits, deploy checks, and every URL walked as an outsider."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import URLPattern, reverse

from characters.models import Lorebook, LorebookEntry
from settings_app.models import Persona, SiteSettings
from tests.factories import make_character, make_chat
from tests.urlwalk import named_patterns

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
SECRET = "OWNER-ONLY-SECRET-TEXT"


def test_every_page_sends_a_strict_content_security_policy(owner_client):
    policy = owner_client.get(reverse("characters:gallery"))["Content-Security-Policy"]
    assert (
        "script-src 'self'" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    )
    assert "object-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "img-src 'self' data:;" in policy + ";"
    site = SiteSettings.load()
    site.allow_external_media = True
    site.save()
    assert (
        "img-src 'self' data: https:"
        in owner_client.get(reverse("characters:gallery"))["Content-Security-Policy"]
    )


def test_templates_have_no_inline_script_or_handlers():
    for path in (ROOT / "templates").rglob("*.html"):
        text = path.read_text()
        for tag in re.findall(r"<script\b[^>]*>", text):
            assert "src=" in tag, f"inline script in {path}"
        assert not re.search(r"\son[a-z]+\s*=", text), f"event handler attribute in {path}"


def test_logins_are_refused_after_too_many_failures(client, owner, settings):
    settings.RPCHAT = {**settings.RPCHAT, "LOGIN_ATTEMPTS": 3}
    url = reverse("login")
    for _ in range(3):
        assert client.post(url, {"username": "olivia", "password": "wrong"}).status_code == 200
    locked = client.post(url, {"username": "olivia", "password": "pw-olivia-123"})
    assert locked.status_code == 429
    assert "Too many failed attempts" in locked.content.decode()
    assert int(locked["Retry-After"]) > 0
    # Another username from the same address is not locked out.
    assert client.post(url, {"username": "someone", "password": "x"}).status_code == 200


def test_the_login_lockout_counts_the_username_as_authentication_reads_it(client, owner, settings):
    settings.RPCHAT = {**settings.RPCHAT, "LOGIN_ATTEMPTS": 3}
    url = reverse("login")
    variants = ["olivia ", "\uff4f\uff4c\uff49\uff56\uff49\uff41", "\u3000olivia"]  # full-width
    # Each variant reaches olivia's account: authentication strips and NFKC-normalizes it.
    for variant in variants:
        assert client.post(url, {"username": variant, "password": "pw-olivia-123"}).status_code == 302
        client.logout()
    for variant in variants:
        assert client.post(url, {"username": variant, "password": "wrong"}).status_code == 200
    for name in ["olivia", *variants]:
        locked = client.post(url, {"username": name, "password": "pw-olivia-123"})
        assert locked.status_code == 429, name


@pytest.mark.django_db(transaction=True)
def test_replies_are_limited_per_user_per_minute(
    owner_client, owner, settings, tiny_builtin, ratelimit_clock
):
    from chats import generation

    settings.RPCHAT = {**settings.RPCHAT, "GENERATIONS_PER_MINUTE": 2}
    chat = make_chat(user=owner, character=make_character())
    url = reverse("chats:send", args=[chat.code])
    for i in range(2):
        response = owner_client.post(url, {"content": f"m{i}"})
        assert response.status_code == 200
        generation.wait_for(chat.messages.get(seq=response.json()["reply_seq"]).pk)
    ratelimit_clock.now += 1  # the next request comes just after a minute boundary
    refused = owner_client.post(url, {"content": "one too many"})
    assert refused.status_code == 429
    assert "2 replies a minute" in refused.json()["error"]
    assert not chat.messages.filter(content="one too many").exists()


@pytest.mark.django_db(transaction=True)
def test_a_resend_past_the_reply_limit_is_answered_with_the_stored_message(
    owner_client, owner, settings, tiny_builtin, ratelimit_clock
):
    from chats import generation

    settings.RPCHAT = {**settings.RPCHAT, "GENERATIONS_PER_MINUTE": 1}
    chat = make_chat(user=owner, character=make_character())
    url = reverse("chats:send", args=[chat.code])
    sent = owner_client.post(url, {"content": "hello", "client_token": "tab-1-msg-1"})
    assert sent.status_code == 200
    generation.wait_for(chat.messages.get(seq=sent.json()["reply_seq"]).pk)
    # The response was lost; the page sends the same message again with the same key.
    again = owner_client.post(url, {"content": "hello", "client_token": "tab-1-msg-1"})
    assert again.status_code == 200
    assert again.json()["reply_seq"] == sent.json()["reply_seq"]
    assert chat.messages.filter(content="hello").count() == 1
    # A new message is still over the limit.
    assert owner_client.post(url, {"content": "new", "client_token": "tab-1-msg-2"}).status_code == 429


def test_edits_are_limited_per_user_per_minute(owner_client, owner, other, client, settings):
    settings.RPCHAT = {**settings.RPCHAT, "EDITS_PER_MINUTE": 2}
    chat = make_chat(user=owner, character=make_character(), messages=1)
    url = reverse("chats:message_edit", args=[chat.code, 1])
    for i in range(2):
        version = chat.messages.get().version
        assert owner_client.post(url, {"content": f"edit {i}", "version": version}).status_code == 200
    refused = owner_client.post(url, {"content": "one too many", "version": chat.messages.get().version})
    assert refused.status_code == 429
    assert "2 edits a minute" in refused.json()["error"] and int(refused["Retry-After"]) > 0
    assert chat.messages.get().content == "edit 1"
    # The limit is per person: another user's edits still go through.
    theirs = make_chat(user=other, character=make_character(), messages=1)
    client.force_login(other)
    their_url = reverse("chats:message_edit", args=[theirs.code, 1])
    assert (
        client.post(their_url, {"content": "fine", "version": theirs.messages.get().version}).status_code
        == 200
    )


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")},
        "DEBUG": "0",
        "RPCHAT_HTTPS": "1",
        "SECRET_KEY": "x7" * 30 + "-production-key-for-the-deploy-check",
        "ALLOWED_HOSTS": "chat.example.org",
        "RPCHAT_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout
    assert "WARNING" not in result.stdout + result.stderr


def test_the_server_binds_to_loopback_by_default():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^HOST \?= 127\.0\.0\.1$", makefile, re.M)


# --- every URL, as another user and as an anonymous visitor -----------------------------------------

# Open to anyone: the login pages, the health check, and the API's description.
PUBLIC = {"login", "logout", "signup", "healthz", "home", "api:openapi", "favicon"}


@pytest.fixture
def owned(owner):
    character = make_character(owner=owner, public=False, name=SECRET, description=SECRET)
    chat = make_chat(user=owner, character=character, messages=3, text=SECRET + " {seq}")
    persona = Persona.objects.create(user=owner, name=SECRET, description=SECRET)
    from settings_app.models import ApiToken

    token = ApiToken.objects.create(user=owner, name=SECRET, token_hash="0" * 64, prefix="secret")
    lorebook = Lorebook.objects.create(owner=owner, name=SECRET)
    entry = LorebookEntry.objects.create(lorebook=lorebook, keys=[SECRET], content=SECRET)
    from settings_app.models import Preset

    preset = Preset.objects.create(owner=owner, kind="sysprompt", name=SECRET, data={"content": SECRET})
    from chats import memory
    from chats.models import Memory

    fact = memory.add_fact(session=chat, text=SECRET)
    summary = Memory.objects.create(session=chat, start_seq=1, end_seq=20, text=SECRET, status="written")
    from settings_app.models import ConnectionProfile, SiteSettings

    site = SiteSettings.load()
    site.allow_user_profiles = True
    site.user_profile_hosts = "models.example.com"
    site.save()
    profile = ConnectionProfile.objects.create(
        owner=owner, name=SECRET, base_url="https://models.example.com/v1", model=SECRET, api_key=SECRET
    )
    return {
        "chat": chat,
        "character": character,
        "persona": persona,
        "token": token,
        "lorebook": lorebook,
        "entry": entry,
        "preset": preset,
        "fact": fact,
        "summary": summary,
        "profile": profile,
    }


def _kwargs(name: str, entry: URLPattern, owned) -> dict:
    namespace = name.split(":", maxsplit=1)[0]
    by_namespace = {
        "chats": owned["chat"],
        "characters": owned["character"],
        "personas": owned["persona"],
        "presets": owned["preset"],
        "api": owned["chat"],
        "settings_app": owned["profile"],
    }
    kwargs = {}
    for param in entry.pattern.converters:
        if param in ("seq", "number"):
            kwargs[param] = 1
        elif param == "pk" and namespace == "settings_app":
            kwargs[param] = owned["token"].pk
        elif param == "character_code":
            kwargs[param] = owned["character"].code
        elif param == "entry_id":
            kwargs[param] = owned["entry"].pk
        elif (
            param == "code"
            and name.startswith("characters:lorebook_")
            and name != "characters:lorebook_new_for"
        ):
            kwargs[param] = owned["lorebook"].code
        elif param == "code":
            kwargs[param] = by_namespace[namespace].code
        elif param == "fact_id":
            kwargs[param] = owned["fact"].pk
        elif param == "memory_id":
            kwargs[param] = owned["summary"].pk
        else:
            raise AssertionError(f"the URL walk does not know how to fill <{param}> in {name}: teach it")
    return kwargs


def test_every_url_refuses_another_users_data(client, other, owned):
    client.force_login(other)
    walked = 0
    for name, entry in named_patterns():
        if name in PUBLIC:
            continue
        kwargs = _kwargs(name, entry, owned)
        if not kwargs:
            continue  # lists: scoped by the user, checked below
        url = reverse(name, kwargs=kwargs)
        for method in ("get", "post"):
            response = getattr(client, method)(
                url, {"content": "x", "version": 1, "index": 0, "action": "add"}
            )
            assert response.status_code in (404, 405), f"{method.upper()} {url} gave {response.status_code}"
            body = b"".join(response.streaming_content) if response.streaming else response.content
            assert SECRET.encode() not in body, f"{method.upper()} {url} leaked the owner's data"
        walked += 1
    assert walked >= 20
    for name in (
        "characters:gallery",
        "chats:list",
        "chats:trash",
        "personas:list",
        "presets:list",
        "settings_app:models",
    ):
        assert SECRET not in client.get(reverse(name)).content.decode(), name


def test_every_url_sends_anonymous_visitors_to_log_in(client, owned):
    for name, entry in named_patterns():
        if name in PUBLIC:
            continue
        url = reverse(name, kwargs=_kwargs(name, entry, owned))
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        assert SECRET.encode() not in body, url
        assert response.status_code in (302, 401, 405), f"GET {url} gave {response.status_code}"
        if response.status_code == 302:
            # Staff pages send to the admin's login, the rest to the site's.
            assert "/login/" in response["Location"], url


def test_staff_pages_are_closed_to_users(client, owner):
    client.force_login(owner)
    for url in (
        "/admin/",
        "/admin/settings_app/sitesettings/1/change/",
        "/admin/settings_app/connectionprofile/",
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
