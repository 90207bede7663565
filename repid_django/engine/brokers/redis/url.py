"""Redis URLs: validation, redaction and connection options.

Accepted: ``redis://[user[:password]@]host[:port][/db]``, ``rediss://...`` (TLS; the server
certificate is checked against the system CAs or ``ssl_ca_certs``, and its host name is
verified, unless turned off explicitly), ``unix://[user[:password]@]/path/to.sock[?db=N]``, and
the Cluster and Sentinel forms of :mod:`.topology`.

Passwords never appear in logs, reprs or error messages: everything that shows a URL shows
:func:`redact_url` of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .topology import Kind, Topology, parse_topology

_SECRET_QUERY = {"password", "pass", "passwd", "secret", "token", "sentinel_password"}


def redact_url(url: str) -> str:
    """``url`` with its password (and any password-like query parameter) replaced by ``***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return re.sub(r"//[^@/]*@", "//***@", url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostinfo}" if has_password else f"{userinfo}@{hostinfo}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_QUERY else v) for k, v in pairs])
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True, slots=True)
class RedisOptions:
    """How to reach Redis; ``url`` is kept private to this object (its repr is redacted)."""

    url: str
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_cert_reqs: str = "required"
    ssl_check_hostname: bool = True
    socket_timeout: float = 10.0
    socket_connect_timeout: float = 5.0

    def __repr__(self) -> str:
        return f"RedisOptions(url={self.redacted!r})"

    @property
    def redacted(self) -> str:
        return redact_url(self.url)

    @property
    def is_tls(self) -> bool:
        return self.url.startswith(("rediss://", "rediss+"))

    @property
    def topology(self) -> Topology:
        """Standalone, Cluster or Sentinel, with the addresses the URL gives."""
        return parse_topology(self.url, self.redacted)

    def validate(self) -> None:
        """Raise ``ValueError`` (with the redacted URL) for a URL redis-py cannot use."""
        if self.topology.kind is not Kind.STANDALONE:
            return  # parse_topology checked the hosts, the service and the database
        scheme, _, rest = self.url.partition("://")
        if scheme == "unix" and not urlsplit(self.url).path:
            raise ValueError(f"Redis URL {self.redacted!r} has no socket path")
        if scheme != "unix" and not rest.split("/", 1)[0].rpartition("@")[2]:
            raise ValueError(f"Redis URL {self.redacted!r} has no host")
        path = urlsplit(self.url).path.strip("/")
        if scheme != "unix" and path and not path.isdigit():
            raise ValueError(
                f"Redis URL {self.redacted!r}: the path must be a database number, e.g. /0"
            )

    def client_kwargs(self, *, blocking: bool = False) -> dict[str, Any]:
        """Keyword arguments for ``Redis.from_url`` (``blocking``: no read timeout, for BLPOP)."""
        kwargs: dict[str, Any] = {
            "socket_timeout": None if blocking else self.socket_timeout,
            "socket_connect_timeout": self.socket_connect_timeout,
            "decode_responses": False,
        }
        if self.is_tls:
            kwargs.update(
                ssl_cert_reqs=self.ssl_cert_reqs,
                ssl_check_hostname=self.ssl_check_hostname,
            )
            if self.ssl_ca_certs:
                kwargs["ssl_ca_certs"] = self.ssl_ca_certs
            if self.ssl_certfile:
                kwargs["ssl_certfile"] = self.ssl_certfile
            if self.ssl_keyfile:
                kwargs["ssl_keyfile"] = self.ssl_keyfile
        return kwargs
