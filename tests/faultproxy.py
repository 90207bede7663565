"""A fault-injection TCP proxy on loopback between the project and a real redis-server.

``FaultProxy(port)`` listens on 127.0.0.1 (``proxy.url``) and forwards every connection to the
Redis on ``port``. It parses RESP both ways: requests (arrays of bulk strings) are framed, read
with ``hiredis`` and classified by the broker operation they carry; each connection keeps a
FIFO of its forwarded requests, so every reply is paired with its request. ``inject()`` applies
a fault to the requests of one operation, from a moment on, for a duration or a number of
requests:

* ``delay``: each request is held ``delay`` seconds (from its arrival) before it is forwarded:
  latency. Order is kept: what follows it on its connection waits behind it.
* ``blackhole``: the connection that sent it goes silent for good. The request and everything
  after it, both ways (replies to earlier requests too), are swallowed; nothing is closed.
  The client has to notice through its own timeout and reconnect; new connections work once
  the fault is over (a new connection that sends the operation meanwhile goes silent too).
* ``reset``: the request is forwarded; when its reply comes, part of it is forwarded, then both
  sockets are reset (RST: ``SO_LINGER`` 0).
* ``drop``: the request is forwarded and Redis applies it; its reply is swallowed and the
  client's connection closed.

A reset or drop can be limited to the replies that matter (``when=``: a predicate on the parsed
reply), e.g. a claim that leased something rather than one that found nothing.

Operations: the broker sends its scripts with EVALSHA (:mod:`repid_django.engine.brokers.redis.
scripts`), so the SHA1 of each script, computed here the way the broker computes it (from the
files as they are when the proxy starts), names the operation; a script loaded later (SCRIPT
LOAD, EVAL) is named by its source. ``enqueue``, ``claim``, ``finish``, ``extend`` (the lease
keeper thread). ``idle`` is a BLPOP on wake-up keys (a worker waiting for
jobs). Anything else is ``other``. ``seen()`` and ``faulted()`` count requests per operation
(and fault kind), so a test can check that its fault really happened.

One event loop in a daemon thread serves every connection; ``inject()`` and the counters can
be used from any thread. Times are ``time.monotonic()`` (system-wide on Linux, so comparable
with other processes' readings). RESP2 only (what redis-py and the broker's lean connections
speak); pub/sub is not paired (not used through the proxy).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import struct
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import hiredis

from repid_django.engine.brokers.redis.scripts import LUA_DIR, helpers, script

Kind = Literal["delay", "blackhole", "reset", "drop"]
KINDS: tuple[Kind, ...] = ("delay", "blackhole", "reset", "drop")
OPERATIONS = ("enqueue", "claim", "finish", "extend", "idle")
RESET_PAUSE = 0.02
"""Seconds between forwarding part of a reply and the reset: the client reads the part first."""


class ProtocolError(Exception):
    """Bytes that are not RESP."""


def script_names() -> dict[bytes, str]:
    """SHA1 (lower-case hex, as EVALSHA sends it) to name, for every script of the broker: as
    this process first read them, and as the files are now (other processes read them now)."""
    names: dict[bytes, str] = {}
    for fresh in (False, True):
        if fresh:  # the files may have changed since: read them again
            helpers.cache_clear()
            script.cache_clear()
        for path in sorted(LUA_DIR.glob("*.lua")):
            if path.stem != "common":
                loaded = script(path.stem)
                names[loaded.sha.encode()] = loaded.name
    return names


def name_of(source: bytes) -> str | None:
    """The script whose own file ``source`` (helpers, then that file) ends with, if any."""
    for path in sorted(LUA_DIR.glob("*.lua")):
        own = path.read_bytes().rstrip()
        if path.stem != "common" and own and source.rstrip().endswith(own):
            return path.stem
    return None


_LINE = frozenset(b"+-:_,#(")
_BLOB = frozenset(b"$!=")
_ARRAY = frozenset(b"*~>")
_MAP = frozenset(b"%|")


def frame_end(buf: bytes | bytearray, pos: int = 0) -> int:
    """Where the RESP value that starts at ``pos`` ends; -1 when it is not complete yet."""
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return -1
    kind = buf[pos]
    if kind in _LINE:
        return nl + 2
    try:
        n = int(buf[pos + 1 : nl])
    except ValueError:
        raise ProtocolError(f"not RESP: {bytes(buf[pos : pos + 40])!r}") from None
    if kind in _BLOB:
        if n < 0:
            return nl + 2
        end = nl + 4 + n
        return end if len(buf) >= end else -1
    if kind in _ARRAY or kind in _MAP:
        at = nl + 2
        for _ in range(max(n, 0) * (2 if kind in _MAP else 1)):
            at = frame_end(buf, at)
            if at < 0:
                return -1
        return at
    raise ProtocolError(f"not RESP: {bytes(buf[pos : pos + 40])!r}")


@dataclass(eq=False)
class Fault:
    """A fault on the requests of ``op`` from ``start`` (monotonic), for ``duration`` seconds
    and/or ``count`` requests. ``hits``: requests faulted (for a blackhole: connections
    silenced, each by one request of ``op``)."""

    kind: Kind
    op: str
    start: float
    duration: float | None = None
    count: int | None = None
    delay: float = 0.0
    when: Callable[[Any], bool] | None = None
    """Reply faults only: apply to a reply only when ``when(reply)`` (the parsed reply) is
    true, e.g. a claim that leased something; other replies go through."""
    hits: int = 0
    first_hit: float | None = None
    last_hit: float | None = None
    marked: int = 0
    """Reply faults (reset, drop) waiting for the reply of a marked request."""

    def active(self, now: float) -> bool:
        if now < self.start:
            return False
        if self.duration is not None and now >= self.start + self.duration:
            return False
        return self.count is None or self.hits + self.marked < self.count

    @property
    def done(self) -> bool:
        """True once every request the fault was for has been faulted."""
        return self.count is not None and self.hits >= self.count

    @property
    def end(self) -> float | None:
        """When the fault ended: its last hit once ``count`` is reached, else the end of its
        duration; ``None`` while it may still hit."""
        if self.done:
            return self.last_hit
        if self.duration is not None:
            return self.start + self.duration
        return None

    def __str__(self) -> str:
        span = f"{self.duration:g}s" if self.duration is not None else ""
        count = f"{self.count} requests" if self.count is not None else ""
        delay = f" of {self.delay * 1000:.0f}ms" if self.kind == "delay" else ""
        return f"{self.kind}{delay} on {self.op} ({' / '.join(p for p in (span, count) if p)})"


@dataclass(eq=False)
class _Link:
    """One client connection and its connection to Redis."""

    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    pending: deque[tuple[str, Fault | None]] = field(default_factory=deque)
    """(operation, reply fault) of every forwarded request whose reply has not come yet."""
    outbox: asyncio.Queue[tuple[float, bytes, str, Fault | None]] = field(
        default_factory=asyncio.Queue
    )
    """(release time, request, operation, fault) to forward, in arrival order; a blackhole
    fault in it is where the silence starts."""
    muted: bool = False
    """A request was black-holed: later requests are swallowed as they come."""
    silent: bool = False
    """Black-holed (from that request on): nothing goes through any more, nothing is closed."""
    broken: bool = False
    """Being reset or closed by a reply fault: nothing more is forwarded."""
    marks: list[Fault] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST (SO_LINGER 0) instead of a FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """See the module docstring."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._names = script_names()
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._seen: Counter[str] = Counter()
        self._unknown: Counter[bytes] = Counter()
        self._faulted: Counter[tuple[str, str]] = Counter()
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy")
        self._thread.daemon = True
        self._thread.start()
        start = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        self._server = start.result(10)
        self.port = int(self._server.sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    # faults and counters (any thread) -----------------------------------------------------
    def inject(
        self,
        kind: Kind,
        op: str,
        *,
        duration: float | None = None,
        count: int | None = None,
        delay: float = 0.0,
        at: float | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> Fault:
        """Fault the requests of ``op`` from ``at`` (monotonic; default now) for ``duration``
        seconds and/or ``count`` requests; ``delay``: the latency of a ``delay`` fault;
        ``when``: which replies a reset or drop takes (see :class:`Fault`)."""
        if kind not in KINDS:
            raise ValueError(f"unknown fault {kind!r}: one of {KINDS}")
        if op not in (*OPERATIONS, "other"):
            raise ValueError(f"unknown operation {op!r}: one of {OPERATIONS} or 'other'")
        if duration is None and count is None:
            raise ValueError("a fault needs a duration or a count")
        if kind == "delay" and delay <= 0:
            raise ValueError("a delay fault needs delay > 0")
        if when is not None and kind not in ("reset", "drop"):
            raise ValueError("when= applies to reply faults (reset, drop) only")
        start = time.monotonic() if at is None else at
        fault = Fault(kind, op, start, duration, count, delay, when)
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        """Remove every fault (silenced connections stay silent)."""
        with self._lock:
            self._faults.clear()

    def seen(self, op: str) -> int:
        """Requests of ``op`` that reached the proxy."""
        with self._lock:
            return self._seen[op]

    def faulted(self, op: str, kind: Kind) -> int:
        """Requests of ``op`` faulted by ``kind`` (blackhole: connections silenced)."""
        with self._lock:
            return self._faulted[(op, kind)]

    def counters(self) -> dict[str, int]:
        """Every counter: ``"<op>"`` requests seen, ``"<op>/<kind>"`` requests faulted."""
        with self._lock:
            found = dict(self._seen)
            found.update({f"{op}/{kind}": n for (op, kind), n in self._faulted.items()})
        return found

    def unknown_scripts(self) -> int:
        """EVALSHA requests of scripts the proxy could not name (classified ``other``)."""
        with self._lock:
            return sum(self._unknown.values())

    def classify(self, args: list[bytes]) -> str:
        """The operation of one request (its command and arguments)."""
        if not args:
            return "other"
        command = args[0].upper()
        name: str | None = None
        if command == b"EVALSHA" and len(args) > 1:
            sha = args[1].lower()
            name = self._names.get(sha)
            if name is None:
                with self._lock:
                    self._unknown[sha] += 1
        elif command == b"EVAL" and len(args) > 1:
            name = self._learn(args[1])
        elif command == b"SCRIPT" and len(args) > 2 and args[1].upper() == b"LOAD":
            self._learn(args[2])
        elif command == b"BLPOP" and len(args) > 2:
            keys = args[1:-1]
            if all(key.endswith(b":wake") for key in keys):
                return "idle"
        return name if name in OPERATIONS else "other"

    def _learn(self, source: bytes) -> str | None:
        """Name a script by its source (a script changed on disk since the proxy started)."""
        sha = hashlib.sha1(source, usedforsecurity=False).hexdigest().encode()
        name = self._names.get(sha)
        if name is None and (name := name_of(source)) is not None:
            self._names[sha] = name
        return name

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # the event loop's side ----------------------------------------------------------------
    async def _listen(self) -> asyncio.Server:
        return await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def _shutdown(self) -> None:
        self._server.close()
        for link in list(self._links):
            link.client.transport.abort()
            link.upstream.transport.abort()
        # Without their sockets the pumps end, and so do the connections' tasks (a cancelled
        # one would upset asyncio's streams).
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await self._server.wait_closed()

    def _fault_for(self, op: str, link: _Link, now: float) -> Fault | None:
        """The fault that takes this request (counted), if any."""
        with self._lock:
            self._seen[op] += 1
            for fault in self._faults:
                if fault.op != op or not fault.active(now):
                    continue
                if fault.kind in ("reset", "drop"):
                    if link.marks:
                        continue  # one reply fault per connection: it does not outlive one
                    fault.marked += 1
                    link.marks.append(fault)
                else:
                    self._hit(fault, now)
                return fault
        return None

    def _hit(self, fault: Fault, now: float) -> None:
        """Count a fault applied (with the lock held)."""
        fault.hits += 1
        fault.first_hit = fault.first_hit or now
        fault.last_hit = now
        self._faulted[(fault.op, fault.kind)] += 1

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        link: _Link | None = None
        try:
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.transport.abort()
                return
            link = _Link(writer, up_writer)
            self._links.add(link)
            requests = asyncio.create_task(self._requests(link, reader))
            forward = asyncio.create_task(self._forward(link))
            replies = asyncio.create_task(self._replies(link, up_reader))
            pumps = (requests, forward, replies)
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
                if link.silent and not requests.done():
                    await requests  # a black hole closes nothing: until the client gives up
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
        finally:
            if link is not None:
                self._links.discard(link)
                link.client.transport.abort()
                link.upstream.transport.abort()
                with self._lock:
                    for fault in link.marks:  # never applied: the connection went first
                        fault.marked -= 1
                    link.marks.clear()
            self._tasks.discard(task)

    async def _requests(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Client to proxy: frame and classify requests, decide their faults, queue them."""
        parser = hiredis.Reader()
        buf = bytearray()
        while True:
            try:
                data = await reader.read(65536)
            except OSError:
                return
            if not data:
                return
            if link.muted or link.broken:
                continue  # swallowed
            arrived = time.monotonic()
            buf += data
            pos = 0
            while (end := frame_end(buf, pos)) >= 0:
                raw = bytes(buf[pos:end])
                pos = end
                parser.feed(raw)
                args: Any = parser.gets()
                op = self.classify(args if isinstance(args, list) else [])
                fault = self._fault_for(op, link, arrived)
                if fault is not None and fault.kind == "blackhole":
                    # What came before it still goes (in order); from it on, silence.
                    link.muted = True
                    link.outbox.put_nowait((arrived, b"", op, fault))
                    buf.clear()
                    break
                release = arrived + fault.delay if fault is not None else arrived
                reply_fault = fault if fault is not None and fault.kind != "delay" else None
                link.outbox.put_nowait((release, raw, op, reply_fault))
            else:
                del buf[:pos]

    async def _forward(self, link: _Link) -> None:
        """Proxy to Redis: forward queued requests in order, each at its release time."""
        while True:
            release, raw, op, fault = await link.outbox.get()
            if link.silent or link.broken:
                continue
            wait = release - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                if link.silent or link.broken:
                    continue
            if fault is not None and fault.kind == "blackhole":
                link.silent = True
                continue
            link.pending.append((op, fault))
            link.upstream.write(raw)
            if link.outbox.empty():
                try:
                    await link.upstream.drain()
                except OSError:
                    return

    async def _replies(self, link: _Link, reader: asyncio.StreamReader) -> None:
        """Redis to client: pair each reply with its request; apply reply faults."""
        buf = bytearray()
        while True:
            try:
                data = await reader.read(65536)
            except OSError:
                return
            if not data:
                return
            if link.silent:
                continue  # swallowed, replies to earlier requests too
            buf += data
            pos = 0
            while (end := frame_end(buf, pos)) >= 0:
                _, fault = link.pending.popleft() if link.pending else ("other", None)
                if fault is not None and not self._takes(link, fault, bytes(buf[pos:end])):
                    fault = None
                if fault is not None:
                    link.client.write(bytes(buf[:pos]))  # the replies before it
                    await self._break(link, fault, bytes(buf[pos:end]))
                    return
                pos = end
            if pos:
                link.client.write(bytes(buf[:pos]))
                del buf[:pos]
                try:
                    await link.client.drain()
                except OSError:
                    return

    def _takes(self, link: _Link, fault: Fault, reply: bytes) -> bool:
        """Whether a marked request's reply is one its fault takes; if not, it is unmarked."""
        if fault.when is None:
            return True
        parser = hiredis.Reader()
        parser.feed(reply)
        if fault.when(parser.gets()):
            return True
        with self._lock:
            link.marks.remove(fault)
            fault.marked -= 1
        return False

    async def _break(self, link: _Link, fault: Fault, reply: bytes) -> None:
        """Apply a reply fault: reset mid-reply, or swallow the reply and close."""
        link.broken = True
        if fault.kind == "reset":
            link.client.write(reply[: max(1, len(reply) // 2)])
            with contextlib.suppress(OSError):
                await link.client.drain()
            await asyncio.sleep(RESET_PAUSE)
            _reset(link.client)
            _reset(link.upstream)
        else:
            with contextlib.suppress(OSError):
                await link.client.drain()  # the replies before it still go
            link.client.close()
            link.upstream.close()
        with self._lock:
            if fault in link.marks:
                link.marks.remove(fault)
                fault.marked -= 1
            self._hit(fault, time.monotonic())
