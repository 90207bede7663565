"""Where and how the broker's lean connections (:mod:`.wire`) connect: host, port or socket
path, TLS, the commands sent first (``AUTH``, ``SELECT``) and, for Sentinel, how to find the
primary."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from .topology import Kind, Topology
from .url import RedisOptions

if TYPE_CHECKING:
    from .sentinel import SentinelLocator


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where and how to connect, read once from a :class:`RedisOptions`."""

    host: str
    port: int
    path: str | None
    hello: tuple[tuple[bytes | str, ...], ...]
    tls: ssl.SSLContext | None
    connect_timeout: float
    target: str
    locator: SentinelLocator | None = None
    """Sentinel: where the primary is is asked on each connect (``host``/``port`` unused), and
    a server that is no longer the primary is refused."""

    @classmethod
    def of(cls, options: RedisOptions) -> Endpoint:
        topology = options.topology
        if topology.kind is not Kind.STANDALONE:
            return cls._of_topology(options, topology)
        parts = urlsplit(options.url)
        db = parts.path.strip("/") if parts.scheme != "unix" else ""
        for key, value in (p.split("=", 1) for p in parts.query.split("&") if "=" in p):
            if key == "db":
                db = value
        hello: list[tuple[bytes | str, ...]] = []
        if parts.password is not None:
            password = unquote(parts.password)
            user = unquote(parts.username) if parts.username else None
            hello.append(("AUTH", user, password) if user else ("AUTH", password))
        if db and db != "0":
            hello.append(("SELECT", db))
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 6379,
            path=parts.path if parts.scheme == "unix" else None,
            hello=tuple(hello),
            tls=_tls_context(options) if options.is_tls else None,
            connect_timeout=options.socket_connect_timeout,
            target=options.redacted,
        )

    @classmethod
    def _of_topology(cls, options: RedisOptions, topology: Topology) -> Endpoint:
        """The first node of a Cluster (its other nodes: :meth:`at`), or the primary that the
        Sentinels name."""
        hello: list[tuple[bytes | str, ...]] = []
        if topology.password is not None:
            user, password = topology.username, topology.password
            hello.append(("AUTH", user, password) if user else ("AUTH", password))
        if topology.db:
            hello.append(("SELECT", str(topology.db)))
        tls = _tls_context(options) if topology.tls else None
        host, port = topology.nodes[0]
        locator = None
        if topology.is_sentinel:
            from .sentinel import SentinelLocator

            locator = SentinelLocator(topology, options.socket_connect_timeout, tls)
        return cls(
            host,
            port,
            None,
            tuple(hello),
            tls,
            options.socket_connect_timeout,
            options.redacted,
            locator,
        )

    def at(self, host: str, port: int) -> Endpoint:
        """The same credentials and TLS, at another node (of a Cluster)."""
        return replace(self, host=host, port=port, target=f"{host}:{port} ({self.target})")


def _tls_context(options: RedisOptions) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=options.ssl_ca_certs)
    if options.ssl_certfile:
        context.load_cert_chain(options.ssl_certfile, options.ssl_keyfile)
    context.check_hostname = options.ssl_check_hostname
    context.verify_mode = {
        "none": ssl.CERT_NONE,
        "optional": ssl.CERT_OPTIONAL,
    }.get(options.ssl_cert_reqs, ssl.CERT_REQUIRED)
    return context
