"""The measured phases: enqueue (one by one / bulk / from sync code), work, latency.

Each enqueue and work phase also reads the measured server's CPU (``INFO cpu``) before and
after (see ``redis_server.CpuWindow``): nothing but the library talks to it in between.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .procs import Adapter, PhaseError, RssSampler, command, environment
from .profile import Recorder
from .redis_server import RedisServer, command_delta


@dataclass
class Target:
    """Where and how to run one library's adapter."""

    lib: str
    python: str
    redis: RedisServer
    ctl: RedisServer
    log: Path

    def adapter(
        self, mode: str, n: int, *, concurrency: int = 0, scenario: str = "noop", **env: str
    ) -> Adapter:
        cmd = command(
            self.python,
            self.lib,
            mode,
            n,
            self.redis.url,
            concurrency=concurrency,
            scenario=scenario,
        )
        return Adapter(cmd, environment(self.ctl.url, **env), self.log)


def enqueue(
    t: Target,
    n: int,
    *,
    bulk: bool = False,
    sync: bool = False,
    timeout: float = 120.0,
    profile: Path | None = None,
) -> dict[str, Any]:
    """Enqueue n jobs (one by one, with the bulk API, or one by one from plain sync code);
    the queue keeps them."""
    deadline = time.monotonic() + timeout
    mode = "enqueue-bulk" if bulk else "enqueue-sync" if sync else "enqueue"
    proc = t.adapter(mode, n)
    try:
        proc.expect("READY", deadline)
        recorder = Recorder(proc.proc.pid, profile) if profile else None
        before = t.redis.commandstats()
        window = t.redis.cpu_window()
        proc.go()
        res = proc.result(deadline)
        cpu = window.stop()
        commands = command_delta(before, t.redis.commandstats())
        if recorder:
            recorder.stop()
    finally:
        proc.stop()
    elapsed = float(res["elapsed"])
    return {
        "rate": n / elapsed,
        "elapsed": elapsed,
        "p50_ms": res.get("p50_ms"),
        "p99_ms": res.get("p99_ms"),
        "loop": res.get("loop"),
        **per_job(commands, n),
        **cpu_per_job(cpu, n),
        "commands": commands,
    }


def cpu_per_job(cpu: dict[str, float], n: int) -> dict[str, float]:
    """Redis server CPU per job (microseconds), net of the idle rate, and the raw window."""
    return {"cpu_us_per_job": cpu["cpu_us"] / n, **cpu}


STALL = 45.0  # seconds without a job done (start-up included) before a work phase fails

SCRIPTS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def per_job(commands: dict[str, int], n: int) -> dict[str, float]:
    """Commands per job (Lua scripts' inner commands included) and script calls per job."""
    scripts = sum(commands.get(name, 0) for name in SCRIPTS)
    return {"cmds_per_job": sum(commands.values()) / n, "scripts_per_job": scripts / n}


def _progress(ctl: RedisServer) -> tuple[int, float, float]:
    pipe = ctl.client.pipeline(transaction=False)
    pipe.get("bench:done")
    pipe.hvals("bench:first")
    pipe.hvals("bench:last")
    done, firsts, lasts = pipe.execute()
    first = min((float(v) for v in firsts), default=0.0)
    last = max((float(v) for v in lasts), default=0.0)
    return int(done or 0), first, last


def work(
    t: Target,
    n: int,
    *,
    processes: int = 1,
    concurrency: int = 0,
    scenario: str = "noop",
    timeout: float = 300.0,
    profile: Path | None = None,
    **env: str,
) -> dict[str, Any]:
    """Start the worker(s) on a queue holding n jobs; measure until all n ran."""
    t.ctl.flush()
    before = t.redis.commandstats()
    window = t.redis.cpu_window()
    started = time.monotonic()
    workers = [
        t.adapter("work", n, concurrency=concurrency, scenario=scenario, **env)
        for _ in range(processes)
    ]
    sampler = RssSampler([w.proc.pid for w in workers])
    sampler.start()
    recorder = Recorder(workers[0].proc.pid, profile) if profile else None
    progressed, seen = started, -1
    try:
        while True:
            done, first, last = _progress(t.ctl)
            now = time.monotonic()
            if done >= n:
                break
            if done != seen:
                progressed, seen = now, done
            if now - progressed > STALL:
                raise PhaseError(f"stalled: {done}/{n} jobs, none for {STALL:.0f} s")
            if now - started > timeout:
                raise PhaseError(f"timeout: {done}/{n} jobs processed in {timeout:.0f} s")
            dead = [w for w in workers if w.proc.poll() is not None]
            if dead:
                raise PhaseError(
                    f"worker exited with {dead[0].proc.returncode} after "
                    f"{done}/{n} jobs: {dead[0].tail()}"
                )
            time.sleep(0.01)
        cpu = window.stop()
        commands = command_delta(before, t.redis.commandstats())
        rss = sampler.finish()
    finally:
        sampler.finish()
        if recorder:
            recorder.stop()
        for w in workers:
            w.stop()
    elapsed = max(last - first, 1e-9)
    return {
        "rate": (done - 1) / elapsed,
        "elapsed": elapsed,
        "processed": done,
        "wall_with_startup": time.monotonic() - started,
        "rss_mb": rss / 2**20,
        **per_job(commands, n),
        **cpu_per_job(cpu, n),
        "commands": commands,
    }


def latency(t: Target, k: int, *, timeout: float = 180.0) -> dict[str, Any]:
    """Round trips on an idle worker: enqueue one job, wait for the actor's signal."""
    t.ctl.flush()
    worker = t.adapter("work", 0, BENCH_SIGNAL="push")
    producer = t.adapter("latency", k)
    try:
        res = producer.result(time.monotonic() + timeout)
    finally:
        producer.stop()
        worker.stop()
    samples = sorted(float(s) for s in res["samples"])
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "p50_ms": statistics.median(samples) * 1000,
        "p99_ms": q[98] * 1000,
        "samples": len(samples),
    }
