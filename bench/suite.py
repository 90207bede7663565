"""One library through all its phases, several runs, medians."""

from __future__ import annotations

import statistics
import traceback
from typing import Any

from . import phases
from .libraries import Library
from .phases import Target


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def one_run(t: Target, lib: Library, jobs: int, lat_k: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t.redis.flush()
    enq = phases.enqueue(t, jobs, timeout=60 + jobs / 100)
    out.update(
        enqueue_rate=enq["rate"],
        enqueue_cmds=enq["cmds_per_job"],
        enqueue_scripts=enq["scripts_per_job"],
        enqueue_commands=enq["commands"],
    )
    wrk = phases.work(t, jobs, timeout=60 + jobs / 50)
    out.update(
        work_rate=wrk["rate"],
        work_cmds=wrk["cmds_per_job"],
        work_scripts=wrk["scripts_per_job"],
        rss_mb=wrk["rss_mb"],
        work_commands=wrk["commands"],
        work_wall=wrk["wall_with_startup"],
    )
    if lib.bulk:
        t.redis.flush()
        blk = phases.enqueue(t, jobs, bulk=True, timeout=60 + jobs / 100)
        out.update(
            bulk_rate=blk["rate"],
            bulk_cmds=blk["cmds_per_job"],
            bulk_scripts=blk["scripts_per_job"],
            bulk_commands=blk["commands"],
        )
    t.redis.flush()
    lat = phases.latency(t, lat_k, timeout=60 + lat_k * 1.0)
    out.update(p50_ms=lat["p50_ms"], p99_ms=lat["p99_ms"])
    t.redis.flush()
    return out


KEYS = [
    "enqueue_rate",
    "bulk_rate",
    "work_rate",
    "p50_ms",
    "p99_ms",
    "rss_mb",
    "enqueue_cmds",
    "bulk_cmds",
    "work_cmds",
    "enqueue_scripts",
    "bulk_scripts",
    "work_scripts",
]


def run_library(
    t: Target, lib: Library, jobs: int, lat_k: int, runs: int, say: Any
) -> dict[str, Any]:
    results: list[dict[str, Any]] = []
    jobs, lat_k = max(100, int(jobs * lib.scale)), max(20, int(lat_k * lib.scale))
    errors: list[str] = []
    for i in range(runs):
        try:
            res = one_run(t, lib, jobs, lat_k)
        except Exception as exc:  # a failing library is reported, the others go on
            errors.append(f"{type(exc).__name__}: {exc}")
            say(f"  run {i + 1}: FAILED {errors[-1]}")
            (t.log.parent / f"{lib.name}.trace.txt").write_text(traceback.format_exc())
            t.redis.flush()
            break
        results.append(res)
        say(
            f"  run {i + 1}: enqueue {res['enqueue_rate']:,.0f}/s, work "
            f"{res['work_rate']:,.0f}/s, p50 {res['p50_ms']:.2f} ms, "
            f"rss {res['rss_mb']:.0f} MB"
        )
    summary: dict[str, Any] = {k: _median(results, k) for k in KEYS}
    summary.update(runs=results, errors=errors, ok=bool(results) and not errors, jobs=jobs)
    return summary
