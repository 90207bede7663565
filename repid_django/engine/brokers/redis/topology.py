"""Which Redis deployment a broker URL names, and redis-py clients for it.

Three forms (``rediss`` instead of ``redis`` for TLS, in each):

* ``redis://[user:password@]host[:port][/db]`` (and ``unix://``): one server (standalone).
* ``redis+cluster://[user:password@]host:port[,host:port...]``: a Redis (or Valkey) Cluster.
  The nodes are where to start: the broker reads the slot map from the first that answers and
  follows ``MOVED`` and ``ASK``. A cluster has one database, 0.
* ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``: the primary of
  ``service`` as the Sentinels at those addresses report it. The password is the data nodes';
  the Sentinels' own is given as ``?sentinel_password=...`` (and ``sentinel_username=...``)
  when they require one.

A port left out is 6379 (26379 for a Sentinel). The redis-py clients for each kind are made
in :mod:`.clients`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote

Address = tuple[str, int]


class Kind(enum.Enum):
    STANDALONE = "standalone"
    CLUSTER = "cluster"
    SENTINEL = "sentinel"


_KINDS = {
    "redis": (Kind.STANDALONE, False),
    "rediss": (Kind.STANDALONE, True),
    "unix": (Kind.STANDALONE, False),
    "redis+cluster": (Kind.CLUSTER, False),
    "rediss+cluster": (Kind.CLUSTER, True),
    "redis+sentinel": (Kind.SENTINEL, False),
    "rediss+sentinel": (Kind.SENTINEL, True),
}
SCHEMES = tuple(_KINDS)


@dataclass(frozen=True, slots=True)
class Topology:
    """What a URL names: its kind, the addresses given (the cluster's seed nodes or the
    Sentinels), the Sentinel service name, the database and the credentials."""

    kind: Kind
    tls: bool
    nodes: tuple[Address, ...] = ()
    service: str = ""
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None

    @property
    def is_standalone(self) -> bool:
        return self.kind is Kind.STANDALONE

    @property
    def is_cluster(self) -> bool:
        return self.kind is Kind.CLUSTER

    @property
    def is_sentinel(self) -> bool:
        return self.kind is Kind.SENTINEL


def parse_topology(url: str, redacted: str) -> Topology:
    """Read ``url`` (see the module docstring); ``ValueError`` naming ``redacted`` (the URL
    without its password) and the form to use when it is not one of them."""
    scheme, sep, rest = url.partition("://")
    found = _KINDS.get(scheme.lower()) if sep else None
    if found is None:
        raise ValueError(
            f"unsupported Redis URL {redacted!r}: use redis://host:port/db, rediss://... (TLS), "
            "unix:///path/to/redis.sock, redis+cluster://host:port,host:port (a Cluster) or "
            "redis+sentinel://host:port,host:port/service/db (Sentinel)"
        )
    kind, tls = found
    if kind is Kind.STANDALONE:
        return Topology(kind, tls)
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    username = password = None
    if at:
        user, has_password, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if has_password else None
    default_port = 26379 if kind is Kind.SENTINEL else 6379
    nodes = tuple(_address(part, default_port, redacted) for part in hosts.split(",") if part)
    if not nodes:
        raise ValueError(f"Redis URL {redacted!r} names no host: give host:port[,host:port...]")
    options = dict(parse_qsl(query, keep_blank_values=True))
    words = [w for w in path.split("/") if w]
    if kind is Kind.CLUSTER:
        if words and words != ["0"]:
            raise ValueError(
                f"Redis URL {redacted!r}: a Cluster has only database 0; drop the path "
                f"{'/' + '/'.join(words)!r}"
            )
        return Topology(kind, tls, nodes, "", 0, username, password)
    if not words or len(words) > 2 or (len(words) == 2 and not words[1].isdigit()):
        raise ValueError(
            f"Redis URL {redacted!r}: a Sentinel URL ends with /<service name>[/<db>], "
            "e.g. redis+sentinel://h1:26379,h2:26379/mymaster/0"
        )
    db = int(words[1]) if len(words) == 2 else int(options.get("db", "0") or 0)
    return Topology(
        kind,
        tls,
        nodes,
        unquote(words[0]),
        db,
        username,
        password,
        options.get("sentinel_username") or None,
        options.get("sentinel_password") or None,
    )


def _address(text: str, default_port: int, redacted: str) -> Address:
    host, colon, port = text.rpartition(":")
    if not colon:
        host, port = text, str(default_port)
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"Redis URL {redacted!r}: {text!r} is not host:port")
    return host, int(port)
