"""Measurements of repid_django alone: I/O-bound jobs at high concurrency, sync actors in the
thread pool, four worker processes on one queue, the Prometheus metrics listener on versus off,
and (later) the ORM mirror on versus off."""

from __future__ import annotations

import statistics
import traceback
from pathlib import Path
from typing import Any

from . import phases
from .phases import Target
from .profile import hotspots


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


def run_extras(t: Target, jobs: int, say: Any, *, mirror: bool = False) -> list[dict[str, Any]]:
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
    if mirror:
        # Hook: the adapter turns on the ORM mirror when BENCH_MIRROR=1 (needs the Django app).
        out.append(_scenario(t, "ORM mirror on, no-op", jobs, say=say, BENCH_MIRROR="1"))
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
