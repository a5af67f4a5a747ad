"""API tokens: made on their page and shown once, stored hashed, accepted as Bearer tokens,
revoked for good, and CSRF exempted only for requests that carry a valid one."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from django.test import Client, RequestFactory
from django.urls import reverse
from django.utils import timezone

from rpchat.api import make_api, operation_urls
from settings_app.auth import api_token_create
from settings_app.models import ApiToken

pytestmark = pytest.mark.django_db


def bearer(raw: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_a_new_token_is_shown_once_and_only_its_hash_is_kept(owner_client, owner):
    response = owner_client.post(reverse("settings_app:api_tokens"), {"name": "backup script"})
    html = response.content.decode()
    raw = re.search(r'value="(rpc_[A-Za-z0-9_-]{40,})"', html).group(1)
    assert "shown only this once" in html
    assert "no-store" in response["Cache-Control"]
    token = ApiToken.objects.get(user=owner)
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {token.name, token.prefix, token.token_hash} and raw.startswith(token.prefix)
    # Later visits list the token by name and prefix, never the token itself or its hash.
    html = owner_client.get(reverse("settings_app:api_tokens")).content.decode()
    assert "backup script" in html and f"{token.prefix}…" in html
    assert raw not in html and token.token_hash not in html


def test_a_token_needs_a_name(owner_client, owner):
    response = owner_client.post(reverse("settings_app:api_tokens"), {"name": "  "})
    assert response.status_code == 400 and "Give the token a name" in response.content.decode()
    assert not ApiToken.objects.exists()


def test_the_token_opens_the_api_without_a_session_and_last_use_is_written_at_most_once_a_minute(
    owner, django_assert_num_queries
):
    _, raw = api_token_create(user=owner, name="cli")
    client = Client()
    # the token joined with its user, then the first use is recorded, then the page of chats
    with django_assert_num_queries(3):
        response = client.get(reverse("api:chats"), **bearer(raw))
    assert response.status_code == 200 and response.json()["results"] == []
    first_use = ApiToken.objects.get().last_used_at
    assert first_use is not None
    # Within the minute: no write.
    with django_assert_num_queries(2):
        client.get(reverse("api:chats"), **bearer(raw))
    assert ApiToken.objects.get().last_used_at == first_use
    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    with django_assert_num_queries(3):
        client.get(reverse("api:chats"), **bearer(raw))
    assert ApiToken.objects.get().last_used_at > first_use


def test_a_revoked_token_gets_401_and_only_its_owner_can_revoke_it(client, owner, other):
    token, raw = api_token_create(user=owner, name="old")
    client.force_login(other)
    assert client.post(reverse("settings_app:api_token_revoke", args=[token.pk])).status_code == 404
    assert ApiToken.objects.filter(pk=token.pk).exists()
    client.force_login(owner)
    response = client.post(reverse("settings_app:api_token_revoke", args=[token.pk]), follow=True)
    assert "revoked" in response.content.decode()
    client.logout()
    response = client.get(reverse("api:chats"), **bearer(raw))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]
    assert 'error="invalid_token"' in response["WWW-Authenticate"]


def test_a_bad_token_is_refused_even_alongside_a_valid_session(owner_client):
    for header in ("Bearer nope", "Bearer ", "Basic b2xpdmlhOnB3", "Token abc"):
        response = owner_client.get(reverse("api:chats"), HTTP_AUTHORIZATION=header)
        assert response.status_code == 401, header
        assert response["Content-Type"] == "application/json"


def test_the_token_of_a_deactivated_user_is_refused(owner):
    _, raw = api_token_create(user=owner, name="cli")
    owner.is_active = False
    owner.save()
    assert Client().get(reverse("api:chats"), **bearer(raw)).status_code == 401


def test_api_responses_vary_on_both_credentials(owner):
    _, raw = api_token_create(user=owner, name="cli")
    response = Client().get(reverse("api:chats"), **bearer(raw))
    assert {"Cookie", "Authorization"} <= {v.strip() for v in response["Vary"].split(",")}
    assert "private" in response["Cache-Control"]


@pytest.fixture
def echo_view():
    """The view of a POST operation authenticated and wrapped as every operation of the API is."""
    api = make_api(urls_namespace="test-echo")

    @api.post("/x/", url_name="echo")
    def echo(request):
        return {"user": request.user.get_username(), "token": request.api_token_auth}

    (pattern,) = operation_urls(api)
    return pattern.callback


def _post(user=None, *, csrf: bool = False, token: str | None = None):
    from django.contrib.auth.models import AnonymousUser
    from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret

    secret = _get_new_csrf_string()
    headers = {}
    if csrf:
        headers["HTTP_X_CSRFTOKEN"] = _mask_cipher_secret(secret)
    if token:
        headers["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    request = RequestFactory().post("/api/x/", **headers)
    request.COOKIES["csrftoken"] = secret
    request.user = user or AnonymousUser()
    return request


def test_a_session_authenticated_post_needs_its_csrf_token_and_a_token_authenticated_one_does_not(
    owner, echo_view
):
    assert echo_view(_post(owner)).status_code == 403
    assert echo_view(_post(owner, csrf=True)).status_code == 200
    _, raw = api_token_create(user=owner, name="cli")
    response = echo_view(_post(token=raw))
    assert response.status_code == 200 and b'"token": true' in response.content
    # An invalid token does not buy an exemption: it is refused outright.
    assert echo_view(_post(owner, token="rpc_forged")).status_code == 401
    assert echo_view(_post()).status_code == 401


def test_tokens_are_listed_read_only_in_admin(client, admin_user, owner):
    token, raw = api_token_create(user=owner, name="cli")
    client.force_login(admin_user)
    assert client.get(reverse("admin:settings_app_apitoken_add")).status_code == 403
    html = client.get(reverse("admin:settings_app_apitoken_change", args=[token.pk])).content.decode()
    assert token.token_hash in html  # shown as text, for matching a leaked token's hash
    assert 'name="token_hash"' not in html and raw not in html
    assert (
        client.post(
            reverse("admin:settings_app_apitoken_delete", args=[token.pk]), {"post": "yes"}
        ).status_code
        == 302
    )
    assert not ApiToken.objects.exists()


def test_the_token_page_is_linked_from_settings_and_needs_a_login(client, owner_client):
    html = owner_client.get(reverse("settings")).content.decode()
    assert f'href="{reverse("settings_app:api_tokens")}"' in html
    client.logout()
    assert client.get(reverse("settings_app:api_tokens")).status_code == 302
