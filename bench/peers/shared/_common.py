"""Plumbing shared by every adapter: command line, handshake with the harness, job counter.

Standard library only, so that it runs unchanged in every peer's virtual environment.

Protocol (one adapter process per phase, spoken over stdin/stdout):

- ``enqueue N`` / ``enqueue-bulk N``: set up, print ``READY``, wait for a line on stdin, enqueue
  N no-op jobs, print ``RESULT {"elapsed": seconds, "loop": ...}`` and exit.
- ``enqueue-sync N`` (libraries with a plain synchronous enqueue): one warm-up call, ``READY``,
  then N calls from a plain loop with no event loop in the process's main thread; the result
  adds the p50/p99 of the calls.
- ``work N``: run the library's worker until the harness stops it (SIGTERM to the process group).
- ``latency K``: enqueue one job, wait for the actor's signal, K times (plus a warm-up);
  print ``RESULT {"samples": [seconds, ...]}``.

Completion is counted outside the library's Redis, on a separate *control* redis-server
(``BENCH_CTL``), so that INFO commandstats of the library's Redis shows the library alone:

- throughput: each actor call adds one to a process-local counter (a lock and an int, no I/O);
  a daemon thread publishes it every 20 ms to the control server (``INCRBY bench:done``, with the
  wall-clock time of the process's first and last job).  Same cost for every library.
- latency (``BENCH_SIGNAL=push``): the actor pushes to ``bench:lat`` on the control server at
  once and the producer waits with BLPOP.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import os
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any
from urllib.parse import urlparse

WARMUP = 5

# The event loop the adapter runs on: "none (sync)" until ``run()`` starts one.
LOOP = "none (sync)"


def run(main: Callable[[], Coroutine[Any, Any, object]]) -> None:
    """Run an async adapter on uvloop when it is installed, else on ``asyncio.run``.

    Same rule for every asyncio library (``BENCH_LOOP=asyncio`` forces the standard loop).
    """
    global LOOP  # noqa: PLW0603 - one loop per adapter process
    uvloop: Any = None
    if os.environ.get("BENCH_LOOP", "") != "asyncio":
        with contextlib.suppress(ImportError):
            uvloop = importlib.import_module("uvloop")
    if uvloop is not None:
        LOOP = f"uvloop {uvloop.__version__}"
        print(f"event loop: {LOOP}", file=sys.stderr, flush=True)
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
    else:
        LOOP = "asyncio"
        print("event loop: asyncio", file=sys.stderr, flush=True)
        asyncio.run(main())


class Ctl:
    """A tiny RESP2 client (one socket) for the control redis-server."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.sock = socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")

    def send(self, *args: Any) -> None:
        out = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(out))

    def read(self) -> Any:
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind in (b"+", b"-"):
            if kind == b"-":
                raise RuntimeError(rest.decode())
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            if size < 0:
                return None
            data = self.file.read(size + 2)[:-2]
            return data.decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.read() for _ in range(size)]
        raise RuntimeError(f"bad reply {line!r}")

    def call(self, *args: Any) -> Any:
        self.send(*args)
        return self.read()


class Counter:
    """Counts actor calls; see the module docstring."""

    def __init__(self) -> None:
        self.url = os.environ.get("BENCH_CTL", "")
        self.push = os.environ.get("BENCH_SIGNAL") == "push"
        self.flush_each = False  # for libraries that fork one process per job (rq)
        self._pid = 0
        self._lock = threading.Lock()
        self._count = 0
        self._flushed = 0
        self._first = 0.0
        self._last = 0.0
        self._ctl: Ctl | None = None

    def _start(self) -> None:
        self._pid = os.getpid()
        self._count = self._flushed = 0
        self._first = 0.0
        self._ctl = Ctl(self.url)
        if not (self.push or self.flush_each):
            threading.Thread(target=self._loop, name="bench-counter", daemon=True).start()

    def hit(self) -> None:
        if self._pid != os.getpid():
            self._start()
        if self.push:
            assert self._ctl is not None
            self._ctl.call("RPUSH", "bench:lat", "1")
            return
        now = time.time()
        with self._lock:
            self._count += 1
            if not self._first:
                self._first = now
            self._last = now
        if self.flush_each:
            self._flush()

    def _flush(self) -> None:
        with self._lock:
            count, first, last = self._count, self._first, self._last
        delta = count - self._flushed
        if not delta or self._ctl is None:
            return
        self._flushed = count
        pid = self._pid
        self._ctl.send("HSETNX", "bench:first", pid, repr(first))
        self._ctl.send("HSET", "bench:last", pid, repr(last))
        self._ctl.send("INCRBY", "bench:done", delta)
        for _ in range(3):
            self._ctl.read()

    def _loop(self) -> None:
        while True:
            time.sleep(0.02)
            try:
                self._flush()
            except OSError:
                return


COUNTER = Counter()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "mode", choices=["enqueue", "enqueue-sync", "enqueue-bulk", "work", "latency"]
    )
    parser.add_argument("n", type=int)
    parser.add_argument("--redis", required=True)
    parser.add_argument("--concurrency", type=int, default=0, help="0: the adapter's default")
    parser.add_argument("--scenario", default="noop", choices=["noop", "sleep", "sync"])
    return parser.parse_args()


def ready() -> None:
    print("READY", flush=True)
    sys.stdin.readline()


def result(**data: Any) -> None:
    data.setdefault("loop", LOOP)
    print("RESULT " + json.dumps(data), flush=True)


def timed_loop(n: int, enqueue_one: Callable[[int], object]) -> None:
    ready()
    start = time.perf_counter()
    for i in range(n):
        enqueue_one(i)
    result(elapsed=time.perf_counter() - start)


def sync_loop(n: int, enqueue_one: Callable[[int], object]) -> None:
    """``enqueue-sync``: n plain calls from sync code, each timed (one warm-up call first)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise SystemExit("enqueue-sync must run from plain sync code, not inside an event loop")
    enqueue_one(-1)  # connects / imports lazily, like the set-up of the other modes
    ready()
    clock = time.perf_counter
    samples = [0.0] * n
    start = clock()
    for i in range(n):
        t0 = clock()
        enqueue_one(i)
        samples[i] = clock() - t0
    elapsed = clock() - start
    q = statistics.quantiles(samples, n=100, method="inclusive") if n > 1 else samples * 99
    result(
        elapsed=elapsed,
        p50_ms=statistics.median(samples) * 1000,
        p99_ms=q[98] * 1000,
        caller="plain sync loop, no event loop",
    )


async def atimed_loop(n: int, enqueue_one: Callable[[int], Any]) -> None:
    ready()
    start = time.perf_counter()
    for i in range(n):
        await enqueue_one(i)
    result(elapsed=time.perf_counter() - start)


def timed_bulk(n: int, enqueue_many: Callable[[int], object]) -> None:
    ready()
    start = time.perf_counter()
    enqueue_many(n)
    result(elapsed=time.perf_counter() - start)


async def atimed_bulk(n: int, enqueue_many: Callable[[int], Any]) -> None:
    ready()
    start = time.perf_counter()
    await enqueue_many(n)
    result(elapsed=time.perf_counter() - start)


def _waiter() -> Ctl:
    return Ctl(os.environ["BENCH_CTL"])


def latency_loop(k: int, enqueue_one: Callable[[int], object]) -> None:
    ctl, samples = _waiter(), []
    for i in range(k + WARMUP):
        start = time.perf_counter()
        enqueue_one(i)
        if ctl.call("BLPOP", "bench:lat", 60) is None:
            raise SystemExit(f"latency: job {i} not processed within 60 s")
        if i >= WARMUP:
            samples.append(time.perf_counter() - start)
    result(samples=samples)


async def alatency_loop(k: int, enqueue_one: Callable[[int], Any]) -> None:
    ctl, samples = _waiter(), []
    for i in range(k + WARMUP):
        start = time.perf_counter()
        await enqueue_one(i)
        if ctl.call("BLPOP", "bench:lat", 60) is None:
            raise SystemExit(f"latency: job {i} not processed within 60 s")
        if i >= WARMUP:
            samples.append(time.perf_counter() - start)
    result(samples=samples)
