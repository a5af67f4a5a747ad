"""API authentication: the browser's session, or a per-user token in `Authorization: Bearer`.

Tokens are random strings shown once; only their sha256 is stored (ApiToken.token_hash), so a
leaked database gives no usable token. A request carrying a valid token is exempt from CSRF (no
browser sends that header by itself); a request without one is checked as any cookie-authenticated
request is, so a session-authenticated POST still needs its CSRF token.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from datetime import timedelta

from django.http import Http404, HttpResponseNotAllowed, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.csrf import csrf_exempt

from .models import ApiToken

TOKEN_PREFIX = "rpc_"  # noqa: S105 - a public marker of rpchat's tokens, not a secret
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


def api_error(message: str, *, status: int, **headers) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _bearer(request) -> str | None:
    """The token in the Authorization header; "" when the header is there but not a Bearer token."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _csrf_failure(request):
    """CsrfViewMiddleware's verdict on `request`, or None when it passes."""
    check = CsrfViewMiddleware(lambda req: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


def api_view(view):
    """Authenticate an API view by token or session; 401 as JSON for anyone else.

    Responses are private and vary on both credentials, so no shared cache mixes users.
    """

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        raw = _bearer(request)
        if raw is not None:
            user = user_for_token(raw) if raw else None
            if user is None:
                return _finish(
                    api_error(
                        "The API token is not valid: it may have been revoked. Create a new one "
                        "on the API tokens page.",
                        status=401,
                        WWW_Authenticate='Bearer realm="rpchat", error="invalid_token"',
                    )
                )
            request.user = user
            request.api_token_auth = True
        else:
            if not request.user.is_authenticated:
                return _finish(
                    api_error(
                        "Log in, or send an API token as 'Authorization: Bearer <token>'.",
                        status=401,
                        WWW_Authenticate='Bearer realm="rpchat"',
                    )
                )
            request.api_token_auth = False
            unsafe = request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")
            if unsafe and _csrf_failure(request) is not None:
                return _finish(api_error("CSRF check failed: send the X-CSRFToken header.", status=403))
        try:
            response = view(request, *args, **kwargs)
        except Http404:
            response = api_error("Not found, or not yours to see.", status=404)
        if isinstance(response, HttpResponseNotAllowed):
            response = api_error(
                f"{request.method} is not allowed here.", status=405, Allow=response["Allow"]
            )
        return _finish(response)

    # Checked above, only for cookie-authenticated requests.
    return csrf_exempt(wrapper)


def _finish(response):
    patch_vary_headers(response, ("Cookie", "Authorization"))
    if "Cache-Control" not in response:
        patch_cache_control(response, private=True, no_cache=True)
    return response
