"""Fault injection with real worker processes and a real redis-server.

Workers run ``tests/e2e/redis_worker.py`` in subprocesses; the tests SIGKILL, SIGTERM and starve
them, kill Redis itself, and feed it poison, then check the delivery guarantees of DESIGN.md.
Every run of a job leaves records in a run log (``runlog.py``), which the kill test audits.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import redis

from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.job import Job
from repid_django.engine.priorities import PrioritiesT

from ..redis_server import RedisServer
from .runlog import audit

pytestmark = [pytest.mark.slow, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("redis_worker.py")
LEASE_TTL, REAPER = 2.0, 0.5


class Workers:
    """Spawns worker processes and kills what is left at the end."""

    def __init__(self, url: str, prefix: str, tmp: Path) -> None:
        self.url, self.prefix, self.tmp = url, prefix, tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []
        self.names: dict[int, str] = {}
        """Worker id (as in the run log) by process id."""

    def spawn(self, *options: str) -> subprocess.Popen[bytes]:
        log = open(self.tmp / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        self.logs.append(log)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        args = ["--lease-ttl", str(LEASE_TTL), "--reaper", str(REAPER), *options]
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), self.url, self.prefix, *args],
            stdout=subprocess.PIPE,
            stderr=log,
            env=env,
            cwd=ROOT,
        )
        assert proc.stdout is not None
        ready, _, name = proc.stdout.readline().decode().strip().partition(" ")
        assert (ready, bool(name)) == ("ready", True), "the worker did not start"
        self.procs.append(proc)
        self.names[proc.pid] = name
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        for log in self.logs:
            log.close()


@pytest.fixture
def workers(redis_url: str, key_prefix: str, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(redis_url, key_prefix, tmp_path)
    yield pool
    pool.kill_all()


def wait_for(condition: Callable[[], bool], within: float, what: str) -> float:
    """Wait until ``condition()``; returns the seconds it took, fails after ``within``."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            pytest.fail(f"not within {within}s: {what}")
        time.sleep(0.01)
    return time.monotonic() - started


def enqueue(url: str, prefix: str, jobs: list[Job]) -> None:
    asyncio.run(_enqueue(url, prefix, jobs))


async def _enqueue(url: str, prefix: str, jobs: list[Job]) -> None:
    broker = RedisMessageBroker(url, prefix=prefix)
    await broker.connect()
    try:
        for start in range(0, len(jobs), 500):
            batch = [job.to_message() for job in jobs[start : start + 500]]
            assert all(await broker.enqueue(batch))
    finally:
        await broker.disconnect()


class State:
    """Reads the test's keys straight from Redis."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client, self.base = client, f"{prefix}:{{e2e}}:"

    def runs(self) -> dict[str, int]:
        found = self.client.hgetall(self.base + "runs")
        return {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in found.items()}

    def results(self) -> int:
        return sum(1 for _ in self.client.scan_iter(match=self.base + "result:*", count=1000))

    def sizes(self) -> tuple[int, int, int, int]:
        c, b = self.client, self.base
        return (
            c.zcard(b + "ready"),
            c.zcard(b + "delayed"),
            c.zcard(b + "leases"),
            c.hlen(b + "msgs"),
        )

    def dead(self) -> int:
        return int(self.client.zcard(self.base + "dead"))

    def successes(self, job_ids: list[str]) -> list[bool]:
        """For each of ``job_ids``: whether a stored result says the job succeeded."""
        found = self.client.mget([f"{self.base}result:{job_id}" for job_id in job_ids])
        return [raw is not None and json.loads(raw)["success"] is True for raw in found]

    def succeeded(self, job_ids: list[str]) -> int:
        """How many of ``job_ids`` have a stored result that says the job succeeded."""
        return sum(self.successes(job_ids))

    def stored(self, job_ids: list[str]) -> dict[str, dict[str, object] | None]:
        """The stored result of each of ``job_ids`` (None where there is none)."""
        found = self.client.mget([f"{self.base}result:{job_id}" for job_id in job_ids])
        return {
            job_id: None if raw is None else json.loads(raw)
            for job_id, raw in zip(job_ids, found, strict=True)
        }

    def log(self) -> list[dict[str, object]]:
        """The run log, in order (see runlog.py)."""
        return [json.loads(raw) for raw in self.client.lrange(self.base + "log", 0, -1)]

    def mark_kill(self, worker: str) -> None:
        """Append the kill mark of ``worker`` (after it has been reaped) to the run log."""
        self.client.rpush(self.base + "log", json.dumps({"e": "kill", "w": worker}))


def records(count: int, seconds: float = 0.0, retries: int = 0) -> list[Job]:
    """Jobs ``n = 0 .. count - 1``, with ids ``job-<n>``."""
    if seconds:
        return [
            Job(
                "slow",
                queue="e2e",
                args={"n": i, "seconds": seconds},
                retries=retries,
                id_=f"job-{i}",
            )
            for i in range(count)
        ]
    return [
        Job("record", queue="e2e", args={"n": i}, retries=retries, id_=f"job-{i}")
        for i in range(count)
    ]


def test_sigkilled_workers_lose_nothing_and_rerun_only_what_was_in_flight(
    workers: Workers, redis_client: redis.Redis, key_prefix: str
) -> None:
    total = 3000
    ids = [f"job-{i}" for i in range(total)]
    jobs = [  # every tenth fails its first attempt: attempts are counted across the kills
        Job(
            "slow" if i % 10 else "flaky",
            "e2e",
            args={"n": i, "seconds": 0.05},
            retries=1,
            id_=ids[i],
        )
        for i in range(total)
    ]
    enqueue(workers.url, key_prefix, jobs)
    state = State(redis_client, key_prefix)
    rng = random.Random()
    options = ("--concurrency", "20")
    live = [workers.spawn(*options), workers.spawn(*options)]
    kills = 0
    while kills < 5 and len(state.runs()) < total * 0.8:
        time.sleep(rng.uniform(0.2, 0.8))  # a random moment, a random one of the two workers
        victim = live.pop(rng.randrange(len(live)))
        victim.kill()
        victim.wait(10)
        state.mark_kill(workers.names[victim.pid])
        kills += 1
        live.append(workers.spawn(*options))
    # Settled: nothing ready, delayed, leased or stored. Whether each job succeeded, and how
    # often it ran, is for the audit to say.
    wait_for(lambda: state.sizes() == (0, 0, 0, 0), 90, "every job settled")
    report = audit(state.log(), state.stored(ids), flaky=ids[::10])
    print(
        f"\nkill test: {report.kills} SIGKILLs of 2 workers; {report.runs} runs of {total} jobs: "
        f"{report.reran} cut short by a kill and run again, {report.landed} finished just before "
        f"their kill, {report.retried} retried (failed first attempts)"
    )
    assert not report.problems, "\n".join(report.problems[:20])
    assert report.kills == kills >= 3
    assert report.reran > 0  # not vacuous: the kills caught jobs in flight
    # Every flaky job ended at attempt 1 (the audit checks each); a retry whose finish record
    # died with its killed worker is not counted here, so this only shows retries happened.
    assert report.retried >= total // 10 - 20 * report.kills
    assert state.dead() == 0
    assert all(proc.poll() is None for proc in live)


def test_recovery_after_sigkill_is_bounded(
    workers: Workers, redis_client: redis.Redis, key_prefix: str
) -> None:
    state = State(redis_client, key_prefix)
    victim = workers.spawn()
    enqueue(workers.url, key_prefix, [Job("slow", queue="e2e", args={"n": 1, "seconds": 30})])
    wait_for(lambda: state.runs().get("1") == 1, 10, "the job started")
    survivor = workers.spawn()
    victim.kill()
    victim.wait(10)
    recovery = wait_for(lambda: state.runs().get("1") == 2, LEASE_TTL + REAPER + 5, "the rerun")
    print(f"\nrecovery after SIGKILL: {recovery:.2f}s (lease_ttl {LEASE_TTL}s, reaper {REAPER}s)")
    assert recovery <= LEASE_TTL + REAPER + 1.0
    assert survivor.poll() is None


def test_blocked_event_loop_does_not_lose_its_lease(
    workers: Workers, redis_client: redis.Redis, key_prefix: str
) -> None:
    state = State(redis_client, key_prefix)
    options = ("--lease-ttl", "1.0", "--reaper", "0.2", "--concurrency", "4")
    workers.spawn(*options)
    workers.spawn(*options)
    blocker = Job("block", queue="e2e", args={"n": 0, "seconds": 3.5})
    enqueue(workers.url, key_prefix, [blocker, *records(40)[1:]])
    wait_for(lambda: state.results() == 40 and state.sizes() == (0, 0, 0, 0), 30, "all jobs")
    assert state.runs()["0"] == 1  # the heartbeat thread kept the lease: no second copy
    assert len(state.runs()) == 40


def test_self_killing_actor_ends_as_worker_lost(
    workers: Workers, redis_client: redis.Redis, key_prefix: str
) -> None:
    state = State(redis_client, key_prefix)
    innocent = records(40, seconds=0.3)
    enqueue(workers.url, key_prefix, [Job("suicide", queue="e2e"), *innocent])
    # Concurrency and prefetch: the poison is claimed in one batch with innocent jobs, and they
    # lose their leases with it each time it kills the process.
    options = ("--max-lost", "2", "--concurrency", "4", "--prefetch", "8")
    deadline = time.monotonic() + 60
    proc = workers.spawn(*options)
    while state.dead() == 0 or proc.poll() is not None:
        assert time.monotonic() < deadline, "the poison job was never dead-lettered"
        if proc.poll() is not None:
            proc = workers.spawn(*options)
        time.sleep(0.05)
    wait_for(lambda: state.results() == 40 and state.sizes() == (0, 0, 0, 0), 60, "the others")
    runs = state.runs()
    assert runs["suicide"] == 3  # max_lost + 1 deliveries, then dead
    info = redis_client.hgetall(state.base + "dinfo")
    assert len(info) == 1  # the poison only: no innocent job went down with it
    assert b'"worker_lost"' in next(iter(info.values()))
    assert state.succeeded([f"job-{i}" for i in range(40)]) == 40
    # Not vacuous: innocent jobs were running when the poison killed the process (run again).
    assert sum(runs[str(i)] for i in range(40)) > 40
    assert proc.poll() is None


def test_poison_payloads_are_dead_lettered_and_the_worker_keeps_going(
    workers: Workers, redis_client: redis.Redis, key_prefix: str, tmp_path: Path
) -> None:
    state = State(redis_client, key_prefix)
    canary = tmp_path / "canary"

    class Canary:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (os.system, (f"touch {canary}",))

    proc = workers.spawn()
    poison = [b"\xff\xfe\x00", b'{"v":1,"id":"x","act', b'{"v":1,"id":5}', b"[]"]
    poison.append(pickle.dumps(Canary()))
    for i, body in enumerate(poison):
        redis_client.hset(state.base + "msgs", f"p{i}", body)
        redis_client.zadd(state.base + "ready", {f"p{i}": 100 * 2**40 + i})
        redis_client.lpush(state.base + "wake", "1")
    enqueue(workers.url, key_prefix, records(50))
    wait_for(lambda: state.results() == 50 and state.dead() == len(poison), 20, "all handled")
    assert proc.poll() is None
    assert not canary.exists()
    assert all(b"decode_error" in v for v in redis_client.hvals(state.base + "dinfo"))


def test_sigterm_finishes_running_and_returns_prefetched_at_once(
    workers: Workers, redis_client: redis.Redis, key_prefix: str
) -> None:
    state = State(redis_client, key_prefix)
    proc = workers.spawn("--concurrency", "2", "--prefetch", "10", "--graceful", "10")
    slow = [
        Job("slow", queue="e2e", priority=PrioritiesT.HIGH, args={"n": 1000 + i, "seconds": 1.5})
        for i in range(2)
    ]
    enqueue(workers.url, key_prefix, [*slow, *records(10)])
    wait_for(lambda: state.runs().get("1000") == 1 and state.runs().get("1001") == 1, 10, "start")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert state.results() == 2  # the running ones finished
    ready, delayed, running, _ = state.sizes()
    assert (ready, delayed, running) == (10, 0, 0)  # prefetched ones are back, no lease wait
    assert set(state.runs()) == {"1000", "1001"}
    for body in redis_client.hvals(state.base + "msgs"):
        assert b'"attempt":0' in body


def test_redis_restart_under_load_loses_no_acknowledged_job(
    key_prefix: str, tmp_path: Path
) -> None:
    server = RedisServer(appendonly=True, extra=["--appendfsync", "always"]).start()
    pool = Workers(server.url, key_prefix, tmp_path)
    client = server.client()
    try:
        state = State(client, key_prefix)
        total = 2000
        # Retries: an actor's own Redis calls fail while Redis is down, like any app's would.
        jobs = records(total, seconds=0.01, retries=5)
        enqueue(server.url, key_prefix, jobs)
        proc = pool.spawn("--concurrency", "20")
        wait_for(lambda: len(state.runs()) > 300, 30, "work under way")
        before = len(state.runs())
        server.kill()  # a crash: only what the AOF holds survives
        time.sleep(1.0)  # Redis stays down for a moment
        server.start()
        assert len(state.runs()) >= before  # acknowledged writes survived the crash (AOF)
        assert before < total  # the crash came while jobs were waiting and running
        wait_for(
            lambda: state.results() + state.dead() >= total and state.sizes() == (0, 0, 0, 0),
            90,
            "every job finished or dead-lettered",
        )
        assert proc.poll() is None  # the worker reconnected by itself
        # The guarantee: every acknowledged job ran and succeeded, with one result; a job that
        # did not is named with its stored result, its dead letter and the worker's log.
        runs = state.runs()
        ids = [f"job-{i}" for i in range(total)]
        failed = [
            (
                job_id,
                job_id.removeprefix("job-") in runs,
                client.get(f"{state.base}result:{job_id}"),
                client.hget(state.base + "dinfo", job_id),
            )
            for job_id, ok in zip(ids, state.successes(ids), strict=True)
            if not ok or job_id.removeprefix("job-") not in runs
        ]
        log = (tmp_path / "worker-0.log").read_text(errors="replace")[-3000:]
        assert not failed, f"{len(failed)} jobs did not succeed: {failed[:5]}\nworker log: {log}"
        assert state.results() == total
        assert state.dead() == 0
    finally:
        pool.kill_all()
        client.close()
        server.cleanup()
