"""Views for tests/rpchat/test_request_threads.py: which thread and database connection served a request."""

import threading

from asgiref.sync import sync_to_async
from django.db import connection
from django.http import JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from core import after_response
from core.databases import release_connection

# Set by the test to let a request held in `hold/` finish.
release = threading.Event()
held = threading.Event()
# The connection objects the views used, by request label, so a test can look at them afterwards.
seen: dict = {}


def _where(request) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM django_migrations")  # reads pages of the file
        cursor.fetchone()
    seen[request.GET.get("label", "")] = connection.connection
    return JsonResponse({"thread": threading.get_ident(), "connection": id(connection.connection)})


def probe(request):
    return _where(request)


def hold(request):
    held.set()
    if not release.wait(timeout=30):
        raise TimeoutError("the test never let this request go")
    return _where(request)


# What happened, in order, as the views and the test's ASGI `send` saw it (test_request_threads.py).
events: list = []


def defer(request):
    """Queues work for after the response (core.after_response), as starting a reply does."""
    after_response.defer(lambda: events.append("deferred work"))
    if request.GET.get("fail"):
        raise RuntimeError("the view failed after deferring")
    events.append("view returned")
    return JsonResponse({"deferred": True})


async def between_queries(request):
    """As a reply stream reads: each query on the request's thread, its connection released after."""

    @sync_to_async
    def read():
        try:
            return _where(request)
        finally:
            release_connection()

    response = await read()
    seen["released"] = await connection_after_release()
    return response


@sync_to_async
def connection_after_release():
    return connection.connection


class AsyncOnlyMiddleware:
    """For the test that the sync stack refuses an async-only middleware it would leave out."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response

    async def __call__(self, request):
        return await self.get_response(request)


def stream(request):
    """A sync view's streamed answer, its parts noted as they are made."""

    def parts():
        for n in range(3):
            events.append(f"part {n}")
            yield f"part {n};"

    return StreamingHttpResponse(parts(), content_type="text/plain")


def finished(sender, **kwargs):
    events.append("request finished")


@csrf_exempt
def echo(request):
    return JsonResponse({"body": request.body.decode(), "method": request.method})


@csrf_exempt
async def async_echo(request):
    return JsonResponse({"body": request.body.decode(), "thread": threading.get_ident()})


async def async_probe(request):
    """Where an async view runs: the event loop's thread."""
    return JsonResponse({"thread": threading.get_ident()})


urlpatterns = [
    path("probe/", probe),
    path("hold/", hold),
    path("defer/", defer),
    path("async-probe/", async_probe),
    path("between-queries/", between_queries),
    path("stream/", stream),
    path("echo/", echo),
    path("async-echo/", async_echo),
]
