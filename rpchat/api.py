"""The JSON API's plumbing, on django-ninja: the API object with its authentication and JSON errors,
private caching of every answer, conditional GET, the types the operations share, and the OpenAPI
document generated from the operations (served at /api/openapi.json).

The operations are in characters/api.py and chats/api.py; rpchat/api_urls.py mounts them under
/api/. See docs/api.md.
"""

from __future__ import annotations

import functools
import hashlib
import json
from datetime import datetime
from typing import Annotated

from django.http import Http404, HttpResponse, HttpResponseNotAllowed, JsonResponse
from django.urls import path
from django.utils.cache import patch_cache_control, patch_vary_headers
from django.utils.http import urlencode
from django.views.decorators.http import condition, require_GET
from ninja import NinjaAPI, Query
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.responses import NinjaJSONEncoder
from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

from settings_app.auth import BearerTokenAuth, InvalidToken, SessionCookieAuth

# The largest value a 64-bit integer column holds: a larger cursor is a 400, never a database error.
MAX_CURSOR = 2**63 - 1
# As rpchat.pagination.page_number caps the pages' ?page=.
MAX_PAGE = 10_000

DESCRIPTION = (
    "Read-only JSON API over your characters, chats and messages. Authenticate with your browser "
    "session or with `Authorization: Bearer <token>` (make tokens on the API tokens page). Errors are "
    '`{"error": "…"}`. See docs/api.md.'
)


class Out(BaseModel):
    """A response object. A field an operation returns but does not declare is an error, not
    dropped in silence: the generated schema cannot fall behind what is sent. A plain pydantic
    model (not ninja's Schema, which reads ORM objects): operations return dicts they built from
    the rows they read, validated once."""

    model_config = ConfigDict(extra="forbid")


class Error(Out):
    error: str


# As datetime.isoformat() writes it ("…+00:00", microseconds kept), which is what the API has always
# sent; ninja's JSON encoder would write "…Z" with milliseconds.
Timestamp = Annotated[
    datetime,
    PlainSerializer(lambda value: value.isoformat(), return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]

# ?page= of a list.
PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE)]
# ?q= of a search.
SearchWords = Annotated[
    str, Query(description='Words (all must match), "quoted phrases", word* for a prefix.')
]

# Answers every operation may give besides its 200 (the bodies come from make_api()'s handlers).
UNAUTHORIZED = {401: Error}
BAD_REQUEST = {400: Error}
NOT_FOUND = {404: Error}
NOT_MODIFIED = {304: None}


def validators_documented(*, last_modified: bool = False) -> dict:
    """openapi_extra for an operation that answers If-None-Match (and If-Modified-Since)."""
    headers = {"ETag": {"schema": {"type": "string"}}}
    parameters = [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "An ETag from an earlier response; 304 when unchanged.",
        }
    ]
    if last_modified:
        headers["Last-Modified"] = {"schema": {"type": "string"}}
        parameters.append(
            {
                "name": "If-Modified-Since",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "A Last-Modified from an earlier response; 304 when unchanged.",
            }
        )
    return {"parameters": parameters, "responses": {200: {"headers": headers}}}


def not_modified(
    request, response: HttpResponse, *, etag: str | None = None, last_modified: datetime | None = None
) -> HttpResponse | None:
    """Conditional GET inside an operation (after its authentication and parameter checks).

    Django's own `condition` decides, and puts ETag and Last-Modified on `response` (the operation's
    ninja temporal response, whose body ninja fills in afterwards) or on the 304 it answers with.
    Returns that 304 (or 412) to send as is, or None to go on and build the body.
    """
    answer = condition(etag_func=lambda _: etag, last_modified_func=lambda _: last_modified)(
        lambda _: response
    )(request)
    return None if answer is response else answer


def page_url(request, number: int) -> str:
    """This list's URL at page `number`, with its other parameters as they came."""
    params = {k: v for k, v in request.GET.items() if k != "page"}
    params["page"] = number
    return f"{request.path}?{urlencode(params)}"


def api_error(message: str, *, status: int, **headers) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def _validation_message(exc: ValidationError) -> str:
    """ "before: Input should be less than or equal to 9223372036854775807", one per bad parameter."""
    return "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in exc.errors)


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
        ValidationError, lambda request, exc: api_error(_validation_message(exc), status=400)
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
