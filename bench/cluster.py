"""``python -m bench.cluster``: how repid_django scales on a Redis Cluster (issue 11, item 6).

For each cluster size (``--primaries``, default 1 and 3; ``tests.topologies.ClusterServers``
on loopback, persistence off) and each worker count (``--workers``, default 2 and 4): flush,
enqueue ``--jobs`` no-op jobs one by one over ``--queues`` queues whose hash tags fall on
different primaries (``--producers`` concurrent tasks in this process), then run that many
worker processes (``bench/cluster_worker.py``), each consuming every queue, until all jobs ran.

Measured per row: enqueue jobs/s (jobs / wall time of the enqueue), work jobs/s (jobs / time
from the first job started to the last done, as the main bench counts it), and Redis CPU per
job: ``used_cpu_user + used_cpu_sys`` (``INFO cpu``) of every primary before and after each
phase, less the node's idle rate (a cluster node's bus gossip included) times the phase's wall
time, summed over the primaries and divided by the jobs; per primary, divided by the jobs of
the queues it owns. Why CPU: on a small machine the workers, the producer and the servers
share the cores, so wall-clock jobs/s saturates; CPU per job on each primary says what one
primary could serve alone (its ceiling, 1e6 / us per job) and the cluster (their sum).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import redis

from repid_django import Connection, Job, Repid
from repid_django.engine.brokers.redis.broker import RedisMessageBroker
from tests.topologies import ClusterServers, slot_of

from .phases import STALL, _progress
from .procs import LAUNCH, Adapter, PhaseError, environment
from .redis_server import CpuWindow, RedisServer, _uvloop

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
WORKER = HERE / "cluster_worker.py"
SLOTS = 16384
PREFIX = "bench"
NOTE = (
    "On a 2-core machine the wall-clock columns saturate: the producer or the workers and "
    "every redis-server share the same 2 cores, so more primaries cannot show up as more "
    "jobs/s there. The CPU-per-job and ceiling columns are the scale figures: the ceiling of "
    "a primary is 1e6 / (its Redis CPU us per job of its own queues, enqueue + work), what it "
    "could serve if it were the only bottleneck; the cluster ceiling is their sum."
)


class Primary(RedisServer):
    """A cluster primary that ``ClusterServers`` started: ``RedisServer``'s readings (INFO
    cpu, idle calibration, CPU windows, commandstats, flush) on a node it does not own, so
    ``stop()`` only closes the client."""

    def __init__(self, port: int) -> None:  # no super(): it would start a server
        self.port = port
        self.url = f"redis://127.0.0.1:{port}"
        self.client = redis.Redis(port=port, decode_responses=True)
        self.version = str(self.client.info("server")["redis_version"])
        self.idle_us_per_s = 0.0
        self.info_us = 0.0

    def stop(self) -> None:
        self.client.close()


def pick_queues(count: int, spread: int) -> list[str]:
    """``count`` queue names, the k-th one's hash tag ``{q<i>}`` in the k-th of ``spread``
    equal slot ranges (round robin): how ``ClusterServers(primaries=spread)`` splits the
    slots, so the queues land evenly on its primaries (checked against the cluster later)."""
    names: list[str] = []
    candidate = 0
    for k in range(count):
        while slot_of(f"{{q{candidate}}}") * spread // SLOTS != k % spread:
            candidate += 1
        names.append(f"q{candidate}")
        candidate += 1
    return names


def windows(primaries: list[Primary]) -> list[CpuWindow]:
    return [p.cpu_window() for p in primaries]


def stop_windows(open_windows: list[CpuWindow]) -> list[float]:
    """Net Redis CPU (us) of each primary since its window opened."""
    return [w.stop()["cpu_us"] for w in open_windows]


async def produce(
    url: str, queues: list[str], n: int, producers: int, primaries: list[Primary]
) -> tuple[float, list[float]]:
    """Enqueue n no-op jobs one by one (job i to queue i mod Q) from ``producers`` concurrent
    tasks; the wall time of the enqueue and each primary's CPU (us) over it."""
    broker = RedisMessageBroker(url, prefix=PREFIX)
    async with Repid(Connection(broker)).magic(auto_disconnect=True):
        for queue in queues:  # connect and register the queues before the clock starts
            await broker.declare_queue(queue)

        async def producer(first: int) -> None:
            for i in range(first, n, producers):
                queue = queues[i % len(queues)]
                await Job(f"noop_{queue}", queue, args={"x": i}).enqueue()

        opened = windows(primaries)
        started = time.perf_counter()
        await asyncio.gather(*(producer(k) for k in range(producers)))
        elapsed = time.perf_counter() - started
        return elapsed, stop_windows(opened)


def enqueue(
    url: str, queues: list[str], n: int, producers: int, primaries: list[Primary]
) -> tuple[float, list[float]]:
    """``produce`` on uvloop when installed (the bench adapters' rule)."""
    uvloop = _uvloop()
    factory = uvloop.new_event_loop if uvloop is not None else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(produce(url, queues, n, producers, primaries))


def work(
    url: str, queues: list[str], n: int, count: int, ctl: RedisServer, primaries: list[Primary]
) -> tuple[float, int, list[float]]:
    """Start ``count`` worker processes on the queues holding n jobs, wait until all ran:
    jobs/s (first job started to last done), jobs counted, each primary's CPU (us) from
    before the workers start until then (start-up and idle polling included)."""
    ctl.flush()
    log = RESULTS / "logs" / "cluster.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-P", str(LAUNCH), str(WORKER), "--url", url]
    cmd += ["--queues", ",".join(queues), "--prefix", PREFIX]
    opened = windows(primaries)
    progressed = time.monotonic()
    workers = [Adapter(cmd, environment(ctl.url), log) for _ in range(count)]
    seen = -1
    try:
        while True:
            done, first, last = _progress(ctl)
            if done >= n:
                break
            now = time.monotonic()
            if done != seen:
                progressed, seen = now, done
            if now - progressed > STALL:
                raise PhaseError(f"stalled: {done}/{n} jobs, none for {STALL:.0f} s")
            dead = [w for w in workers if w.proc.poll() is not None]
            if dead:
                raise PhaseError(f"worker exited after {done}/{n} jobs: {dead[0].tail()}")
            time.sleep(0.01)
        cpu = stop_windows(opened)
    finally:
        for w in workers:
            w.stop()
    return (done - 1) / max(last - first, 1e-9), done, cpu


def measure(cluster: ClusterServers, args: argparse.Namespace, ctl: RedisServer) -> list[Row]:
    """Every worker count on one started cluster."""
    primaries = [Primary(port) for _h, port in cluster.primaries()]
    try:
        for p in primaries:
            p.calibrate(windows=3, infos=100)
        queues = pick_queues(args.queues, max(args.primaries))
        owner = {q: cluster.node_for_key(f"{{{q}}}")[1] for q in queues}
        share = Counter(owner[queues[i % len(queues)]] for i in range(args.jobs))
        jobs = [share[p.port] for p in primaries]
        idle = ", ".join(f"{p.port}: {p.idle_us_per_s:.0f} us/s" for p in primaries)
        print(
            f"  queues by primary: {sorted(owner.items(), key=lambda kv: kv[1])}", file=sys.stderr
        )
        print(f"  idle CPU subtracted: {idle}", file=sys.stderr)
        runs: dict[int, list[Row]] = {count: [] for count in args.workers}
        for _ in range(args.runs):  # interleaved: a burst of load elsewhere hits every row
            for count in args.workers:
                for p in primaries:
                    p.flush()
                took, enq_cpu = enqueue(cluster.url, queues, args.jobs, args.producers, primaries)
                rate, done, work_cpu = work(cluster.url, queues, args.jobs, count, ctl, primaries)
                row = Row(len(primaries), count, args.jobs, args.jobs / took, rate, done,
                          enq_cpu, work_cpu, jobs)  # fmt: skip
                runs[count].append(row)
                print(f"  {row.line()}", file=sys.stderr)
        return [median_row(runs[count]) for count in args.workers]
    finally:
        for p in primaries:
            p.stop()


class Row:
    """One measured (primaries, workers) pair and the figures derived from it."""

    def __init__(
        self,
        primaries: int,
        workers: int,
        n: int,
        enqueue_rate: float,
        work_rate: float,
        done: int,
        enqueue_cpu: list[float],
        work_cpu: list[float],
        jobs: list[int],
    ) -> None:
        self.primaries, self.workers, self.n, self.done = primaries, workers, n, done
        self.enqueue_rate, self.work_rate = enqueue_rate, work_rate
        self.enqueue_cpu, self.work_cpu, self.jobs = enqueue_cpu, work_cpu, jobs
        cycle = [e + w for e, w in zip(enqueue_cpu, work_cpu, strict=True)]
        # us per job of the primary's own queues; a primary owning no queue has no figure.
        self.per_primary = [c / j for c, j in zip(cycle, jobs, strict=True) if j]
        self.ceilings = [1e6 / us for us in self.per_primary if us > 0]

    def cells(self) -> list[str]:
        per = self.per_primary
        return [
            str(self.primaries),
            str(self.workers),
            f"{self.enqueue_rate:,.0f}",
            f"{self.work_rate:,.0f}",
            f"{sum(self.enqueue_cpu) / self.n:.1f}",
            f"{sum(self.work_cpu) / self.n:.1f}",
            f"{(sum(self.enqueue_cpu) + sum(self.work_cpu)) / self.n:.1f}",
            f"{statistics.mean(per):.1f} / {max(per):.1f}",
            " / ".join(f"{c / 1000:.1f}k" for c in self.ceilings),
            f"{sum(self.ceilings):,.0f}",
        ]

    def line(self) -> str:
        jobs = "/".join(str(j) for j in self.jobs)
        return " ".join(self.cells()) + f" (jobs per primary {jobs}, counted {self.done})"


def median_row(rows: list[Row]) -> Row:
    """The median of a row's runs, figure by figure (per primary for the CPU)."""
    first = rows[0]

    def per_primary(cpu: list[list[float]]) -> list[float]:
        return [statistics.median(column) for column in zip(*cpu, strict=True)]

    return Row(
        first.primaries,
        first.workers,
        first.n,
        statistics.median(r.enqueue_rate for r in rows),
        statistics.median(r.work_rate for r in rows),
        min(r.done for r in rows),
        per_primary([r.enqueue_cpu for r in rows]),
        per_primary([r.work_cpu for r in rows]),
        first.jobs,
    )


HEADER = [
    "primaries",
    "workers",
    "enqueue jobs/s",
    "work jobs/s",
    "CPU us/job enqueue",
    "CPU us/job work",
    "CPU us/job total",
    "CPU us/job per primary (mean / max)",
    "ceiling per primary (jobs/s)",
    "cluster ceiling (jobs/s)",
]


def table(rows: list[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(row.cells()) + " |" for row in rows]
    return "\n".join(lines)


def report(rows: list[Row], args: argparse.Namespace, version: str, load: tuple[float, ...]) -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = "python -m bench.cluster " + " ".join(sys.argv[1:])
    machine = f"{platform.platform()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    return "\n".join([
        "# repid_django on a Redis Cluster",
        "",
        f"{stamp}; `{command}`; redis-server {version}; {machine}; load average "
        f"{load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.",
        f"Each figure is the median of {args.runs} runs (rows interleaved).",
        f"{args.jobs:,} no-op jobs over {args.queues} queues (hash tags spread over the "
        f"primaries), enqueued one by one by {args.producers} concurrent tasks of one process; "
        "each worker process (`Worker`, concurrency 100) consumes every queue.",
        "CPU us/job: `used_cpu_user + used_cpu_sys` deltas of every primary (`INFO cpu`), less "
        "its idle rate; per primary: divided by the jobs of the queues it owns.",
        "",
        table(rows),
        "",
        NOTE,
        "",
    ])  # fmt: skip


def parse(argv: list[str] | None) -> argparse.Namespace:
    def ints(text: str) -> list[int]:
        return [int(part) for part in text.split(",")]

    p = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__)
    p.add_argument("--jobs", type=int, default=20_000, help="jobs per row (default 20,000)")
    p.add_argument("--primaries", type=ints, default=[1, 3], help="cluster sizes (1,3)")
    p.add_argument("--workers", type=ints, default=[2, 4], help="worker processes (2,4)")
    p.add_argument("--queues", type=int, default=6, help="queues the jobs go to (6)")
    p.add_argument("--producers", type=int, default=6, help="concurrent enqueue tasks (6)")
    p.add_argument("--runs", type=int, default=3, help="runs per row, median (default 3)")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    load = os.getloadavg()
    ctl = RedisServer()  # the control server: job counts, never the measured cluster
    rows: list[Row] = []
    try:
        for size in args.primaries:
            print(f"cluster of {size} primaries", file=sys.stderr)
            with ClusterServers(primaries=size) as cluster:
                rows += measure(cluster, args, ctl)
    finally:
        ctl.stop()
    text = report(rows, args, ctl.version, load)
    print(text)
    if not args.no_write:
        path = RESULTS / f"cluster-{dt.datetime.now(dt.UTC):%Y-%m-%d}.md"
        path.write_text(text)
        print(f"written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
