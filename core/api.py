"""What the JSON API's operations share, on django-ninja: response models, bounded parameter types,
documented error answers, conditional GET and page links.

The operations are in characters/api.py and chats/api.py; rpchat/api.py builds the API object
(authentication, JSON errors, private caching) and rpchat/api_urls.py mounts it under /api/.
See docs/api.md.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from django.http import HttpResponse, JsonResponse
from django.utils.http import urlencode
from django.views.decorators.http import condition
from ninja import Query
from ninja.errors import ValidationError
from pydantic import BaseModel, ConfigDict, PlainSerializer, WithJsonSchema

# The largest value a 64-bit integer column holds: a larger cursor is a 400, never a database error.
MAX_CURSOR = 2**63 - 1
# As core.pagination.page_number caps the pages' ?page=.
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


def page_of_results(request, rows, results: list) -> dict:
    """A numbered page's envelope: its results, its number, and links to its neighbours."""
    return {
        "results": results,
        "page": rows.number,
        "next": page_url(request, rows.number + 1) if rows.has_next else None,
        "previous": page_url(request, rows.number - 1) if rows.has_previous else None,
    }


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


def validation_message(exc: ValidationError) -> str:
    """ "before: Input should be less than or equal to 9223372036854775807", one per bad parameter."""
    return "; ".join(f"{error['loc'][-1]}: {error['msg']}" for error in exc.errors)
