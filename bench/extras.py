"""Measurements of repid_django alone: I/O-bound jobs at high concurrency, sync actors in the
thread pool, four worker processes on one queue, and (later) the ORM mirror on versus off."""

from __future__ import annotations

import traceback
from typing import Any

from . import phases
from .phases import Target


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
    if mirror:
        # Hook: the adapter turns on the ORM mirror when BENCH_MIRROR=1 (needs the Django app).
        out.append(_scenario(t, "ORM mirror on, no-op", jobs, say=say, BENCH_MIRROR="1"))
    return out
