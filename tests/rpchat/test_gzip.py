"""gzip (rpchat.middleware.gzip_responses): pages of 1 KB or more for a browser that accepts it;
never a stream, a small answer or the answer to a POST; conditional GETs still answer 304."""

from __future__ import annotations

import gzip
import re

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from chats.models import Message
from tests.factories import make_character, make_chat

pytestmark = pytest.mark.django_db

GZIP = {"HTTP_ACCEPT_ENCODING": "gzip, deflate, br"}


def _masked(html: str) -> str:
    # The CSRF token is masked afresh in every response.
    return re.sub(r'(name="csrfmiddlewaretoken" value=|name="csrf-token" content=)"[^"]*"', r'\1"-"', html)


@pytest.fixture
def chat(owner):
    return make_chat(user=owner, character=make_character(name="Mira"), messages=60)


def test_a_chat_page_is_gzipped_for_a_browser_that_accepts_it_and_reads_the_same(owner_client, chat):
    plain = owner_client.get(chat.get_absolute_url())
    packed = owner_client.get(chat.get_absolute_url(), **GZIP)
    assert "Content-Encoding" not in plain and packed["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in packed["Vary"] and "Accept-Encoding" in plain["Vary"]
    body = gzip.decompress(packed.content)
    assert int(packed["Content-Length"]) == len(packed.content) < len(body) / 3
    assert _masked(body.decode()) == _masked(plain.content.decode())


def test_a_small_answer_is_sent_as_it_is(client):
    response = client.get(reverse("healthz"), **GZIP)
    assert response.status_code == 200 and len(response.content) < 1024
    assert "Content-Encoding" not in response


def test_a_reply_stream_is_never_compressed(owner_client, chat):
    last = Message.objects.filter(session=chat, role="assistant").order_by("-seq").first()
    response = owner_client.get(reverse("chats:message_stream", args=[chat.code, last.seq]), **GZIP)
    assert response.streaming and "Content-Encoding" not in response
    assert b"event: done" in async_to_sync(_read)(response)


async def _read(response) -> bytes:
    return b"".join([chunk async for chunk in response.streaming_content])


def test_the_answer_to_a_post_is_never_compressed(owner_client):
    # The one page that shows a secret (a new API token, once) answers a POST.
    response = owner_client.post(reverse("settings_app:api_tokens"), {"name": "backup script"}, **GZIP)
    assert response.status_code == 200 and len(response.content) > 1024
    assert "Content-Encoding" not in response


def test_a_gzipped_api_page_answers_its_weak_etag_with_304(owner_client, chat):
    url = reverse("api:messages", args=[chat.code])
    first = owner_client.get(url, **GZIP)
    assert first["Content-Encoding"] == "gzip" and first["ETag"].startswith('W/"')
    again = owner_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"], **GZIP)
    assert again.status_code == 304
