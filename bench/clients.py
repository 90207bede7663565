"""Which Redis client the enqueue hot path should use: awaited one-by-one SETs, side by side.

``python -m bench.clients`` makes (once) a venv with the candidate clients
(``bench/requirements/clients.txt``: redis-py with hiredis, coredis, valkey-glide, uvloop),
starts its own redis-server and times, in rounds that interleave the clients, N awaited
``SET``s on each async client (on uvloop) and N on each sync one. The project's lean
connections (``repid_django.engine.brokers.redis.wire``) are imported from this checkout.
Prints the median of the rounds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


async def _redis_py(port: int, n: int) -> float:
    import redis.asyncio as aredis

    client = aredis.Redis(port=port)
    await client.set("k", "v")
    started = time.perf_counter()
    for _ in range(n):
        await client.set("k", "v")
    took = time.perf_counter() - started
    await client.aclose()
    return n / took


async def _coredis(port: int, n: int) -> float:
    import coredis

    client = coredis.Redis(port=port)
    async with client:
        await client.set("k", "v")
        started = time.perf_counter()
        for _ in range(n):
            await client.set("k", "v")
        return n / (time.perf_counter() - started)


async def _glide(port: int, n: int) -> float:
    from glide import GlideClient, GlideClientConfiguration, NodeAddress

    client = await GlideClient.create(GlideClientConfiguration([NodeAddress("127.0.0.1", port)]))
    await client.set("k", "v")
    started = time.perf_counter()
    for _ in range(n):
        await client.set("k", "v")
    took = time.perf_counter() - started
    await client.close()
    return n / took


async def _wire(port: int, n: int) -> float:
    from repid_django.engine.brokers.redis.url import RedisOptions
    from repid_django.engine.brokers.redis.wire import AsyncWire, Endpoint

    wire = AsyncWire(Endpoint.of(RedisOptions(f"redis://127.0.0.1:{port}/0")), 10.0)
    await wire.call("SET", "k", "v")
    started = time.perf_counter()
    for _ in range(n):
        await wire.call("SET", "k", "v")
    took = time.perf_counter() - started
    await wire.aclose()
    return n / took


def _redis_py_sync(port: int, n: int) -> float:
    import redis

    client = redis.Redis(port=port)
    client.set("k", "v")
    started = time.perf_counter()
    for _ in range(n):
        client.set("k", "v")
    return n / (time.perf_counter() - started)


def _wire_sync(port: int, n: int) -> float:
    from repid_django.engine.brokers.redis.url import RedisOptions
    from repid_django.engine.brokers.redis.wire import Endpoint, SyncWire

    wire = SyncWire(Endpoint.of(RedisOptions(f"redis://127.0.0.1:{port}/0")), 10.0)
    wire.call("SET", "k", "v")
    started = time.perf_counter()
    for _ in range(n):
        wire.call("SET", "k", "v")
    return n / (time.perf_counter() - started)


ASYNC: dict[str, Callable[[int, int], Awaitable[float]]] = {
    "redis-py asyncio (hiredis)": _redis_py,
    "coredis": _coredis,
    "valkey-glide": _glide,
    "repid_django lean wire": _wire,
}
SYNC: dict[str, Callable[[int, int], float]] = {
    "redis-py sync (hiredis)": _redis_py_sync,
    "repid_django lean wire, sync": _wire_sync,
}


def measure(port: int, n: int, rounds: int) -> dict[str, list[float]]:
    """Run inside the clients' venv: every client once per round, interleaved."""
    import uvloop

    found: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, run in ASYNC.items():
            found.setdefault(name, []).append(uvloop.run(run(port, n)))  # type: ignore[arg-type]
        for name, call in SYNC.items():
            found.setdefault(name, []).append(call(port, n))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.clients", description=__doc__)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--measure", type=int, help=argparse.SUPPRESS)  # inside the venv
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.calls, args.rounds)))
        return
    from .redis_server import RedisServer
    from .venvs import ensure

    python = ensure("clients", HERE / "results" / "clients.log")
    server = RedisServer()
    counts = ["--calls", str(args.calls), "--rounds", str(args.rounds)]
    try:
        out = subprocess.run(
            [python, "-m", "bench.clients", "--measure", str(server.port), *counts],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        )
    finally:
        server.stop()
    found: dict[str, list[float]] = json.loads(out.stdout)
    print(f"awaited one-by-one SET, {args.calls} calls, median of {args.rounds} rounds")
    for name, values in found.items():
        runs = ", ".join(f"{v:,.0f}" for v in values)
        print(f"  {name:30s} {statistics.median(values):>9,.0f}/s   (rounds: {runs})")


if __name__ == "__main__":
    sys.exit(main())
