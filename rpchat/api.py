"""The API object on django-ninja: token or session authentication on every operation, errors as
JSON, private caching of every answer, and the OpenAPI document generated from the operations
(served at /api/openapi.json). The operations are in characters/api.py and chats/api.py.
"""

from __future__ import annotations

import functools
import hashlib
import json

from django.http import Http404, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import path
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.views.decorators.http import condition, require_GET
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.responses import NinjaJSONEncoder

from core.api import DESCRIPTION, api_error, validation_message
from settings_app.auth import BearerTokenAuth, InvalidToken, SessionCookieAuth


def _unauthorized(request, exc: AuthenticationError) -> JsonResponse:
    if isinstance(exc, InvalidToken):
        return api_error(
            exc.message, status=401, WWW_Authenticate='Bearer realm="rpchat", error="invalid_token"'
        )
    return api_error(
        "Log in, or send an API token as 'Authorization: Bearer <token>'.",
        status=401,
        WWW_Authenticate='Bearer realm="rpchat"',
    )


class _Parser(Parser):
    """An empty query parameter (`?page=&character=`, as forms and URL templates write them) counts
    as not given, as it always has here, rather than as a malformed value."""

    def parse_querydict(self, data, list_fields, request):
        values = super().parse_querydict(data, list_fields, request)
        if data is not request.GET:
            return values
        return {name: value for name, value in values.items() if value not in ("", [""])}


class _API(NinjaAPI):
    def get_content_type(self) -> str:
        # As Django's JsonResponse (the errors) sends it: JSON is UTF-8 and takes no charset (RFC 8259).
        return "application/json"


def make_api(**options) -> NinjaAPI:
    """The API object: token or session authentication on every operation, errors as JSON."""
    api = _API(
        title="rpchat API",
        version="1",
        description=DESCRIPTION,
        auth=[BearerTokenAuth(), SessionCookieAuth()],
        # Served by openapi_view(), cached and readable without logging in.
        openapi_url=None,
        # ninja's docs page loads Swagger UI from a CDN, which the Content-Security-Policy forbids.
        docs_url=None,
        servers=[{"url": "/api"}],
        parser=_Parser(),
        **options,
    )
    api.add_exception_handler(AuthenticationError, _unauthorized)
    api.add_exception_handler(HttpError, lambda request, exc: api_error(exc.message, status=exc.status_code))
    api.add_exception_handler(
        Http404, lambda request, exc: api_error("Not found, or not yours to see.", status=404)
    )
    api.add_exception_handler(
        ValidationError, lambda request, exc: api_error(validation_message(exc), status=400)
    )
    return api


def _private(view):
    """Every answer of the API, 304s, errors and 405s included: private, revalidated, and varying
    on both credentials, so no shared cache mixes users. A 405 is JSON like every other error."""

    @functools.wraps(view)  # keeps ninja's csrf_exempt: SessionCookieAuth makes the CSRF check
    def wrapper(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            response = api_error(
                f"{request.method} is not allowed here.", status=405, Allow=response["Allow"]
            )
        patch_vary_headers(response, ("Cookie", "Authorization"))
        if "Cache-Control" not in response:
            patch_cache_control(response, private=True, no_cache=True)
        return response

    return wrapper


def operation_urls(api: NinjaAPI) -> list:
    """The URL patterns of the API's operations, each wrapped in _private().

    ninja's catch-all root pattern ("", a 404 that points at its docs page) is left out: there is
    no docs page, and /api/ stays a plain 404 as it was.
    """
    patterns, _app_name, _namespace = api.urls
    return [
        path(str(pattern.pattern), _private(pattern.callback), name=pattern.name)
        for pattern in patterns
        if pattern.name != "api-root"
    ]


def openapi_view(api: NinjaAPI):
    """The view of the OpenAPI document generated from `api`'s operations, once per process."""

    @functools.cache
    def document() -> bytes:
        schema = api.get_openapi_schema(path_prefix="")
        return json.dumps(schema, cls=NinjaJSONEncoder, indent=1).encode()

    def etag(request) -> str:
        return hashlib.sha256(document()).hexdigest()[:32]

    @require_GET
    @condition(etag_func=etag)
    def openapi_schema(request):
        """The API's OpenAPI 3.1 description, readable without logging in."""
        response = HttpResponse(document(), content_type="application/json")
        response["Cache-Control"] = "public, max-age=300"
        return response

    return openapi_schema
