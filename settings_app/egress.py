"""Requests to servers users named (their own connection profiles) go to public addresses only.

A user's profile names a host; a request there must not reach this machine or its network (the
admin, a database, a cloud's metadata service at 169.254.169.254) unless staff allow it. The check
is in the connection itself: `GuardedTransport` resolves the host once, refuses when any address
it resolves to is not public, and connects to one of exactly the addresses it checked, so a DNS
answer that changes between the check and the connection (rebinding) cannot slip through. TLS is
still verified against the host's name. Redirects are not followed (httpx's default), and a proxy
from the environment is not used (it would make the check about the proxy, not the server).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import threading
import typing

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# NAT64's well-known prefix carries an IPv4 address in its last 32 bits.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class AddressRefused(Exception):
    """The host resolves to an address requests may not go to. Passes through httpx unmapped."""


def _embedded_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public(ip: IPAddress) -> bool:
    """Whether `ip` is a public unicast address (not loopback, private, link-local, shared,
    reserved, multicast or unspecified), also when an IPv6 address carries an IPv4 one."""
    if isinstance(ip, ipaddress.IPv6Address):
        inner = _embedded_v4(ip)
        if inner is not None and not is_public(inner):
            return False
    return ip.is_global and not ip.is_multicast


def literal_address(host: str) -> IPAddress | None:
    """`host` as an address when it is written as one (IPv6 in brackets or not), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


async def resolve(host: str, port: int) -> list[str]:
    """Every address `host` resolves to for TCP, in the resolver's order, without duplicates."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, connecting only to checked public addresses."""

    def __init__(self, *, allow_private: bool = False):
        self.allow_private = allow_private
        self._backend = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await asyncio.wait_for(resolve(host, port), timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"Could not resolve {host}: {exc}") from exc
        if not addresses:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        if not self.allow_private:
            for address in addresses:
                if not is_public(ipaddress.ip_address(address.split("%", 1)[0])):
                    raise AddressRefused(
                        f"{host} resolves to {address}, a loopback, private or link-local address"
                    )
        last: Exception | None = None
        for address in addresses:  # pinned: only the addresses just checked
            try:
                return await self._backend.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        raise last  # type: ignore[misc]

    async def connect_unix_socket(self, path, timeout=None, socket_options=None):  # pragma: no cover
        raise httpcore.ConnectError("Unix sockets are not allowed here.")

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


_tls = threading.local()


def tls_context(*, trust_env: bool) -> ssl.SSLContext:
    """httpx's TLS settings (certifi's CAs; SSL_CERT_FILE or SSL_CERT_DIR when `trust_env`), made
    once per thread. Made per client, as httpx does by default, it read and parsed the CA bundle
    on every reply: about 45 ms of CPU (twice that guarded) on the event loop, every other request
    waiting. Per thread, not per process: httpcore sets the ALPN list on the context before each TLS
    connection, and OpenSSL copies that list when the connection is made, outside the GIL, so two
    threads sharing one context could race. Each loop and worker thread keeps its own."""
    name = "with_env" if trust_env else "without_env"
    context = getattr(_tls, name, None)
    if context is None:
        context = httpx.create_ssl_context(trust_env=trust_env)
        setattr(_tls, name, context)
    return context


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over GuardedBackend, ignoring proxies from the environment."""

    def __init__(self, *, allow_private: bool = False):
        super().__init__(verify=tls_context(trust_env=False), trust_env=False)
        # httpx builds its pool without a way to pass a network backend; this is the same pool
        # (httpx's defaults) with ours. httpx is pinned, and tests/settings_app/test_egress.py
        # fails if this stops pinning connections.
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=tls_context(trust_env=False),
            max_connections=httpx.Limits().max_connections,
            max_keepalive_connections=20,
            keepalive_expiry=5.0,
            network_backend=GuardedBackend(allow_private=allow_private),
        )


def client_options(*, guarded: bool, allow_private: bool) -> dict:
    """The httpx.AsyncClient arguments for a request to a profile's server."""
    if not guarded:
        return {"verify": tls_context(trust_env=True)}
    return {"transport": GuardedTransport(allow_private=allow_private), "trust_env": False}
