"""Measurements of repid_django alone: I/O-bound jobs at high concurrency, sync actors in the
thread pool, four worker processes on one queue, the Prometheus metrics listener on versus off,
and the ORM mirror on versus off (``runworker --burst`` of the example project, on SQLite or
on the database of ``--database-url``)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from . import phases
from .phases import Target
from .procs import PhaseError, environment
from .profile import hotspots
from .redis_server import command_delta


def _scenario(
    t: Target, name: str, n: int, *, say: Any, ideal: float | None = None, **kwargs: Any
) -> dict[str, Any]:
    t.redis.flush()
    try:
        phases.enqueue(t, n, bulk=True, timeout=60 + n / 100)
        res = phases.work(t, n, timeout=60 + n / 50, **kwargs)
    except Exception as exc:
        (t.log.parent / f"extra-{name}.trace.txt").write_text(traceback.format_exc())
        say(f"  {name}: FAILED {type(exc).__name__}: {exc}")
        return {"name": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    out = {
        "name": name,
        "ok": True,
        "jobs": n,
        "rate": res["rate"],
        "rss_mb": res["rss_mb"],
        "cmds_per_job": res["cmds_per_job"],
        "ideal": ideal,
    }
    say(f"  {name}: {res['rate']:,.0f} jobs/s" + (f" (ideal {ideal:,.0f})" if ideal else ""))
    return out


def run_extras(
    t: Target,
    jobs: int,
    say: Any,
    *,
    mirror: bool = False,
    others: bool = True,
    database_url: str | None = None,
) -> list[dict[str, Any]]:
    """The scenarios above (``others``) and, with ``mirror``, the mirror on/off comparison."""
    out = []
    if others:
        out += _engine_extras(t, jobs, say)
    if mirror:
        out += mirror_on_off(t, jobs, say, database_url=database_url)
    return out


def _engine_extras(t: Target, jobs: int, say: Any) -> list[dict[str, Any]]:
    out = []
    for conc in (100, 500):
        out.append(
            _scenario(
                t,
                f"sleep 10 ms, concurrency {conc}",
                max(jobs, conc * 20),
                say=say,
                ideal=conc / 0.01,
                scenario="sleep",
                concurrency=conc,
            )
        )
    out.append(_scenario(t, "sync actor (thread pool)", jobs, say=say, scenario="sync"))
    out.append(_scenario(t, "4 worker processes, no-op", jobs * 4, say=say, processes=4))
    out += metrics_on_off(t, jobs, say)
    return out


def profile_engine(t: Target, n: int, logs: Path, say: Any) -> str:
    """py-spy on the producer enqueuing n jobs one by one, then on one worker running them."""
    t.redis.flush()
    enq = phases.enqueue(t, n, timeout=60 + n / 50, profile=logs / "profile-enqueue.raw")
    say(f"  profiled enqueue: {enq['rate']:,.0f} jobs/s under py-spy")
    res = phases.work(t, n, timeout=60 + n / 50, profile=logs / "profile-work.raw")
    say(f"  profiled work phase: {res['rate']:,.0f} jobs/s under py-spy")
    return "\n".join(
        [
            f"Worker ({res['rate']:,.0f} jobs/s under py-spy):",
            "",
            hotspots(logs / "profile-work.raw"),
            "",
            f"Producer, one-by-one enqueue ({enq['rate']:,.0f} jobs/s under py-spy):",
            "",
            hotspots(logs / "profile-enqueue.raw"),
        ]
    )


METRICS_ROUNDS = 5
METRICS_MIN_JOBS = 10_000


def metrics_on_off(t: Target, jobs: int, say: Any) -> list[dict[str, Any]]:
    """No-op jobs with no listener (off), with a listener that ignores the events (the
    worker's event buffer alone, which every Django worker has) and with the metrics listener
    (on), interleaved over rounds (the order rotates, so that a slow spell of the machine hits
    all three): one row each, the medians, "on" with the ratios on/off (the target is at
    least 0.9) and on/events only (the listener's own cost) in its name."""
    n = max(jobs, METRICS_MIN_JOBS)
    rounds = METRICS_ROUNDS if jobs >= METRICS_MIN_JOBS else 3  # --small: 3 rounds
    modes = {"off": "0", "events only": "events", "on": "1"}
    order = list(modes)
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
    for i in range(rounds):
        for mode in order[i % 3 :] + order[: i % 3]:
            res = _scenario(t, f"no-op, metrics {mode}", n, say=say, BENCH_METRICS=modes[mode])
            if not res["ok"]:
                return [res]
            runs[mode].append(res)
    rates = {mode: statistics.median(r["rate"] for r in runs[mode]) for mode in modes}
    ratio = rates["on"] / rates["off"]
    listener = rates["on"] / rates["events only"]
    say(
        f"  metrics listener: {rates['on']:,.0f} jobs/s on, {rates['events only']:,.0f} with "
        f"the event buffer only, {rates['off']:,.0f} off: ratio on/off {ratio:.2f}, "
        f"on/events only {listener:.2f}"
    )
    rows = []
    for mode, rate in rates.items():
        name = f"no-op, metrics {mode} (median of {rounds})"
        if mode == "on":
            name += f": {ratio:.2f} of off, {listener:.2f} of events only"
        runs_of = [r["rate"] for r in runs[mode]]
        rows.append({**runs[mode][-1], "name": name, "rate": rate, "runs": runs_of})
    rows[-1].update(metrics_ratio=ratio, metrics_listener_ratio=listener)
    return rows


ROOT = Path(__file__).resolve().parent.parent
MIRROR_ROUNDS = 5
MIRROR_MIN_JOBS = 20_000
MIRROR_CONCURRENCY = 100
ENQUEUE = """
from repid_django import Job, Queue, enqueue_many
Queue().declare()
for start in range(0, {n}, 10_000):
    enqueue_many([Job("ping") for _ in range(start, min({n}, start + 10_000))])
"""
COUNT = "from repid_django.models import JobRecord; print(JobRecord.objects.count())"


def redacted(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")).geturl()


class ExampleProject:
    """``manage.py`` of the example project on the bench's Redis and the given database."""

    def __init__(self, t: Target, database_url: str, log: Path) -> None:
        self.t, self.log = t, log
        self.env = environment(
            t.ctl.url,
            DJANGO_SETTINGS_MODULE="example_project.settings",
            DATABASE_URL=database_url,
            REPID_BROKER_URL=t.redis.url,
            DJANGO_DEBUG="false",
            DJANGO_LOG_LEVEL="WARNING",
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, str(ROOT / "manage.py"), *args]

    def run(self, *args: str, timeout: float = 300.0) -> str:
        with self.log.open("a") as log:
            log.write("$ manage.py " + " ".join(args)[:200] + "\n")
            log.flush()
            done = subprocess.run(
                self.command(*args),
                cwd=ROOT,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                timeout=timeout,
                check=False,
            )
        if done.returncode:
            raise PhaseError(f"manage.py {args[0]} exited with {done.returncode} (see {self.log})")
        return done.stdout

    def rows(self) -> int:
        """The mirror's job rows (the shell's last line: it may say what it imported)."""
        return int(self.run("shell", "-c", COUNT).split()[-1])

    def left(self) -> int:
        """Jobs of the default queue not finished yet (ready, delayed or leased)."""
        from repid_django.engine.brokers.redis.keys import queue_base

        base = queue_base("repid", "default")
        pipe = self.t.redis.client.pipeline(transaction=False)
        for part in ("ready", "delayed", "leases"):
            pipe.zcard(base + part)
        return int(sum(pipe.execute()))

    def burst(self, n: int, mirror: bool, timeout: float) -> dict[str, Any]:
        """Enqueue n ``ping`` jobs, then time ``runworker --burst`` from its first job done to
        the queue drained and to its exit (the mirror's last batch written)."""
        self.t.redis.flush()
        self.run("shell", "-c", ENQUEUE.format(n=n))
        before_rows = self.rows() if mirror else 0
        before = self.t.redis.commandstats()
        args = ["runworker", "--burst", f"--concurrency={MIRROR_CONCURRENCY}"]
        args.append("--mirror" if mirror else "--no-mirror")
        started = time.monotonic()
        first = drained = None
        with self.log.open("a") as log:
            log.write("$ manage.py " + " ".join(args) + "\n")
            log.flush()
            proc = subprocess.Popen(
                self.command(*args), cwd=ROOT, env=self.env, stdout=log, stderr=log
            )
            try:
                while proc.poll() is None:
                    now, left = time.monotonic(), self.left()
                    if first is None and left < n:
                        first = now
                    if drained is None and left == 0:
                        drained = now
                    if now - started > timeout:
                        raise PhaseError(f"timeout: {n - left}/{n} jobs in {timeout:.0f} s")
                    time.sleep(0.005)
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
        exited = time.monotonic()
        if proc.returncode or first is None or self.left():
            raise PhaseError(f"runworker --burst exited with {proc.returncode}, {self.left()} left")
        commands = sum(command_delta(before, self.t.redis.commandstats()).values())
        rows = self.rows() - before_rows if mirror else None
        if rows is not None and rows != n:
            raise PhaseError(f"the mirror wrote {rows} job rows for {n} jobs")
        return {
            "rate": n / (exited - first),
            "drain_rate": n / ((drained or exited) - first),
            "startup_s": first - started,
            "cmds_per_job": commands / n,
        }


def mirror_on_off(
    t: Target, jobs: int, say: Any, *, database_url: str | None = None
) -> list[dict[str, Any]]:
    """``runworker --burst`` of the example project on n no-op ``ping`` jobs, with the ORM
    mirror on and off, interleaved over rounds (medians). processed/s counts from the first
    job done to the worker's exit, so "on" includes writing every row (checked: n new rows);
    ``drain_rate`` stops at the queue drained. The database: ``database_url`` (migrated
    here; the job rows stay), else a fresh SQLite file in the logs. Redis cmds/job include the
    harness's own polling of the queue (three ZCARD every 5 ms), the same in both modes."""
    logs = t.log.parent
    url = database_url or f"sqlite:///{logs / 'mirror.sqlite3'}"
    where = redacted(url)
    project = ExampleProject(t, url, logs / "mirror.log")
    n = max(jobs, MIRROR_MIN_JOBS)
    rounds = MIRROR_ROUNDS if jobs >= METRICS_MIN_JOBS else 1  # --small: 1 round
    runs: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    try:
        project.run("migrate", "-v0")
        for i in range(rounds):
            for mirror in (False, True) if i % 2 == 0 else (True, False):
                res = project.burst(n, mirror, timeout=120 + n / 50)
                runs[mirror].append(res)
                say(
                    f"  mirror {'on' if mirror else 'off'} ({where}): {res['rate']:,.0f} jobs/s "
                    f"(drained at {res['drain_rate']:,.0f}/s)"
                )
    except Exception as exc:
        (logs / "extra-mirror.trace.txt").write_text(traceback.format_exc())
        say(f"  mirror on/off: FAILED {type(exc).__name__}: {exc}")
        return [{"name": "ORM mirror on/off", "ok": False, "error": f"{type(exc).__name__}: {exc}"}]
    rates = {mirror: statistics.median(r["rate"] for r in runs[mirror]) for mirror in runs}
    ratio = rates[True] / rates[False]
    say(f"  mirror: {rates[True]:,.0f} jobs/s on, {rates[False]:,.0f} off: ratio {ratio:.2f}")
    vendor = urlsplit(url).scheme
    rows = []
    for mirror in (False, True):
        state = "on" if mirror else "off"
        name = f"runworker --burst, mirror {state} ({vendor}, median of {rounds})"
        if mirror:
            name += f": {ratio:.2f} of off"
        rows.append(
            {
                "name": name,
                "ok": True,
                "jobs": n,
                "rate": rates[mirror],
                "rss_mb": None,
                "cmds_per_job": statistics.median(r["cmds_per_job"] for r in runs[mirror]),
                "ideal": None,
                "database": where,
                "runs": runs[mirror],
            }
        )
    rows[-1]["mirror_ratio"] = ratio
    return rows
