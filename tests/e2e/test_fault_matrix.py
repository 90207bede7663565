"""The fault matrix: every network fault against every Redis operation, with real processes.

Rows (faults, from ``tests/faultproxy.py``): a 5 s blackhole; a blackhole longer than the lease;
a reset in the middle of a reply; 200 ms of latency; a reply dropped after Redis applied its
request. Columns (the operation faulted): enqueue (the producer's), claim, finish, lease
extension (the lease keeper thread), idle wait (BLPOP on wake-up keys). Each cell is its own test.

A cell: two worker processes (``matrix_worker.py``) and a producer thread reach Redis through
the proxy with short timeouts; the producer streams small jobs (a few fail on their own), a
few long ones (``nap``) run across the fault, the fault is injected, the producer goes on for
a moment after it and stops. Then, once everything is settled, the cell checks:

* the fault happened (the proxy counted it);
* every acknowledged job (its ``enqueue`` returned; one that raised need not run) ran and
  succeeded, at least once; exactly one outcome was applied per job (fencing);
* no job is dead-lettered but those that fail on their own (as ``failed``);
* nothing is leased to nobody: no lease token is ever held in Redis that no worker got, and
  no lease expires (no job is claimed with a lost lease), except where the fault itself keeps
  a live worker from extending for longer than the lease (lease extension x blackhole past
  the lease);
* the queue's structures end empty (ready, delayed, leases, tokens, msgs, lost, pri);
* duplicate runs happen only around the fault;
* the workers resumed by themselves: from the end of the fault to the next job completed
  (``resume``) and to all done (``done``) within the bounds below.

Workers log to Redis directly (not through the proxy): runs, claims (with ``lost`` and the
lease token) and finishes (applied or not); see ``matrix_worker.py``. Times are
``time.monotonic()``, system-wide on Linux. Every cell prints one summary line (``-s``) and
leaves those logs in ``logs.json`` (with the worker logs) in its ``tmp_path`` for a post-mortem.
A cell marked ``xfail`` (a known engine bug) is expected to fail only the way its mark says;
any other failure of it, or a fault that did not happen, fails the test.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
import redis

from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from repid_django.engine.brokers.redis.keys import queue_base
from repid_django.engine.job import Job

from ..faultproxy import Fault, FaultProxy, Kind
from ..redis_server import RedisServer
from .matrix_worker import QUEUE, log_key

pytestmark = [pytest.mark.slow, pytest.mark.redis]
ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).with_name("matrix_worker.py")

SOCKET_TIMEOUT = 1.0
"""Read timeout of every worker connection: a silent connection is dropped after it."""
LEASE_TTL = 8.0
"""Longer than the 5 s blackhole plus the time to notice it and retry (socket timeout and
back-off): a short blackhole must cost no lease; the long one outlasts it."""
REAPER = 0.5
MAX_BACKOFF = 1.0
ENQUEUE_TIMEOUT = 2.0
RUNNER_BACKOFF = 5.0
"""The worker's own pause after a claim that raised grows up to this (``runner.py``)."""

RESUME_BOUND = SOCKET_TIMEOUT + MAX_BACKOFF + RUNNER_BACKOFF
"""From the end of a fault to the next job completed: a call in flight on a silent connection
times out (socket timeout), its retry waits out the back-off, a claim that gave up waits out
the worker's pause."""
TAIL = 1.0
"""Seconds the producer goes on once it enqueued again after the fault."""
DONE_BOUND = ENQUEUE_TIMEOUT + TAIL + RESUME_BOUND
"""From the end of a fault to all done: the producer's call in flight gives up within its
deadline, the producer goes on for the tail, the workers finish what it enqueued."""
DUPLICATE_WINDOW = LEASE_TTL + REAPER + RESUME_BOUND
"""A second run of a job may start between the fault's start and this long after its end."""

WINDOW = 1.5
"""Seconds a latency fault lasts; the most a count fault (reset, drop) waits for its requests."""
COUNT = 3
"""Requests a reset or drop fault takes."""
BATCH, EVERY, FAIL_EVERY = 4, 0.05, 25
"""The producer: BATCH jobs per enqueue every EVERY seconds; one job in FAIL_EVERY fails."""
NAPS = 4
"""Long jobs running across the fault (their leases need extending meanwhile)."""

OPS = ("enqueue", "claim", "finish", "extend", "idle")
TAKES: dict[str, Callable[[Any], bool]] = {
    "claim": lambda reply: isinstance(reply, list) and len(reply) > 3,
    "idle": lambda reply: reply is not None,
}
"""A reset or drop takes only replies that carry something: a claim that leased jobs, a
wait that popped a wake-up (an empty claim or a timed-out wait would test nothing)."""
COLUMN = {"extend": "lease-extension", "idle": "idle-wait"}
EMPTY = ("ready", "delayed", "leases", "tokens", "msgs", "lost", "pri")


@dataclass(frozen=True)
class Row:
    name: str
    kind: Kind
    duration: float
    count: int | None = None
    delay: float = 0.0


ROWS = (
    Row("blackhole-5s", "blackhole", 5.0),
    Row("blackhole-past-lease", "blackhole", LEASE_TTL + 2.0),
    Row("reset-mid-reply", "reset", WINDOW, count=COUNT),
    Row("latency-200ms", "delay", WINDOW, delay=0.2),
    Row("reply-dropped", "drop", WINDOW, count=COUNT),
)
XFAIL: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {}
"""Cells that fail because of a known engine bug (none today): (op, row) -> (reason, what
each of its problems says). Any other failure of such a cell is not expected."""


class KnownBug(AssertionError):
    """A cell failed exactly as its ``XFAIL`` entry says (the only failure marked expected)."""


class HarnessError(Exception):
    """The cell could not test what it is for (the fault did not happen, a process died)."""


def cells() -> Iterator[Any]:
    for row in ROWS:
        for op in OPS:
            marks = []
            if (op, row.name) in XFAIL:
                reason = XFAIL[(op, row.name)][0]
                marks.append(pytest.mark.xfail(strict=True, raises=KnownBug, reason=reason))
            yield pytest.param(op, row, id=f"{COLUMN.get(op, op)}-{row.name}", marks=marks)


def wait_for(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {within:g}s: {what}")
        time.sleep(0.02)


def pause_until(moment: float) -> None:
    """Wait for a moment the scenario chose (a fault's end, the producer's tail)."""
    while (left := moment - time.monotonic()) > 0:
        time.sleep(min(left, 0.05))


# the processes and threads of a cell ----------------------------------------------------------
class Workers:
    """Two worker processes through the proxy; SIGKILLed at the end (state is checked before)."""

    def __init__(self, proxy_url: str, direct_url: str, prefix: str, tmp: Path) -> None:
        self.args = [proxy_url, direct_url, prefix]
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[IO[bytes]] = []

    def start(self, count: int = 2) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        options = ["--lease-ttl", str(LEASE_TTL), "--reaper", str(REAPER)]
        options += ["--socket-timeout", str(SOCKET_TIMEOUT), "--max-backoff", str(MAX_BACKOFF)]
        for index in range(count):
            log = open(self.tmp / f"worker-{index}.log", "wb")  # noqa: SIM115
            self.logs.append(log)
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, str(WORKER), *self.args, f"w{index}", *options],
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                    cwd=ROOT,
                )
            )
        for proc in self.procs:
            assert proc.stdout is not None
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            assert ready, "a worker did not start within 30s"
            assert proc.stdout.readline().strip() == b"ready", "a worker did not start"

    def alive(self) -> bool:
        return all(proc.poll() is None for proc in self.procs)

    def log_text(self) -> str:
        for log in self.logs:
            log.flush()
        return "".join(
            (self.tmp / f"worker-{i}.log").read_text(errors="replace")
            for i in range(len(self.logs))
        )

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        for log in self.logs:
            log.close()


class Producer(threading.Thread):
    """Streams jobs through the proxy with the sync API: ``BATCH`` every ``EVERY`` seconds.

    An enqueue that returned acknowledges its jobs (whatever its flags say: ``False`` means
    "already there", which a reply lost after the write makes a first send look like); one that
    raised does not (its jobs may or may not have been written)."""

    def __init__(self, url: str, prefix: str) -> None:
        super().__init__(name="matrix-producer", daemon=True)
        self.broker = RedisMessageBroker(
            url,
            prefix=prefix,
            socket_timeout=SOCKET_TIMEOUT,
            enqueue_timeout=ENQUEUE_TIMEOUT,
            max_backoff=MAX_BACKOFF,
        )
        self.attempted: set[str] = set()
        self.acked: dict[str, float] = {}
        """Job id -> when its enqueue returned."""
        self.refused: list[tuple[float, str]] = []
        """(when, error) of every enqueue that raised."""
        self.not_new = 0
        """Jobs of this run reported "already there" (a first send was written, its reply lost)."""
        self.crash: BaseException | None = None
        self.extra: queue.SimpleQueue[list[Job]] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._sequence = 0
        self._lock = threading.Lock()

    def acked_since(self, moment: float) -> int:
        """Jobs whose enqueue returned after ``moment``."""
        with self._lock:
            return sum(1 for t in self.acked.values() if t > moment)

    def stop(self) -> None:
        self._halt.set()
        self.join(30)
        assert not self.is_alive(), "the producer did not stop"

    def submit(self, jobs: list[Job]) -> None:
        """Enqueue these (from the producer's thread, before its next batch)."""
        self.extra.put(jobs)

    def _batch(self) -> list[Job]:
        jobs = []
        for _ in range(BATCH):
            self._sequence += 1
            n = self._sequence
            if n % FAIL_EVERY == 0:
                jobs.append(Job("fail", queue=QUEUE, args={"n": f"f{n}"}, id_=f"f{n}"))
            else:
                jobs.append(Job("work", queue=QUEUE, args={"n": f"w{n}"}, id_=f"w{n}"))
        return jobs

    def _send(self, jobs: list[Job]) -> None:
        messages = [job.to_message() for job in jobs]
        ids = [message.id for message in messages]
        self.attempted.update(ids)
        try:
            flags = self.broker.enqueue_sync(messages)
        except ConnectionError as exc:
            self.refused.append((time.monotonic(), str(exc)))
            return
        now = time.monotonic()
        self.not_new += flags.count(False)
        with self._lock:
            self.acked.update(dict.fromkeys(ids, now))

    def run(self) -> None:
        next_at = time.monotonic()
        try:
            while not self._halt.is_set():
                while not self.extra.empty():
                    self._send(self.extra.get())
                self._send(self._batch())
                next_at += EVERY
                self._halt.wait(max(next_at - time.monotonic(), 0.0))
        except BaseException as exc:
            self.crash = exc
        finally:
            asyncio.run(self.broker.disconnect())  # its sync clients (this thread's socket)


class TokenWatch(threading.Thread):
    """Samples the queue's lease tokens (direct connection), to find leases nobody holds."""

    def __init__(self, client: redis.Redis, base: str) -> None:
        super().__init__(name="matrix-tokens", daemon=True)
        self.client, self.key = client, base + "tokens"
        self.seen: dict[tuple[str, str], tuple[float, float]] = {}
        """(id, token) -> (first seen, last seen)."""
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(0.1):
            now = time.monotonic()
            for raw_id, held in self.client.hgetall(self.key).items():
                pair = (text(raw_id), text(held).split(" ", 1)[0])
                first, _ = self.seen.get(pair, (now, now))
                self.seen[pair] = (first, now)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


@dataclass
class Logs:
    """What the workers wrote (read incrementally)."""

    client: redis.Redis
    prefix: str
    runs: list[list[Any]] = field(default_factory=list)
    claims: list[list[Any]] = field(default_factory=list)
    finishes: list[list[Any]] = field(default_factory=list)

    def refresh(self) -> None:
        for name in ("runs", "claims", "finishes"):
            entries: list[list[Any]] = getattr(self, name)
            new = self.client.lrange(log_key(self.prefix, name), len(entries), -1)
            entries.extend(json.loads(raw) for raw in new)

    def unfinished(self) -> set[tuple[str, str]]:
        """Deliveries handed out whose outcome no ``finish`` returned yet."""
        claimed = {(c[2], c[4]) for c in self.claims}
        return claimed - {(f[2], f[5]) for f in self.finishes if f[2] is not None}

    def completions(self) -> list[tuple[float, str]]:
        """(when, id) of every applied ack or dead-lettering."""
        return sorted(
            (f[0], f[2]) for f in self.finishes if f[4] is True and f[3] in {"ack", "dead"}
        )


# one cell -------------------------------------------------------------------------------------
@dataclass
class Cell:
    op: str
    row: Row
    proxy: FaultProxy
    workers: Workers
    client: redis.Redis
    prefix: str
    base: str = ""
    started: float = field(default_factory=time.monotonic)
    enqueued_again: int = 0
    """Jobs an enqueue re-sent after a lost reply wrote again after they had run."""

    def __post_init__(self) -> None:
        self.base = queue_base(self.prefix, QUEUE)
        self.logs = Logs(self.client, self.prefix)

    def sizes(self) -> dict[str, int]:
        pipe = self.client.pipeline(transaction=False)
        for part in EMPTY:
            (pipe.hlen if part in {"tokens", "msgs", "lost", "pri"} else pipe.zcard)(
                self.base + part
            )
        return dict(zip(EMPTY, pipe.execute(), strict=True))

    @property
    def legit_lease_loss(self) -> bool:
        """The fault keeps live workers from extending their leases for longer than a lease."""
        return (
            self.op == "extend" and self.row.kind == "blackhole" and self.row.duration > LEASE_TTL
        )


@pytest.fixture
def proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    proxy = FaultProxy(redis_server.port)
    yield proxy
    proxy.close()


@pytest.fixture
def workers(
    proxy: FaultProxy, redis_server: RedisServer, key_prefix: str, tmp_path: Path
) -> Iterator[Workers]:
    pool = Workers(proxy.url, redis_server.url, key_prefix, tmp_path)
    yield pool
    pool.kill()


@pytest.mark.parametrize(("op", "row"), list(cells()))
def test_fault_cell(
    op: str,
    row: Row,
    proxy: FaultProxy,
    workers: Workers,
    redis_client: redis.Redis,
    key_prefix: str,
) -> None:
    cell = Cell(op, row, proxy, workers, redis_client, key_prefix)
    workers.start()
    producer = Producer(proxy.url, key_prefix)
    watch = TokenWatch(redis_client, cell.base)
    watch.start()
    producer.start()
    try:
        fault, fault_end = run_scenario(cell, producer)
    finally:
        producer.stop()
        watch.stop()
    harness, problems, summary = check(cell, producer, watch, fault, fault_end)
    dump = {"fault": [fault.start, fault_end], "runs": cell.logs.runs, "claims": cell.logs.claims}
    dump["finishes"] = cell.logs.finishes
    (workers.tmp / "logs.json").write_text(json.dumps(dump))
    verdict = "ERROR" if harness else "FAIL" if problems else "PASS"
    print(f"\nCELL {COLUMN.get(op, op)}/{row.name}: {verdict} {summary}")
    for problem in harness + problems:
        print(f"  - {problem}")
    if harness:
        raise HarnessError("\n".join(harness))
    expected = XFAIL.get((op, row.name), ("", ()))[1]
    if problems and all(any(sign in p for sign in expected) for p in problems):
        raise KnownBug("\n".join(problems))
    assert not problems, "\n".join(problems)


def run_scenario(cell: Cell, producer: Producer) -> tuple[Fault, float]:
    """Warm up, start the long jobs, inject the fault, let it end, run the tail, settle."""
    logs, row = cell.logs, cell.row

    def warm() -> bool:
        logs.refresh()
        finishers = {f[1] for f in logs.finishes if f[4] is True}
        return len(finishers) == 2 and len(producer.acked) >= 8

    wait_for(warm, 15, "both workers completed jobs and the producer enqueued some")
    naps = [
        Job("nap", queue=QUEUE, args={"n": f"nap{k}", "seconds": row.duration + 1.0}, id_=f"nap{k}")
        for k in range(NAPS)
    ]
    producer.submit(naps)

    def napping() -> bool:
        logs.refresh()
        return {f"nap{k}" for k in range(NAPS)} <= {r[2] for r in logs.runs}

    wait_for(napping, 5, "the long jobs started")
    takes = TAKES.get(cell.op) if row.kind in {"reset", "drop"} else None
    fault = cell.proxy.inject(
        row.kind, cell.op, duration=row.duration, count=row.count, delay=row.delay, when=takes
    )
    pause_until(fault.start + row.duration)  # a count fault is over once its requests are taken
    fault_end = fault.end if fault.end is not None else fault.start + row.duration
    wait_for(
        lambda: producer.acked_since(fault_end) > 0,
        ENQUEUE_TIMEOUT + RESUME_BOUND,
        "the producer enqueued again after the fault",
    )
    pause_until(time.monotonic() + TAIL)
    producer.stop()

    def settled() -> bool:
        logs.refresh()
        return not any(cell.sizes().values()) and not logs.unfinished()

    limit = DONE_BOUND + LEASE_TTL + REAPER + 10.0
    deadline = time.monotonic() + limit
    while not settled() and time.monotonic() < deadline:
        time.sleep(0.05)
    return fault, fault_end


def check(
    cell: Cell, producer: Producer, watch: TokenWatch, fault: Fault, fault_end: float
) -> tuple[list[str], list[str], str]:
    """Every check of the cell: (what kept it from testing anything, the problems found, each
    with its evidence, a summary line)."""
    logs, op, row, client = cell.logs, cell.op, cell.row, cell.client
    logs.refresh()
    harness: list[str] = []
    counted = cell.proxy.faulted(op, row.kind)
    if fault.hits == 0 or counted != fault.hits:
        unknown = cell.proxy.unknown_scripts()
        harness.append(
            f"the fault did not happen: {fault} hit {fault.hits} (counted {counted}; "
            f"{cell.proxy.seen(op)} {op} requests seen, {unknown} of unknown scripts)"
        )
    elif row.count is not None and fault.hits != row.count:
        harness.append(f"{fault} took {fault.hits} requests within {row.duration:g}s")
    if producer.crash is not None:
        harness.append(f"the producer crashed: {producer.crash!r}")
    if not cell.workers.alive():
        harness.append("a worker process died")
    problems: list[str] = []

    # Settled: empty structures, every delivery finished.
    sizes = {k: v for k, v in cell.sizes().items() if v}
    if sizes:
        stuck = stuck_leases(cell)
        problems.append(f"the queue's structures did not end empty: {sizes}; leases: {stuck}")
    unfinished = logs.unfinished()
    if unfinished:
        problems.append(
            f"{len(unfinished)} deliveries handed to workers never got an outcome back "
            f"(finish raised or never called): {sorted(unfinished)[:5]}"
        )
    errors = [f[4] for f in logs.finishes if f[2] is None]
    if errors:
        problems.append(f"finish raised {len(errors)} times: {errors[:3]}")

    # Every acknowledged job ran and succeeded (at least once); one outcome applied per job.
    runs: defaultdict[str, list[list[Any]]] = defaultdict(list)
    for run in logs.runs:
        runs[run[2]].append(run)
    acked = sorted(producer.acked)
    never = [i for i in acked if i not in runs]
    if never:
        problems.append(f"{len(never)} acknowledged jobs never ran: {never[:10]}")
    strays = sorted(set(runs) - producer.attempted)
    if strays:
        problems.append(f"jobs that nobody enqueued ran: {strays[:10]}")
    raw = client.mget([f"{cell.base}result:{i}" for i in acked]) if acked else []
    results = {i: json.loads(r) if r else None for i, r in zip(acked, raw, strict=True)}
    wrong = [
        i
        for i, result in results.items()
        if result is None or result["success"] is not (not i.startswith("f"))
    ]
    if wrong:
        problems.append(
            f"{len(wrong)} acknowledged jobs have no result or the wrong one: "
            f"{[(i, (results[i] or {}).get('success')) for i in wrong[:10]]}"
        )
    completions = logs.completions()
    applied = Counter(job_id for _, job_id in completions)
    twice = sorted(i for i, n in applied.items() if n > 1)
    if twice:
        done_at = {i: min(t for t, j in completions if j == i) for i in twice}
        again = [i for i in twice if any(c[2] == i and c[0] > done_at[i] for c in logs.claims)]
        if again and op == "enqueue":
            # At-least-once, as documented: an enqueue re-sent after its reply was lost writes
            # again a job that already ran in between (nothing tells it from one never sent).
            cell.enqueued_again = len(again)
        elif again:
            problems.append(
                f"{len(again)} acknowledged jobs were written again after they had completed "
                f"(a retried enqueue whose first send was applied made them anew) and ran to "
                f"completion {max(applied[i] for i in again)} times: {again[:8]}"
            )
        fenced = [i for i in twice if i not in again]
        if fenced:
            problems.append(f"{len(fenced)} jobs had two outcomes applied (fencing): {fenced[:8]}")

    # Dead letters: only the jobs that fail on their own, as "failed".
    info = {text(k): json.loads(v) for k, v in client.hgetall(cell.base + "dinfo").items()}
    bad_dead = {i: v["reason"] for i, v in info.items() if not i.startswith("f")}
    bad_dead |= {i: v["reason"] for i, v in info.items() if v["reason"] != "failed"}
    if bad_dead:
        problems.append(
            f"{len(bad_dead)} jobs dead-lettered that did not fail on their own: "
            f"{dict(list(bad_dead.items())[:10])}"
        )
    missing = [i for i in acked if i.startswith("f") and i not in info]
    if missing:
        problems.append(f"{len(missing)} failing jobs are not dead-lettered: {missing[:10]}")

    # Nothing leased to nobody; no lease expired unless the fault itself made live workers
    # unable to extend for longer than a lease.
    handed = {(c[2], c[4]) for c in logs.claims}
    nobody = {
        pair: last - first for pair, (first, last) in watch.seen.items() if pair not in handed
    }
    if nobody:
        longest = max(nobody.values())
        by_token: defaultdict[str, list[str]] = defaultdict(list)
        for job_id, token in sorted(nobody):
            by_token[token].append(job_id)
        tokens = []
        for token, ids in list(by_token.items())[:3]:
            got = [(c[1], c[2]) for c in logs.claims if c[4] == token]
            same = ""
            if got:
                same = f"; the same token was handed to {got[0][0]} for {[g[1] for g in got][:4]}"
            tokens.append(f"token {token}: {ids[:6]}{same}")
        problems.append(
            f"leased to nobody: {len(nobody)} leases in Redis were never handed to a worker "
            f"(held for up to {longest:.1f}s): {'; '.join(tokens)}"
        )
    claimed_at: defaultdict[str, list[float]] = defaultdict(list)
    expired: list[str] = []
    for entry in logs.claims:
        when, _, job_id, lost, _ = entry
        if lost > 0:
            held_before = [t for t in claimed_at[job_id] if t < fault_end]
            if not (cell.legit_lease_loss and held_before):
                before = "a worker" if claimed_at[job_id] else "nobody (never handed out)"
                expired.append(f"{job_id} (lost={lost}, earlier lease held by {before})")
        claimed_at[job_id].append(when)
    if expired:
        problems.append(
            f"{len(expired)} deliveries came after an expired lease (a lost lease counted "
            f"against a job that did nothing wrong): {expired[:6]}"
        )
    losses = sum(1 for c in logs.claims if c[3] > 0)
    if cell.legit_lease_loss and not losses:
        problems.append("no lease expired: the long jobs kept theirs through the blackhole?")

    # Duplicate runs only around the fault.
    duplicates = [r for r in logs.runs if r[3] >= 2]
    outside = [r for r in duplicates if not fault.start <= r[0] <= fault_end + DUPLICATE_WINDOW]
    if outside:
        problems.append(
            f"{len(outside)} duplicate runs away from the fault: "
            f"{[(r[2], round(r[0] - fault_end, 2)) for r in outside[:10]]} (s after its end)"
        )

    # Recovery: from the end of the fault to the next job completed and to all done.
    after = [t for t, _ in completions if t > fault_end]
    resume = after[0] - fault_end if after else None
    done = completions[-1][0] - fault_end if completions else None
    if resume is None or resume > RESUME_BOUND:
        problems.append(f"no job completed within {RESUME_BOUND:g}s of the fault's end ({resume})")
    if done is None or done > DONE_BOUND:
        problems.append(f"not all done within {DONE_BOUND:g}s of the fault's end ({done})")
    enqueued_after = [t for t in producer.acked.values() if t > fault_end]
    enqueue_resume = min(enqueued_after) - fault_end if enqueued_after else None

    worker_log = cell.workers.log_text()
    said = {
        "unreachable": worker_log.count(" unreachable "),
        "cannot-extend": worker_log.count("cannot extend job leases"),
        "lease-lost": worker_log.count("lease lost for job"),
        "keeper-lost": worker_log.count("lost the lease of"),
        "record-failed": worker_log.count("job outcomes failed"),
        "not-recorded": worker_log.count("could not record"),
    }

    def sec(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}s"

    summary = (
        f"jobs={len(producer.attempted)} acked={len(acked)} refused-enqueues="
        f"{len(producer.refused)} reported-not-new={producer.not_new} runs={len(logs.runs)} "
        f"duplicates={len(duplicates)} enqueued-again={cell.enqueued_again} "
        f"lease-expiries={losses} leased-to-nobody={len(nobody)} "
        f"hits={fault.hits} resume={sec(resume)} done={sec(done)} "
        f"enqueue-resume={sec(enqueue_resume)} wall={time.monotonic() - cell.started:.1f}s "
        f"worker-log={said}"
    )
    return harness, problems, summary


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stuck_leases(cell: Cell) -> list[str]:
    """The first leases left in Redis, each with its token and whether a worker got it."""
    base = cell.base
    ids = [text(i) for i in cell.client.zrange(base + "leases", 0, 9)]
    held = cell.client.hmget(base + "tokens", ids) if ids else []
    handed = {(c[2], c[4]) for c in cell.logs.claims}
    found = []
    for job_id, entry in zip(ids, held, strict=True):
        token = text(entry).split(" ", 1)[0] if entry else None
        holder = "a worker" if (job_id, token) in handed else "nobody"
        found.append(f"{job_id} (token {token}, handed to {holder})")
    return found
