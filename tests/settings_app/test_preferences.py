"""A person's look-and-feel choices (theme, the dismissed demo-model notice), kept on the server for
every device they use, and the favicon."""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse

from settings_app.models import UserPreferences
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db

BANNER = "Replies come from the <strong>built-in demo model"


def theme_of(html: str) -> tuple[str, str]:
    theme = re.search(r'<html lang="en" data-theme="(\w+)">', html).group(1)
    scheme = re.search(r'<meta name="color-scheme" content="([^"]+)">', html).group(1)
    return theme, scheme


def test_the_theme_is_per_user_and_rendered_into_the_page(owner, other, owner_client):
    gallery = reverse("characters:gallery")
    assert theme_of(owner_client.get(gallery).content.decode()) == ("system", "light dark")
    response = owner_client.post(reverse("preferences"), {"theme": "dark"})
    assert response.status_code == 302 and response["Location"] == reverse("settings")
    assert theme_of(owner_client.get(gallery).content.decode()) == ("dark", "dark")
    # Another device of the same user: the same theme; another user: their own.
    phone = Client()
    phone.force_login(owner)
    assert theme_of(phone.get(gallery).content.decode()) == ("dark", "dark")
    elsewhere = Client()
    elsewhere.force_login(other)
    assert theme_of(elsewhere.get(gallery).content.decode()) == ("system", "light dark")
    html = owner_client.get(reverse("settings")).content.decode()
    assert re.search(r'<input type="radio" name="theme" value="dark"[^>]*checked', html)


def test_a_theme_that_is_not_offered_is_refused_next_to_the_field(owner_client, owner):
    response = owner_client.post(reverse("preferences"), {"theme": "purple"})
    assert response.status_code == 400
    assert 'class="error"' in response.content.decode()
    assert not UserPreferences.objects.filter(user=owner).exists()


def test_the_theme_costs_no_query_of_its_own(owner_client, owner, django_assert_num_queries):
    owner_client.post(reverse("preferences"), {"theme": "light"})
    url = reverse("characters:gallery")
    owner_client.get(url)
    # Once warm, the user comes from the cache with their preferences joined (test_session_user.py),
    # and the page of characters and the label list from cachalot (tests/characters/test_gallery.py):
    # a query for the theme would be the only one.
    with django_assert_num_queries(0):
        html = owner_client.get(url).content.decode()
    assert theme_of(html) == ("light", "light")


def test_a_changed_theme_changes_the_character_pages_etag(owner_client):
    url = make_character(name="Wren").get_absolute_url()
    first = owner_client.get(url)
    owner_client.post(reverse("preferences"), {"theme": "dark"})
    again = owner_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 200 and 'data-theme="dark"' in again.content.decode()


def test_the_demo_model_notice_can_be_dismissed_for_good(owner, owner_client):
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    page = chat.get_absolute_url()
    html = owner_client.get(page).content.decode()
    assert BANNER in html and 'name="dismiss_demo_banner"' in html
    response = owner_client.post(reverse("preferences"), {"dismiss_demo_banner": "1", "next": page})
    assert response.status_code == 302 and response["Location"] == page
    html = owner_client.get(page).content.decode()
    assert BANNER not in html
    # The chat still says which model writes its replies.
    assert "Model: <span data-engine>built-in demo model (SmolLM2-135M)</span>" in html
    phone = Client()
    phone.force_login(owner)
    assert BANNER not in phone.get(reverse("characters:gallery")).content.decode()


def test_dismissing_never_redirects_to_another_site(owner_client):
    response = owner_client.post(
        reverse("preferences"), {"dismiss_demo_banner": "1", "next": "https://evil.example/"}
    )
    assert response["Location"] == reverse("settings")


def test_the_favicon_is_linked_and_answered_at_favicon_ico(owner_client, client):
    html = owner_client.get(reverse("characters:gallery")).content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in html
    response = client.get("/favicon.ico")
    assert response.status_code == 302 and response["Location"] == "/static/favicon.ico"
    from django.contrib.staticfiles import finders

    assert finders.find("favicon.ico") and finders.find("favicon.svg")


def test_logging_in_checks_a_password_once_and_older_sessions_stay_logged_in(owner, client, monkeypatch):
    from django.contrib.auth import base_user

    checks = []
    real = base_user.check_password
    monkeypatch.setattr(base_user, "check_password", lambda *a, **k: checks.append(1) or real(*a, **k))
    owner.set_password("right-horse-battery")
    owner.save()
    assert not client.login(username=owner.username, password="wrong")
    # One backend said no and the chain stopped: the legacy entry did not hash it a second time.
    assert len(checks) == 1
    assert client.login(username=owner.username, password="right-horse-battery")
    # A session made before UserBackend existed names Django's own backend: still logged in, and
    # its preferences still apply (read with a query of their own).
    from settings_app.services import preferences_save

    preferences_save(user=owner, theme="dark")
    old = Client()
    old.force_login(owner, backend="django.contrib.auth.backends.ModelBackend")
    response = old.get(reverse("characters:gallery"))
    assert response.status_code == 200 and theme_of(response.content.decode()) == ("dark", "dark")


@pytest.mark.parametrize(
    "target", ["9" * 25, "settings", "//evil.example/", "https://evil.example/", "/chats/\x00", "/chats/\n"]
)
def test_dismissing_the_notice_with_a_strange_next_goes_back_to_settings(owner_client, target):
    response = owner_client.post(reverse("preferences"), {"dismiss_demo_banner": "1", "next": target})
    assert response.status_code == 302 and response["Location"] == reverse("settings")


def test_dismissing_the_notice_goes_back_to_the_page_it_was_on(owner_client):
    response = owner_client.post(
        reverse("preferences"), {"dismiss_demo_banner": "1", "next": "/chats/?page=2"}
    )
    assert response["Location"] == "/chats/?page=2"
