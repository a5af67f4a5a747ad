"""The session's user is kept in the cache between requests (settings_app.backends.UserBackend):
a page loads no user row once warm, and any saved change to the user (password, deactivation,
staff status, deletion) or to their preferences takes effect at their very next request."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from settings_app.backends import USER_CACHE_SECONDS, user_cache_key

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_once_warm_a_page_reads_no_user(owner_client, owner, django_assert_num_queries):
    gallery = reverse("characters:gallery")
    owner_client.get(gallery)  # the gallery's queries, cached by cachalot from now on
    cache.delete(user_cache_key(owner.pk))
    with django_assert_num_queries(1):  # the user, with their preferences joined
        owner_client.get(gallery)
    with django_assert_num_queries(0):
        assert owner_client.get(gallery).status_code == 200
    assert cache.get(user_cache_key(owner.pk)).username == owner.username
    assert 0 < USER_CACHE_SECONDS <= 60


def test_a_password_change_logs_out_the_users_other_sessions_at_once(owner):
    laptop, phone = signed_in(owner), signed_in(owner)
    settings_page = reverse("settings")
    assert phone.get(settings_page).status_code == 200  # the user is cached now
    response = laptop.post(
        reverse("password_change"),
        {
            "old_password": "pw-olivia-123",
            "new_password1": "a-new-pass-phrase-9",
            "new_password2": "a-new-pass-phrase-9",
        },
    )
    assert response.status_code == 302
    # The session that changed it stays in; the other is out at its next request.
    assert laptop.get(settings_page).status_code == 200
    response = phone.get(settings_page)
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_a_user_deactivated_or_deleted_in_the_admin_is_out_at_their_next_request(owner, other, admin_client):
    victim = signed_in(owner)
    settings_page = reverse("settings")
    assert victim.get(settings_page).status_code == 200
    owner.is_active = False
    owner.save()
    assert victim.get(settings_page).status_code == 302
    someone = signed_in(other)
    assert someone.get(settings_page).status_code == 200
    response = admin_client.post(reverse("admin:auth_user_delete", args=[other.pk]), {"post": "yes"})
    assert response.status_code == 302 and not get_user_model().objects.filter(pk=other.pk).exists()
    assert someone.get(settings_page).status_code == 302


def test_staff_status_taken_away_closes_the_admin_at_once(django_user_model):
    staff = django_user_model.objects.create_user(
        "sam", password="pw-sam-12345", is_staff=True, is_superuser=True
    )
    client = signed_in(staff)
    assert client.get(reverse("admin:index")).status_code == 200
    staff.is_staff = False
    staff.save(update_fields=["is_staff"])
    assert client.get(reverse("admin:index")).status_code == 302
