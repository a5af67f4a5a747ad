"""API authentication: the browser's session, or a per-user token in `Authorization: Bearer`.

Tokens are random strings shown once; only their sha256 is stored (ApiToken.token_hash), so a
leaked database gives no usable token. A request carrying a valid token is exempt from CSRF (no
browser sends that header by itself); a request without one is checked as any cookie-authenticated
request is, so a session-authenticated POST still needs its CSRF token.

BearerTokenAuth and SessionCookieAuth are the API's django-ninja auth classes (rpchat/api.py); the
JSON bodies of their 401 and 403 answers are made there too.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from ninja.errors import AuthenticationError, HttpError
from ninja.security import APIKeyCookie
from ninja.security.base import AuthBase

from .models import ApiToken

TOKEN_PREFIX = "rpc_"  # noqa: S105 (the visible start of every token, not a secret)
# last_used_at is written at most this often per token, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
MAX_TOKENS_PER_USER = 20


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def api_token_create(*, user, name: str) -> tuple[ApiToken, str]:
    """A new token for `user`; returns the row and the token itself, which is never stored."""
    name = name.strip()[:100]
    if not name:
        raise ValueError("Give the token a name, e.g. the app or script that will use it.")
    if "\x00" in name:
        raise ValueError("The name contains a NUL character (\\0), which cannot be stored.")
    if ApiToken.objects.filter(user=user).count() >= MAX_TOKENS_PER_USER:
        raise ValueError(f"You have {MAX_TOKENS_PER_USER} tokens already. Revoke one first.")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(user=user, name=name, token_hash=hash_token(raw), prefix=raw[:12])
    return token, raw


def api_token_revoke(*, token: ApiToken) -> None:
    token.delete()


def user_for_token(raw: str):
    """The active user a token belongs to, or None. One query; a write at most once a minute."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw), user__is_active=True)
        .first()
    )
    if token is None:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def _bearer(request) -> str | None:
    """The token in the Authorization header; "" when the header is there but not a Bearer token."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


class InvalidToken(AuthenticationError):
    """An Authorization header that is not a valid token: refused outright, even with a session."""

    def __init__(self) -> None:
        super().__init__(
            401,
            "The API token is not valid: it may have been revoked. Create a new one on the API tokens page.",
        )


class BearerTokenAuth(AuthBase):
    """`Authorization: Bearer <token>` (django-ninja auth; rpchat.api_urls puts it first).

    No header: None, so the session is tried next. A header that is not a valid token raises
    InvalidToken rather than falling back to the session: a client that sends a token means it.
    """

    openapi_type = "http"
    openapi_scheme = "bearer"
    openapi_description = "A token from the API tokens page (rpc_…)."

    def __call__(self, request):
        raw = _bearer(request)
        if raw is None:
            return None
        user = user_for_token(raw) if raw else None
        if user is None:
            raise InvalidToken()
        request.user = user
        request.api_token_auth = True
        return user


def _csrf_failure(request):
    """CsrfViewMiddleware's verdict on `request`, or None when it passes."""
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


class SessionCookieAuth(APIKeyCookie):
    """The browser's login session (django-ninja auth), with Django's CSRF check on unsafe methods.

    ninja exempts its views from CsrfViewMiddleware; the check is made here instead, only for
    cookie-authenticated requests, so a token-authenticated request needs no CSRF token.
    """

    param_name = settings.SESSION_COOKIE_NAME
    openapi_description = "The browser's login session. Unsafe methods also need the X-CSRFToken header."

    def __init__(self) -> None:
        # ninja's own check answers with its own message; ours is made in authenticate().
        super().__init__(csrf=False)

    def authenticate(self, request, key):
        if not request.user.is_authenticated:
            return None
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")
        if unsafe and _csrf_failure(request) is not None:
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header.")
        request.api_token_auth = False
        return request.user
