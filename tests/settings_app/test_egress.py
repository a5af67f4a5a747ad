"""Users' own profiles never reach loopback, private or link-local addresses unless staff allow it:
the host is resolved once, every address checked, and the connection made to a checked address."""

from __future__ import annotations

import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from chats import generation
from chats.models import Message
from settings_app import egress, engines
from settings_app.models import ConnectionProfile, SiteSettings
from tests.factories import make_character, make_chat
from tools.tiny_model import TINY_REPLY

REFUSED = "loopback, private or link-local"


def guarded(base_url: str, *, allow_private: bool = False) -> engines.EngineConfig:
    return engines.EngineConfig(
        label="Mine",
        base_url=base_url,
        model="mine",
        sampling={"max_tokens": 32},
        profile_name="Mine",
        guarded=True,
        allow_private=allow_private,
    )


def reply_of(config: engines.EngineConfig) -> str:
    async def run():
        text = ""
        async for item in engines.stream_completion(config, messages=[{"role": "user", "content": "Hi"}]):
            if isinstance(item, engines.Delta):
                text += item.text
        return text

    return async_to_sync(run)()


NOT_PUBLIC = [
    *("127.0.0.1", "::1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1"),
    "0.0.0.0",  # noqa: S104 - an address checked, not bound
    *("fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"),
    *("2002:7f00:1::", "224.0.0.1"),
]


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_addresses_that_are_not_public_are_refused(address):
    assert not egress.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address):
    assert egress.is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "10.1.2.3", "169.254.169.254", "localhost", "[::ffff:127.0.0.1]"]
)
def test_a_guarded_request_to_a_private_address_is_refused_before_connecting(scripted_server, host):
    port = urlsplit(scripted_server.url).port
    with pytest.raises(engines.EngineError) as caught:
        reply_of(guarded(f"http://{host}:{port}/v1"))
    assert REFUSED in str(caught.value)
    assert not scripted_server.requests
    # Listing the server's models (the admin's "test connection") goes through the same guard.
    with pytest.raises(engines.EngineError, match=REFUSED):
        async_to_sync(engines.list_models)(guarded(f"http://{host}:{port}/v1"))


def test_a_host_with_one_private_address_among_public_ones_is_refused(monkeypatch, scripted_server):
    async def resolve(host, port):
        return ["93.184.216.34", "127.0.0.1"]

    monkeypatch.setattr(egress, "resolve", resolve)
    with pytest.raises(engines.EngineError, match=REFUSED):
        reply_of(guarded("http://models.example.com/v1"))
    assert not scripted_server.requests


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch, tiny_engine_url):
    """A name the resolver answers once: the request reaches the server at that very address, so
    no second lookup (a DNS rebinding) can send it elsewhere."""
    port = urlsplit(tiny_engine_url).port
    lookups = []

    async def resolve(host, port):
        lookups.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(egress, "resolve", resolve)
    config = guarded(f"http://models.rebinding.invalid:{port}/v1", allow_private=True)
    assert reply_of(config) == TINY_REPLY
    assert lookups == ["models.rebinding.invalid"]


def test_with_private_addresses_allowed_a_guarded_request_reaches_a_local_server(
    tiny_engine_url, monkeypatch
):
    # A proxy from the environment is not used: the check is about the server itself.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    assert reply_of(guarded(tiny_engine_url, allow_private=True)) == TINY_REPLY


def test_redirects_are_not_followed():
    hits = []

    class Redirect(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            hits.append(self.path)
            self.send_response(307)
            # Somewhere the guard would let through too: only not following shows here.
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(engines.EngineError):
            reply_of(guarded(f"http://127.0.0.1:{server.server_address[1]}/v1", allow_private=True))
    finally:
        server.shutdown()
        server.server_close()
    assert hits == ["/v1/chat/completions"]


@pytest.mark.django_db(transaction=True)
def test_a_users_own_profile_at_a_loopback_address_gives_a_clear_error_in_the_chat(
    owner, owner_client, scripted_server
):
    site = SiteSettings.load()
    site.allow_user_profiles = True
    site.user_profile_hosts = "localhost"
    site.save()
    port = urlsplit(scripted_server.url).port
    # Saved before a change of DNS, say: the request is what is checked.
    own = ConnectionProfile.objects.create(owner=owner, name="Mine", base_url=f"http://localhost:{port}/v1")
    chat = make_chat(user=owner, character=make_character())
    chat.profile = own
    chat.save()
    owner_client.post(reverse("chats:send", args=[chat.code]), {"content": "Hello"})
    reply = chat.messages.order_by("-seq").first()
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert reply.status == Message.Status.ERROR
    assert REFUSED in reply.error and "ask staff" in reply.error
    assert not scripted_server.requests
    page = owner_client.get(chat.get_absolute_url()).content.decode()
    assert REFUSED in page
    # Staff allow private addresses: the same profile works.
    site.user_profiles_private_addresses = True
    site.save()
    owner_client.post(reverse("chats:message_retry", args=[chat.code, reply.seq]))
    generation.wait_for(reply.pk)
    reply.refresh_from_db()
    assert reply.status == Message.Status.COMPLETE and scripted_server.requests


@pytest.mark.django_db
def test_staff_profiles_are_not_guarded(tiny_engine_url):
    staff = ConnectionProfile.objects.create(name="Local", base_url=tiny_engine_url)
    config = engines.config_for_profile(staff, SiteSettings.load())
    assert not config.guarded
    assert reply_of(config) == TINY_REPLY


def test_counting_tokens_for_a_users_own_server_does_not_probe_it(tiny_engine_url):
    """llama.cpp answers /tokenize, but that probe is a plain request, outside the guard: for a
    user's own profile it is not made, and counts are estimated."""
    staff = engines.EngineConfig(label="Staff", base_url=tiny_engine_url, model="m")
    assert engines.token_counter(staff).exact  # the same server, for a staff profile
    counter = engines.token_counter(guarded(tiny_engine_url, allow_private=True))
    assert not counter.exact
    assert counter.count("Hello there, traveler") > 0


@pytest.mark.parametrize("guarded", [True, False])
def test_a_threads_clients_share_one_verifying_tls_context_and_threads_do_not(guarded):
    """Made per client, the context (certifi's whole CA bundle, parsed) took about 45 ms of the
    event loop for every reply. Still the checks of httpx's default: the certificate and the name.
    One per thread: httpcore changes a context (its ALPN list) before each connection."""
    config = engines.EngineConfig(label="Any", base_url="https://example.com/v1", model="m", guarded=guarded)

    def context_of() -> ssl.SSLContext:
        client = config.client()
        try:
            return client._transport._pool._ssl_context
        finally:
            async_to_sync(client.aclose)()

    first, second = context_of(), context_of()
    assert first is second
    assert first.verify_mode == ssl.CERT_REQUIRED and first.check_hostname
    assert first.get_ca_certs()  # certifi's authorities
    other: list = []
    thread = threading.Thread(target=lambda: other.append(context_of()))
    thread.start()
    thread.join()
    assert other[0] is not first
