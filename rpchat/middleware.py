"""Project-wide middleware: per-request measurement (time, queries, database time and size, in a
Server-Timing header, the slow-request log and /metrics), the refusal of NUL in query strings, and
the Content-Security-Policy header, and gzip."""

from __future__ import annotations

import gzip
import re
import secrets

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpResponseBadRequest, JsonResponse
from django.utils.cache import patch_vary_headers
from django.utils.decorators import sync_and_async_middleware

from core import metrics
from settings_app.models import SiteSettings


def route_of(request) -> str:
    """The URL pattern that answered (bounded: one per view), never the raw path."""
    match = getattr(request, "resolver_match", None)
    if match is not None and match.route:
        return match.route
    if match is not None:
        return match.view_name or metrics.UNMATCHED
    if request.path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return "<static>"
    return metrics.UNMATCHED


class RequestMetricsMiddleware:
    """First in MIDDLEWARE so it times everything the others do.

    Streaming responses (Server-Sent Events, files) are measured when the response starts: their
    body is never wrapped or buffered, so each event still reaches the browser as it is written.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.async_mode:
            return self.__acall__(request)
        stats, token = metrics.begin_request()
        try:
            response = self.get_response(request)
        finally:
            metrics.end_request(token)
        return self._finish(request, response, stats)

    async def __acall__(self, request):
        stats, token = metrics.begin_request()
        try:
            response = await self.get_response(request)
        finally:
            metrics.end_request(token)
        return self._finish(request, response, stats)

    def _finish(self, request, response, stats: metrics.RequestStats):
        if response.streaming:
            length = response.get("Content-Length")
            size = int(length) if length and length.isdigit() else None
        else:
            size = len(response.content)
        seconds = metrics.observe_request(
            route=route_of(request),
            method=request.method,
            status=response.status_code,
            stats=stats,
            size=size,
        )
        if settings.RPCHAT["SERVER_TIMING"]:
            response["Server-Timing"] = (
                f'db;dur={stats.db_seconds * 1000:.2f};desc="{stats.queries} queries", '
                f"app;dur={seconds * 1000:.2f}"
            )
        return response


NUL_REFUSED = "The address has a NUL character (%00) in it, which no page or filter accepts."


def _nul_refusal(request):
    # %00 is the only way a query string carries NUL.
    if "%00" not in request.META.get("QUERY_STRING", ""):
        return None
    if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"error": NUL_REFUSED}, status=400)
    return HttpResponseBadRequest(NUL_REFUSED, content_type="text/plain; charset=utf-8")


@sync_and_async_middleware
def refuse_nul_query(get_response):
    """Answer 400 to a query string holding a NUL character: no text rpchat stores or searches has
    one, and PostgreSQL refuses it in any query, so a filter such as ?label=%00 would fail deep in
    a view. Form fields are checked where they are read (Django's forms refuse NUL, services too)."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return _nul_refusal(request) or await get_response(request)

    else:

        def middleware(request):
            return _nul_refusal(request) or get_response(request)

    return middleware


BASE_POLICY = {
    "default-src": "'self'",
    # No inline script anywhere: every page's script is a static file.
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "connect-src": "'self'",
    "font-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
}


def content_security_policy(*, external_media: bool, admin: bool) -> str:
    policy = dict(BASE_POLICY)
    if external_media:
        policy["img-src"] = "'self' data: https:"
    if admin:
        # Django's admin sets a few style attributes; its scripts are still files only.
        policy["style-src"] = "'self' 'unsafe-inline'"
    return "; ".join(f"{k} {v}" for k, v in policy.items())


class ContentSecurityPolicyMiddleware:
    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        if iscoroutinefunction(get_response):
            markcoroutinefunction(self)

    def _header(self, request) -> str:
        return content_security_policy(
            external_media=SiteSettings.for_request(request).allow_external_media,
            admin=request.path.startswith("/admin/"),
        )

    def __call__(self, request):
        if iscoroutinefunction(self):
            return self.__acall__(request)
        response = self.get_response(request)
        if self._applies(response):
            response["Content-Security-Policy"] = self._header(request)
        return response

    async def __acall__(self, request):
        from asgiref.sync import sync_to_async

        response = await self.get_response(request)
        if self._applies(response):
            response["Content-Security-Policy"] = await sync_to_async(self._header)(request)
        return response

    @staticmethod
    def _applies(response) -> bool:
        # Pages are what a browser runs; JSON, files and event streams carry no script.
        return "Content-Security-Policy" not in response and response.get("Content-Type", "").startswith(
            "text/html"
        )


# Below this a response goes out as it is: the header and the CPU would cost more than they save.
GZIP_MIN_BYTES = 1024
# Level 1: a 90 KB chat page in about 0.5 ms instead of 3.5 ms at Django's 6, 20% larger.
GZIP_LEVEL = 1
_ACCEPTS_GZIP = re.compile(r"\bgzip\b")


def _gzip(body: bytes) -> bytes:
    """gzip at GZIP_LEVEL, with up to 100 random bytes as the file name in its header: the
    "Heal the BREACH" padding Django's GZipMiddleware adds (django.utils.text.compress_string)."""
    packed = memoryview(gzip.compress(body, compresslevel=GZIP_LEVEL, mtime=0))
    header = bytearray(packed[:10])
    header[3] = gzip.FNAME
    name = secrets.token_urlsafe(75)[: secrets.randbelow(100) + 1].encode()  # one call, not one a byte
    return bytes(header) + name + b"\x00" + bytes(packed[10:])


def _compressed(request, response):
    """Django's GZipMiddleware, narrowed: only a finished (not streaming) answer to a GET or HEAD of
    1 KB or more. A stream (a reply's Server-Sent Events, a file) is never wrapped, so each event
    still reaches the browser as it is written. Only GET and HEAD: the one answer that shows a
    secret (a new API token, shown once) answers a POST. See docs/performance.md (gzip and BREACH)."""
    if (
        response.streaming
        or request.method not in ("GET", "HEAD")
        or len(response.content) < GZIP_MIN_BYTES
        or response.has_header("Content-Encoding")
    ):
        return response
    patch_vary_headers(response, ("Accept-Encoding",))
    if not _ACCEPTS_GZIP.search(request.META.get("HTTP_ACCEPT_ENCODING", "")):
        return response
    body = _gzip(response.content)
    if len(body) >= len(response.content):
        return response
    response.content = body
    response.headers["Content-Length"] = str(len(body))
    etag = response.get("ETag")
    if etag and etag.startswith('"'):
        response.headers["ETag"] = "W/" + etag  # RFC 9110 8.8.1; conditional GETs compare weakly
    response.headers["Content-Encoding"] = "gzip"
    return response


@sync_and_async_middleware
def gzip_responses(get_response):
    """Compress pages for a browser that accepts gzip (`RPCHAT_GZIP`, on by default: `make run`
    serves directly, with no proxy in front to do it). Inline, not through a thread like Django's
    own GZipMiddleware in an async stack: compressing a page takes about a millisecond."""
    if iscoroutinefunction(get_response):

        async def middleware(request):
            return _compressed(request, await get_response(request))

    else:

        def middleware(request):
            return _compressed(request, get_response(request))

    return middleware


def sync_from_here(get_response):
    """Does nothing, sync-only. Django's middleware can run both ways; in an async stack (uvicorn)
    each then calls its process_request and process_response through sync_to_async: two trips to
    the worker thread per middleware, a dozen per request, 0.5 to 0.9 ms of every request
    (docs/performance.md). Django runs a middleware that can do both the way the one below it
    runs, so with this one last, sessions, CSRF, auth, messages, X-Frame-Options and the CSP header
    run sync, in one trip, up to static files (async-only); the outer ones stay async, and async
    views (the reply streams) still run on the event loop."""

    def middleware(request):
        return get_response(request)

    return middleware
