"""The settings singleton is read from the cache, and every save is seen at once."""

from __future__ import annotations

import pytest
from django.urls import reverse

from settings_app.models import ConnectionProfile, SiteSettings

pytestmark = pytest.mark.django_db


def test_settings_are_read_from_the_cache_after_the_first_load(django_assert_num_queries):
    SiteSettings.load()
    with django_assert_num_queries(0):
        assert SiteSettings.load().instance_name == "rpchat"


def test_a_save_is_seen_by_the_next_read(django_assert_num_queries):
    site = SiteSettings.load()
    site.instance_name = "Moonlit Tavern"
    site.save()
    assert SiteSettings.load().instance_name == "Moonlit Tavern"


def test_changing_the_active_profile_is_seen_at_once():
    site = SiteSettings.load()
    profile = ConnectionProfile.objects.create(name="A", base_url="http://127.0.0.1:1/v1", model="m1")
    site.active_profile = profile
    site.save()
    assert SiteSettings.load().active_profile.model == "m1"
    profile.model = "m2"
    profile.save()
    assert SiteSettings.load().active_profile.model == "m2"
    profile.delete()
    assert SiteSettings.load().active_profile is None


def test_there_is_only_ever_one_settings_row():
    SiteSettings(instance_name="second").save()
    assert SiteSettings.objects.count() == 1
    with pytest.raises(ValueError):
        SiteSettings.load().delete()


def test_the_engine_label_is_shown_on_the_chat_page(owner_client, owner):
    from tests.factories import make_character, make_chat

    chat = make_chat(user=owner, character=make_character())
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "built-in demo model (SmolLM2-135M)" in html
    site = SiteSettings.load()
    site.active_profile = ConnectionProfile.objects.create(
        name="My llama.cpp", base_url="http://127.0.0.1:1/v1"
    )
    site.save()
    html = owner_client.get(chat.get_absolute_url()).content.decode()
    assert "My llama.cpp" in html and "built-in demo model (SmolLM2-135M)" not in html


def test_the_api_key_is_write_only_in_admin(client, admin_user):
    client.force_login(admin_user)
    add = reverse("admin:settings_app_connectionprofile_add")
    response = client.post(
        add,
        {
            "name": "OpenRouter",
            "mode": "chat",
            "base_url": "https://openrouter.example/api/v1",
            "model": "x",
            "api_key": "sk-very-secret",
            "context_size": 8192,
            "max_tokens": 300,
            "temperature": 0.8,
            "top_p": 0.95,
            "top_k": 40,
            "min_p": 0.05,
            "repetition_penalty": 1.1,
            "stop_strings": "[]",
            "seed": "",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    profile = ConnectionProfile.objects.get(name="OpenRouter")
    assert profile.api_key == "sk-very-secret"
    change = reverse("admin:settings_app_connectionprofile_change", args=[profile.pk])
    assert "sk-very-secret" not in client.get(change).content.decode()
    assert (
        "sk-very-secret"
        not in client.get(reverse("admin:settings_app_connectionprofile_changelist")).content.decode()
    )
    # Saving the form without typing a key keeps the stored one.
    data = {
        "name": "OpenRouter",
        "mode": "chat",
        "base_url": "https://openrouter.example/api/v1",
        "model": "y",
        "api_key": "",
        "context_size": 8192,
        "max_tokens": 300,
        "temperature": 0.8,
        "top_p": 0.95,
        "top_k": 40,
        "min_p": 0.05,
        "repetition_penalty": 1.1,
        "stop_strings": "[]",
        "seed": "",
    }
    assert client.post(change, data).status_code == 302
    profile.refresh_from_db()
    assert (profile.model, profile.api_key) == ("y", "sk-very-secret")


def test_test_connection_reports_the_servers_models_or_a_clear_error(client, admin_user, tiny_engine_url):
    client.force_login(admin_user)
    good = ConnectionProfile.objects.create(name="Tiny", base_url=tiny_engine_url)
    bad = ConnectionProfile.objects.create(name="Dead", base_url="http://127.0.0.1:9/v1")
    response = client.post(
        reverse("admin:settings_app_connectionprofile_changelist"),
        {"action": "test_connection", "_selected_action": [good.pk, bad.pk]},
        follow=True,
    )
    html = response.content.decode()
    assert "Tiny: connected. Models:" in html
    assert "Dead: Could not reach" in html


def test_admin_pages_open_for_staff_and_not_for_users(client, admin_user, owner):
    pages = [
        reverse("admin:settings_app_sitesettings_change", args=[1]),
        reverse("admin:settings_app_connectionprofile_changelist"),
        reverse("admin:settings_app_persona_changelist"),
        reverse("admin:characters_character_changelist"),
        reverse("admin:chats_chatsession_changelist"),
        reverse("admin:chats_message_changelist"),
        reverse("admin:auth_user_changelist"),
    ]
    SiteSettings.load()
    client.force_login(owner)
    for url in pages:
        assert client.get(url).status_code == 302, url
    client.force_login(admin_user)
    for url in pages:
        assert client.get(url).status_code == 200, url
