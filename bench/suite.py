"""One library through all its phases; runs and medians."""

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


def sync_run(t: Target, calls: int) -> dict[str, Any]:
    """The library's plain synchronous enqueue, called from a sync loop (no event loop)."""
    t.redis.flush()
    syn = phases.enqueue(t, calls, sync=True, timeout=60 + calls / 50)
    return {
        "sync_rate": syn["rate"],
        "sync_p50_ms": syn["p50_ms"],
        "sync_p99_ms": syn["p99_ms"],
        "sync_cpu": syn["cpu_us_per_job"],
        "sync_cmds": syn["cmds_per_job"],
        "sync_calls": calls,
        "sync_commands": syn["commands"],
    }


def one_run(t: Target, lib: Library, jobs: int, lat_k: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    t.redis.flush()
    empty = t.redis.data_bytes()
    enq = phases.enqueue(t, jobs, timeout=60 + jobs / 100)
    waiting = t.redis.data_bytes()
    out.update(
        loop=enq["loop"],
        enqueue_rate=enq["rate"],
        enqueue_cmds=enq["cmds_per_job"],
        enqueue_scripts=enq["scripts_per_job"],
        enqueue_cpu=enq["cpu_us_per_job"],
        enqueue_cpu_raw_us=enq["cpu_us_raw"],
        enqueue_commands=enq["commands"],
    )
    wrk = phases.work(t, jobs, timeout=120 + jobs / 10)
    finished = t.redis.data_bytes()
    out.update(
        # Redis memory per job: held while the jobs wait (enqueued, no worker yet), and left
        # behind once all of them ran (results, records, until they expire), workers stopped.
        mem_waiting=(waiting - empty) / jobs,
        mem_finished=(finished - empty) / jobs,
        work_rate=wrk["rate"],
        work_cmds=wrk["cmds_per_job"],
        work_scripts=wrk["scripts_per_job"],
        work_cpu=wrk["cpu_us_per_job"],
        work_cpu_raw_us=wrk["cpu_us_raw"],
        work_cpu_wall_s=wrk["cpu_wall_s"],
        cycle_cpu=enq["cpu_us_per_job"] + wrk["cpu_us_per_job"],
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
            bulk_cpu=blk["cpu_us_per_job"],
            bulk_commands=blk["commands"],
        )
    t.redis.flush()
    lat = phases.latency(t, lat_k, timeout=60 + lat_k * 1.0)
    out.update(p50_ms=lat["p50_ms"], p99_ms=lat["p99_ms"])
    t.redis.flush()
    return out


KEYS = [
    "sync_rate",
    "sync_p50_ms",
    "sync_p99_ms",
    "sync_cpu",
    "sync_cmds",
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
    "enqueue_cpu",
    "bulk_cpu",
    "work_cpu",
    "cycle_cpu",
    "mem_waiting",
    "mem_finished",
]


class Entry:
    """One library's runs so far; a library that fails once is not run again."""

    def __init__(
        self, target: Target, lib: Library, jobs: int, lat_k: int, sync_calls: int = 0
    ) -> None:
        self.target = target
        self.lib = lib
        self.jobs = max(100, int(jobs * lib.scale))
        self.lat_k = max(20, int(lat_k * lib.scale))
        # The sync phase is not scaled: a sync enqueue does not wait for a slow worker.
        self.sync_calls = sync_calls if lib.sync else 0
        self.results: list[dict[str, Any]] = []
        self.errors: list[str] = []
        self.sync_errors: list[str] = []

    def run_once(self, say: Any) -> None:
        if self.errors:
            return
        t, lib = self.target, self.lib
        say(f"{lib.name}: run {len(self.results) + 1}, {self.jobs:,} jobs")
        syn: dict[str, Any] = {}
        if self.sync_calls and not self.sync_errors:
            # Apart from the other phases: a broken sync path does not hide the async figures.
            try:
                syn = sync_run(t, self.sync_calls)
                say(
                    f"  sync enqueue {syn['sync_rate']:,.0f}/s, "
                    f"p50 {syn['sync_p50_ms']:.3f} ms, Redis CPU {syn['sync_cpu']:.1f} us/job"
                )
            except Exception as exc:
                self.sync_errors.append(f"{type(exc).__name__}: {exc}")
                say(f"  sync enqueue FAILED {self.sync_errors[-1]}")
                (t.log.parent / f"{lib.name}.sync.trace.txt").write_text(traceback.format_exc())
        try:
            res = one_run(t, lib, self.jobs, self.lat_k)
        except Exception as exc:  # a failing library is reported, the others go on
            self.errors.append(f"{type(exc).__name__}: {exc}")
            say(f"  FAILED {self.errors[-1]}")
            (t.log.parent / f"{lib.name}.trace.txt").write_text(traceback.format_exc())
            t.redis.flush()
            return
        res.update(syn)
        self.results.append(res)
        say(
            f"  enqueue {res['enqueue_rate']:,.0f}/s, work {res['work_rate']:,.0f}/s, "
            f"p50 {res['p50_ms']:.2f} ms, rss {res['rss_mb']:.0f} MB; Redis CPU us/job: "
            f"enqueue {res['enqueue_cpu']:.1f}, worker {res['work_cpu']:.1f}, "
            f"cycle {res['cycle_cpu']:.1f}"
            + (f", bulk {res['bulk_cpu']:.1f}" if res.get("bulk_cpu") is not None else "")
            + f"; Redis bytes/job: waiting {res['mem_waiting']:,.0f}, "
            f"finished {res['mem_finished']:,.0f}"
        )

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: _median(self.results, k) for k in KEYS}
        loops = sorted({r["loop"] for r in self.results if r.get("loop")})
        out.update(
            runs=self.results,
            errors=self.errors,
            sync_errors=self.sync_errors,
            ok=bool(self.results) and not self.errors,
            sync_ok=not self.sync_errors,
            jobs=self.jobs,
            sync_calls=self.sync_calls,
            loop=", ".join(loops) or None,
        )
        return out
