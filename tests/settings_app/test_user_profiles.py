"""Users' own connection profiles: only when staff allow them, only to hosts staff list, keys
write-only (no page, API answer, admin form or log shows them) and encrypted at rest."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import URLPattern, reverse

from chats import generation
from chats.models import Message, PromptSnapshot
from core import crypto
from settings_app.models import ConnectionProfile, SiteSettings
from tests.factories import make_character, make_chat
from tests.urlwalk import named_patterns

pytestmark = pytest.mark.django_db(transaction=True)

USER_KEY = "sk-user-0123456789-SECRET"
STAFF_KEY = "sk-staff-9876543210-SECRET"


def allow(
    hosts: str = "models.example.com\n*.example.org", *, private: bool = False, on: bool = True
) -> None:
    site = SiteSettings.load()
    site.allow_user_profiles = on
    site.user_profile_hosts = hosts
    site.user_profiles_private_addresses = private
    site.save()


def profile_form(**fields) -> dict:
    return {
        "name": "Mine",
        "mode": "chat",
        "base_url": "https://models.example.com/v1",
        "model": "my-model",
        "api_key": USER_KEY,
        "context_size": 4096,
        "max_tokens": 32,
        "temperature": 0.8,
        "top_p": 0.95,
        "min_p": 0.05,
        "top_k": 40,
        "repetition_penalty": 1.1,
        **fields,
    }


def add_own(client, **fields):
    return client.post(reverse("settings_app:own_profile_new"), profile_form(**fields))


def raw_key_column(profile: ConnectionProfile) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT api_key_encrypted FROM {ConnectionProfile._meta.db_table} WHERE id = %s",  # noqa: S608
            [profile.pk],
        )
        return cursor.fetchone()[0]


def test_users_add_their_own_profile_only_while_staff_allow_it(owner_client):
    assert add_own(owner_client).status_code == 404
    page = owner_client.get(reverse("settings_app:models")).content.decode()
    assert "Add your own model server" not in page
    allow()
    response = add_own(owner_client)
    assert response.status_code == 302
    profile = ConnectionProfile.objects.get(name="Mine")
    assert profile.owner is not None and profile.api_key == USER_KEY
    page = owner_client.get(reverse("settings_app:models")).content.decode()
    assert "Add your own model server" in page and "Mine" in page and "your own" in page


@pytest.mark.parametrize(
    ("base_url", "error"),
    [
        ("https://evil.example.net/v1", "evil.example.net is not on the list of hosts this instance allows"),
        ("https://example.org/v1", "example.org is not on the list"),  # *.example.org: subdomains only
        ("https://models.example.com.evil.net/v1", "is not on the list"),
        ("https://me:pw@models.example.com/v1", "Put no user name or password in the address"),
        ("https://models.example.com/v1?key=1", "without ?query"),
        ("ftp://models.example.com/v1", "Use an http:// or https:// address."),
    ],
)
def test_the_address_must_be_a_plain_url_on_a_host_staff_allow(owner_client, base_url, error):
    allow()
    response = add_own(owner_client, base_url=base_url)
    assert response.status_code == 400
    assert error in response.content.decode()
    assert not ConnectionProfile.objects.exists()
    # What was typed is kept, but the key (write-only) is not sent back.
    assert "my-model" in response.content.decode()
    assert USER_KEY not in response.content.decode()


def test_a_user_has_at_most_twenty_own_profiles(owner_client):
    allow()
    for i in range(20):
        assert add_own(owner_client, name=f"Mine {i}").status_code == 302
    response = add_own(owner_client, name="One more")
    assert response.status_code == 400
    assert "You have 20 model servers, the most one person may have" in response.content.decode()
    assert ConnectionProfile.objects.count() == 20


def test_a_subdomain_of_an_allowed_wildcard_is_accepted(owner_client):
    allow()
    assert add_own(owner_client, base_url="https://eu.api.example.org/v1").status_code == 302


@pytest.mark.parametrize("host", ["127.0.0.1", "[::1]", "10.1.2.3", "169.254.169.254", "[::ffff:127.0.0.1]"])
def test_a_private_address_is_refused_even_on_the_allowlist(owner_client, host):
    allow(host.strip("[]"))
    response = add_own(owner_client, base_url=f"http://{host}:8080/v1")
    assert response.status_code == 400
    assert "loopback, private or link-local address" in response.content.decode()
    allow(host.strip("[]"), private=True)
    assert add_own(owner_client, base_url=f"http://{host}:8080/v1").status_code == 302


def test_another_users_profile_is_404_to_edit_and_delete(client, other, owner_client):
    allow()
    add_own(owner_client)
    profile = ConnectionProfile.objects.get()
    client.force_login(other)
    assert client.get(reverse("settings_app:own_profile_edit", args=[profile.code])).status_code == 404
    assert (
        client.post(reverse("settings_app:own_profile_edit", args=[profile.code]), profile_form()).status_code
        == 404
    )
    assert client.post(reverse("settings_app:own_profile_delete", args=[profile.code])).status_code == 404
    assert ConnectionProfile.objects.filter(pk=profile.pk).exists()


def test_staff_profiles_cannot_be_edited_as_ones_own(owner_client):
    allow()
    staff = ConnectionProfile.objects.create(
        name="Staff", base_url="https://models.example.com/v1", api_key=STAFF_KEY
    )
    assert owner_client.get(reverse("settings_app:own_profile_edit", args=[staff.code])).status_code == 404
    assert owner_client.post(reverse("settings_app:own_profile_delete", args=[staff.code])).status_code == 404


def test_saving_without_a_key_keeps_it_and_clearing_removes_it(owner_client):
    allow()
    add_own(owner_client)
    profile = ConnectionProfile.objects.get()
    edit = reverse("settings_app:own_profile_edit", args=[profile.code])
    assert owner_client.post(edit, profile_form(api_key="", model="other")).status_code == 302
    profile.refresh_from_db()
    assert (profile.model, profile.api_key) == ("other", USER_KEY)
    assert owner_client.post(edit, profile_form(api_key="", clear_api_key="on")).status_code == 302
    profile.refresh_from_db()
    assert profile.api_key == "" and not profile.has_api_key


def test_keys_are_encrypted_at_rest(owner_client, settings):
    allow()
    add_own(owner_client)
    profile = ConnectionProfile.objects.get()
    stored = raw_key_column(profile)
    assert stored and USER_KEY not in stored
    assert crypto.decrypt(stored) == USER_KEY
    # The cached settings row (shared through Redis in production) holds no key in clear either.
    staff = ConnectionProfile.objects.create(name="Staff", base_url="https://x.example/v1", api_key=STAFF_KEY)
    site = SiteSettings.load()
    site.active_profile = staff
    site.save()
    import pickle

    assert STAFF_KEY.encode() not in pickle.dumps(SiteSettings.load())


def test_a_new_encryption_key_first_still_reads_old_secrets_and_rotate_secrets_moves_them(settings):
    from cryptography.fernet import Fernet

    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.RPCHAT = {**settings.RPCHAT, "ENCRYPTION_KEYS": [old]}
    profile = ConnectionProfile.objects.create(
        name="Staff", base_url="https://x.example/v1", api_key=STAFF_KEY
    )
    settings.RPCHAT = {**settings.RPCHAT, "ENCRYPTION_KEYS": [new, old]}
    profile.refresh_from_db()
    assert profile.api_key == STAFF_KEY
    out = StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "1 API key re-encrypted" in out.getvalue()
    settings.RPCHAT = {**settings.RPCHAT, "ENCRYPTION_KEYS": [new]}
    profile.refresh_from_db()
    assert profile.api_key == STAFF_KEY


def test_a_key_no_configured_key_opens_gives_a_clear_reply_error(
    owner, owner_client, settings, scripted_server
):
    from cryptography.fernet import Fernet

    settings.RPCHAT = {**settings.RPCHAT, "ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    staff = ConnectionProfile.objects.create(name="Staff", base_url=scripted_server.url, api_key=STAFF_KEY)
    site = SiteSettings.load()
    site.active_profile = staff
    site.save()
    settings.RPCHAT = {**settings.RPCHAT, "ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}
    chat = make_chat(user=owner, character=make_character())
    owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello"})
    reply = chat.messages.order_by("-seq").first()
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert reply.status == Message.Status.ERROR
    assert "The API key of the profile “Staff” cannot be read" in reply.error
    assert not scripted_server.requests


def _api_urls(chat) -> list[str]:
    urls = []
    for name, entry in named_patterns():
        if not name.startswith("api:") or not isinstance(entry, URLPattern):
            continue
        kwargs = {}
        for param in entry.pattern.converters:
            if param == "code":
                kwargs[param] = chat.code
            elif param == "character_code":
                kwargs[param] = chat.character.code
            elif param == "seq":
                kwargs[param] = 2
            else:
                kwargs = None
                break
        if kwargs is not None:
            urls.append(reverse(name, kwargs=kwargs))
    return urls


def test_keys_are_never_rendered_in_pages_the_api_the_admin_or_the_reply(
    owner, owner_client, admin_user, scripted_server
):
    allow("127.0.0.1", private=True)
    assert add_own(owner_client, base_url=scripted_server.url).status_code == 302
    own = ConnectionProfile.objects.get(owner=owner)
    client = Client()
    client.force_login(admin_user)
    staff = ConnectionProfile.objects.create(
        name="Staff", base_url=scripted_server.url, api_key=STAFF_KEY, available_to_all=True
    )
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    owner_client.post(
        reverse("chats:settings", args=[chat.code]),
        {
            "title": "t",
            "author_note_depth": 4,
            "author_note_frequency": 1,
            "author_note_role": "system",
            "turn_strategy": "mention",
            "profile": own.code,
            "character_default": staff.code,
        },
    )
    # A reply through the user's profile, and one whose server repeats the key it was sent.
    owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello"})
    generation.wait_for(chat.messages.get(seq=2).pk)
    scripted_server.mode = "echo401"
    owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Again"})
    generation.wait_for(chat.messages.get(seq=4).pk)
    assert scripted_server.requests  # the key was really sent to the server
    assert "Bearer " + USER_KEY not in chat.messages.get(seq=4).error

    api = _api_urls(chat)
    assert len(api) >= 4, api  # the chat, its messages, the character, the lists
    pages = [
        reverse("settings_app:models"),
        reverse("settings_app:own_profile_edit", args=[own.code]),
        reverse("chats:settings", args=[chat.code]),
        chat.get_absolute_url(),
        reverse("chats:message_prompt", args=[chat.code, 2]),
        reverse("chats:message_prompt", args=[chat.code, 4]),
        reverse("settings"),
        *api,
    ]
    for url in pages:
        body = owner_client.get(url).content.decode()
        assert USER_KEY not in body and STAFF_KEY not in body, url
    admin_pages = [
        reverse("admin:settings_app_connectionprofile_changelist"),
        reverse("admin:settings_app_connectionprofile_change", args=[own.pk]),
        reverse("admin:settings_app_connectionprofile_change", args=[staff.pk]),
        reverse("admin:settings_app_sitesettings_change", args=[1]),
        reverse("admin:chats_message_change", args=[chat.messages.get(seq=4).pk]),
    ]
    for url in admin_pages:
        response = client.get(url)
        assert response.status_code == 200, url
        body = response.content.decode()
        assert USER_KEY not in body and STAFF_KEY not in body, url
    stored = [str(m.meta) + m.error for m in Message.objects.all()] + [
        str(s.data) for s in PromptSnapshot.objects.all()
    ]
    assert not [s for s in stored if USER_KEY in s or STAFF_KEY in s]


def test_own_profiles_stop_working_when_staff_turn_them_off_or_drop_the_host(
    owner, owner_client, scripted_server
):
    allow("127.0.0.1", private=True)
    add_own(owner_client, base_url=scripted_server.url, model="mine")
    own = ConnectionProfile.objects.get(owner=owner)
    site_model = ConnectionProfile.objects.create(name="Site", base_url=scripted_server.url, model="site")
    site = SiteSettings.load()
    site.active_profile = site_model
    site.save()
    owner_client.post(reverse("settings_app:models"), {"profile": own.code})
    chat = make_chat(user=owner, character=make_character())

    def model_used() -> str:
        owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hi"})
        generation.wait_for(chat.messages.order_by("-seq").first().pk)
        return scripted_server.requests[-1]["model"]

    assert model_used() == "mine"
    allow("models.example.com", private=True)  # the host left the allowlist
    assert model_used() == "site"
    allow("127.0.0.1", private=True, on=False)  # users' own profiles turned off
    assert model_used() == "site"
    allow("127.0.0.1", private=True)
    assert model_used() == "mine"


def test_a_user_tests_their_own_server_through_the_same_guard(
    owner, owner_client, client, other, tiny_engine_url
):
    allow("127.0.0.1\nlocalhost")
    port = tiny_engine_url.rsplit(":", 1)[1].split("/")[0]
    # Saved while private addresses were allowed, say; the test is refused like a reply would be.
    own = ConnectionProfile.objects.create(owner=owner, name="Mine", base_url=f"http://localhost:{port}/v1")
    test = reverse("settings_app:own_profile_test", args=[own.code])
    page = owner_client.post(test, follow=True).content.decode()
    assert "loopback, private or link-local" in page
    allow("127.0.0.1\nlocalhost", private=True)
    page = owner_client.post(test, follow=True).content.decode()
    assert "Mine: connected. Models:" in page
    client.force_login(other)
    assert client.post(test).status_code == 404


@pytest.mark.django_db
def test_the_models_page_makes_the_same_queries_however_many_profiles(
    owner, owner_client, django_assert_num_queries
):
    allow()
    ConnectionProfile.objects.create(name="One", base_url="https://x.example/v1", available_to_all=True)
    owner_client.get(reverse("settings_app:models"))
    # the user's default, the profiles for the default's choices, the list
    with django_assert_num_queries(3):
        owner_client.get(reverse("settings_app:models"))
    ConnectionProfile.objects.bulk_create(
        ConnectionProfile(name=f"P{i}", base_url="https://x.example/v1", available_to_all=True)
        for i in range(50)
    )
    ConnectionProfile.objects.bulk_create(
        ConnectionProfile(owner=owner, name=f"Mine {i}", base_url="https://models.example.com/v1")
        for i in range(20)
    )
    owner_client.get(reverse("settings_app:models"))
    with django_assert_num_queries(3):
        html = owner_client.get(reverse("settings_app:models")).content.decode()
    assert "P49" in html and "Mine 19" in html
