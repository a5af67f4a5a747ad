"""Monitoring: Server-Timing, /metrics, slow logs, cache hit counts, the staff Performance page."""

from __future__ import annotations

import logging
import re

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse
from prometheus_client import REGISTRY

from chats.models import Message
from core import metrics
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db


def server_timing(response) -> tuple[int, float, float]:
    """(queries, db ms, app ms) from a Server-Timing header."""
    header = response["Server-Timing"]
    queries = int(re.search(r'desc="(\d+) queries"', header).group(1))
    db = float(re.search(r"db;dur=([\d.]+)", header).group(1))
    app = float(re.search(r"app;dur=([\d.]+)", header).group(1))
    return queries, db, app


def sample(name: str, labels: dict) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=60)


@pytest.fixture
def staff_client(admin_user):
    from django.test import Client

    client = Client()
    client.force_login(admin_user)
    return client


def test_every_response_says_how_many_queries_it_ran_in_server_timing(
    owner_client, chat, django_assert_num_queries
):
    owner_client.get(chat.get_absolute_url())
    # The chat page's queries (tests/chats/test_endpoint_queries.py names them), the chat's model included.
    with django_assert_num_queries(2) as captured:
        response = owner_client.get(chat.get_absolute_url())
    queries, db_ms, app_ms = server_timing(response)
    assert queries == len(captured.captured_queries) == 2
    assert 0 <= db_ms <= app_ms


def test_metrics_are_labelled_by_route_never_by_the_raw_path(owner_client, chat, staff_client):
    labels = {"route": "chats/<uuid:code>/", "method": "GET"}
    before = sample("rpchat_http_request_duration_seconds_count", labels)
    owner_client.get(chat.get_absolute_url())
    owner_client.get(chat.get_absolute_url())
    assert sample("rpchat_http_request_duration_seconds_count", labels) == before + 2
    owner_client.get("/no/such/page/?q=1")
    text = staff_client.get(reverse("metrics")).content.decode()
    assert (
        'rpchat_http_request_duration_seconds_bucket{le="0.005",method="GET",route="chats/<uuid:code>/"}'
        in text
    )
    assert 'route="<unmatched>"' in text
    assert str(chat.code) not in text and "/no/such/page" not in text
    assert "process_resident_memory_bytes" in text and "process_cpu_seconds_total" in text


def test_metrics_need_a_staff_session_or_the_bearer_token(client, owner_client, settings):
    settings.RPCHAT = {**settings.RPCHAT, "METRICS_TOKEN": "s3cret-token-for-tests"}
    url = reverse("metrics")
    from django.test import Client

    anonymous = Client()
    assert anonymous.get(url).status_code == 401
    assert anonymous.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert owner_client.get(url).status_code == 403
    response = anonymous.get(url, HTTP_AUTHORIZATION="Bearer s3cret-token-for-tests")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert b"rpchat_http_requests_total" in response.content
    assert b"s3cret-token-for-tests" not in response.content


def test_without_a_configured_token_no_bearer_header_opens_metrics(client, settings):
    settings.RPCHAT = {**settings.RPCHAT, "METRICS_TOKEN": ""}
    assert client.get(reverse("metrics"), HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_slow_requests_are_logged_by_route_without_the_query_string(owner_client, chat, settings, caplog):
    url = reverse("chats:older", args=[chat.code])
    owner_client.get(url, {"before": 20})  # warm the settings, session and user caches
    settings.RPCHAT = {**settings.RPCHAT, "SLOW_REQUEST_MS": 0}
    with caplog.at_level(logging.WARNING, logger="rpchat.slow"):
        owner_client.get(url, {"before": 20, "token": "hunter2"})
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow request")]
    # the chat, the page's ETag key, the page
    assert lines and "GET chats/<uuid:code>/older/" in lines[-1] and "3 queries" in lines[-1]
    assert "hunter2" not in caplog.text and str(chat.code) not in caplog.text


def test_slow_queries_are_logged_with_placeholders_never_their_values(owner_client, chat, settings, caplog):
    settings.RPCHAT = {**settings.RPCHAT, "SLOW_QUERY_MS": 0}
    before = sample("rpchat_db_slow_queries_total", {})
    with caplog.at_level(logging.WARNING, logger="rpchat.slow"):
        Message.objects.filter(content="my-password-is-swordfish").exists()
    assert sample("rpchat_db_slow_queries_total", {}) > before
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("slow query")]
    assert any("chats_message" in line for line in logged)
    assert "swordfish" not in caplog.text


# Outside a test transaction: inside one, cachalot keeps results in a per-transaction dict instead.
@pytest.mark.django_db(transaction=True)
def test_cachalot_hits_and_cache_misses_are_counted(owner_client):
    aria = make_character(name="Aria", tags=["fantasy"])
    hits = {"cache": "cachalot", "result": "hit"}
    misses = {"cache": "cachalot", "result": "miss"}
    # The character's page reads the character and its tags through cachalot (the gallery keeps its
    # whole result under cachalot's invalidation times instead: one cachalot read).
    url = reverse("characters:detail", args=[aria.code])
    owner_client.get(url)
    before_hits, before_misses = (
        sample("rpchat_cache_lookups_total", hits),
        sample("rpchat_cache_lookups_total", misses),
    )
    owner_client.get(url)  # the character and its tags now come from cachalot
    assert sample("rpchat_cache_lookups_total", hits) >= before_hits + 2
    assert sample("rpchat_cache_lookups_total", misses) == before_misses
    default_hits = sample("rpchat_cache_lookups_total", {"cache": "default", "result": "hit"})
    assert default_hits > 0  # the settings row and the session come from the cache


def test_the_performance_page_is_for_staff_only(owner_client, client):
    url = reverse("performance")
    assert owner_client.get(url).status_code == 302
    assert "/admin/login/" in owner_client.get(url)["Location"]
    assert owner_client.get(reverse("performance_data")).status_code == 302


def test_the_performance_page_shows_latency_queries_and_memory_per_route(staff_client, owner_client, chat):
    metrics.recent.clear()
    for _ in range(3):
        owner_client.get(chat.get_absolute_url())
    html = staff_client.get(reverse("performance")).content.decode()
    assert "<code>chats/&lt;uuid:code&gt;/</code>" in html
    assert 'src="/static/js/performance.js"' in html
    data = staff_client.get(reverse("performance_data")).json()
    row = next(r for r in data["routes"] if r["route"] == "chats/<uuid:code>/")
    assert row["count"] == 3 and row["queries_median"] == 2
    assert row["median_ms"] <= row["p95_ms"] <= row["max_ms"]
    assert data["process"]["rss_bytes"] > 10_000_000
    assert set(data["caches"]) == {"default", "cachalot"}


@pytest.mark.django_db(transaction=True)
def test_a_streamed_reply_still_arrives_piece_by_piece_through_the_middleware(
    owner, scripted_server, make_profile
):
    scripted_server.pieces = ["One", " two", " three", " four"]
    scripted_server.delay = 0.3
    make_profile(scripted_server.url)
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    aclient = AsyncClient()
    aclient.force_login(owner)

    async def scenario():
        sent = await aclient.post(reverse("chats:send", args=[chat.code]), {"content": "Hi"})
        response = await aclient.get(sent.json()["stream_url"])
        assert response["Content-Type"] == "text/event-stream"
        # Timed at the start of the response; the lookup ran in a worker thread and still counted.
        queries, _, _ = server_timing(response)
        assert queries >= 2
        chunks = response.streaming_content
        async for chunk in chunks:
            text = chunk.decode() if isinstance(chunk, bytes) else chunk
            if "event: delta" in text or ("event: snapshot" in text and "One" in text):
                status = (
                    await Message.objects.filter(session=chat, seq=2)
                    .values_list("status", flat=True)
                    .afirst()
                )
                await chunks.aclose()
                return status
        return None

    # The first piece reached the page while the reply was still being written: nothing buffered it.
    assert async_to_sync(scenario)() == Message.Status.STREAMING
    from chats import generation

    reply = Message.objects.get(session=chat, seq=2)
    generation.wait_for(reply.pk)


@pytest.mark.django_db(transaction=True)
def test_time_to_first_token_and_speed_of_each_reply_are_recorded(owner_client, owner, tiny_builtin):
    from chats import generation

    metrics.recent.clear()
    before = sample("rpchat_generation_time_to_first_token_seconds_count", {})
    chat = make_chat(user=owner, character=make_character(name="Wren"))
    owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello"})
    reply = Message.objects.get(session=chat, seq=2)
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert sample("rpchat_generation_time_to_first_token_seconds_count", {}) == before + 1
    snap = metrics.snapshot()["generation"]
    assert snap["ttft_ms"]["count"] == 1 and snap["ttft_ms"]["median"] == reply.meta["ttft_ms"]
    assert snap["tokens_per_second"]["median"] == reply.meta["tokens_per_second"]


def _default_cache_reads() -> float:
    return sum(
        sample("rpchat_cache_lookups_total", {"cache": "default", "result": r}) for r in ("hit", "miss")
    )


def test_the_chat_page_reads_the_settings_once_however_many_messages_it_shows(owner_client, owner):
    short = make_chat(user=owner, character=make_character(name="Short"), messages=2)
    long = make_chat(user=owner, character=make_character(name="Long"), messages=50)
    owner_client.get(short.get_absolute_url())
    before = _default_cache_reads()
    owner_client.get(short.get_absolute_url())
    reads_short = _default_cache_reads() - before
    before = _default_cache_reads()
    owner_client.get(long.get_absolute_url())
    reads_long_first = _default_cache_reads() - before
    before = _default_cache_reads()
    owner_client.get(long.get_absolute_url())
    reads_long = _default_cache_reads() - before
    # the session, the session's user, the settings row (the view, the context processor), the
    # model's label (its generation, then the label); the page's messages come whole from the
    # pages cache. The first time, also each message's HTML and their Markdown (one get_many each)
    assert reads_short == reads_long <= 6
    assert reads_long_first == reads_long + 2
