"""``python -m bench``: run repid_django and its peers side by side and print a table."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import venvs
from .extras import profile_engine, run_extras
from .libraries import BY_NAME, LIBRARIES, OURS
from .phases import Target
from .redis_server import RedisServer, ceiling, median_ceiling, sync_floor
from .report import cpu_note, extras_table, loops_note, main_table, ratios
from .suite import Entry

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--small", action="store_true", help="1 run, 2,000 jobs (a smoke test)")
    p.add_argument(
        "--only",
        default="",
        help="comma-separated libraries: " + ",".join(lib.name for lib in LIBRARIES),
    )
    p.add_argument("--runs", type=int, default=None, help="runs per library (median; default 3)")
    p.add_argument("--jobs", type=int, default=None, help="jobs per phase (default 10,000)")
    p.add_argument("--latency", type=int, default=None, help="round trips measured (default 200)")
    p.add_argument(
        "--sync-calls",
        type=int,
        default=None,
        help="sync enqueue calls from plain sync code (default 5,000; 1,000 with --small)",
    )
    p.add_argument(
        "--no-uvloop",
        action="store_true",
        help="run every asyncio adapter on asyncio.run (default: uvloop where installed)",
    )
    p.add_argument(
        "--no-extras",
        action="store_true",
        help="skip the repid_django-only scenarios (but the mirror's, with --mirror)",
    )
    p.add_argument(
        "--mirror",
        action="store_true",
        help="also measure runworker --burst of the example project, ORM mirror on vs off",
    )
    p.add_argument(
        "--database-url",
        default=None,
        help="the mirror's database (e.g. postgres://user:pw@host:port/name; migrated, job rows "
        "kept: give it a database of its own); default: a fresh SQLite file",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="also profile repid_django (py-spy; 5 x --jobs jobs) and print the hotspots",
    )
    args = p.parse_args(argv)
    if args.database_url and not args.mirror:
        p.error("--database-url is the mirror's database: give --mirror too")
    args.runs = args.runs or (1 if args.small else 3)
    args.jobs = args.jobs or (2_000 if args.small else 10_000)
    args.latency = args.latency or (30 if args.small else 200)
    args.sync_calls = args.sync_calls or (1_000 if args.small else 5_000)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or [x.name for x in LIBRARIES]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        p.error(f"unknown library {', '.join(unknown)}; choose from {', '.join(BY_NAME)}")
    args.names = names
    return args


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
    }


def our_version() -> str:
    import repid_django

    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=HERE.parent,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        rev = ""
    return f"{repid_django.__version__} ({rev})" if rev else repid_django.__version__


def prepare(name: str, logs: Path, say: Any) -> tuple[str, str]:
    """(python, version) for one library; creates its venv on first use."""
    if name == OURS:
        return sys.executable, our_version()
    say(f"{name}: preparing bench/.venvs/{name}")
    python = venvs.ensure(name, logs / f"{name}.venv.log")
    return python, venvs.pins(name).get(BY_NAME[name].dist, "?")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.no_uvloop:
        os.environ["BENCH_LOOP"] = "asyncio"  # inherited by every adapter (see _common.run)
    stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    logs = RESULTS / "logs" / stamp
    logs.mkdir(parents=True, exist_ok=True)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    redis, ctl = RedisServer(), RedisServer()
    rows: list[dict[str, Any]] = []
    entries: list[Entry] = []
    extras: list[dict[str, Any]] = []
    profile = ""
    ceilings: list[dict[str, Any]] = []
    try:
        say(f"redis-server {redis.version} ({redis.binary}) on port {redis.port}")
        for name in args.names:
            lib = BY_NAME[name]
            row: dict[str, Any] = {
                "name": name,
                "version": "?",
                "ack": lib.ack,
                "results": lib.results,
                "concurrency": lib.concurrency,
            }
            rows.append(row)
            try:
                python, row["version"] = prepare(name, logs, say)
            except Exception as exc:
                row.update(ok=False, errors=[f"venv: {type(exc).__name__}: {exc}"])
                say(f"{name}: FAILED to prepare: {exc}")
                continue
            target = Target(name, python, redis, ctl, logs / f"{name}.log")
            entries.append(Entry(target, lib, args.jobs, args.latency, args.sync_calls))
        # Rounds: every library once per round, so that a slow spell of the machine spreads
        # over all of them rather than hitting one library's runs.
        for i in range(args.runs):
            calibration = redis.calibrate()
            ceil_i = ceiling(redis, 100_000)
            floor = sync_floor(redis, args.sync_calls)
            ceil_i.update(
                calibration,
                sync_floor_calls_per_s=floor["calls_per_s"],
                sync_floor_p50_ms=floor["p50_ms"],
                sync_floor_cpu_us_per_call=floor["cpu_us_per_call"],
                sync_floor_parser=floor["parser"],
            )
            ceilings.append(ceil_i)
            say(
                f"round {i + 1}/{args.runs}: ceiling {ceil_i['set_per_s']:,.0f} SET/s; sync "
                f"floor {floor['calls_per_s']:,.0f} SET/s (p50 {floor['p50_ms']:.3f} ms, "
                f"Redis CPU {floor['cpu_us_per_call']:.1f} us/SET); Redis idle "
                f"{calibration['idle_us_per_s']:,.0f} us/s, INFO {calibration['info_us']:.0f} us"
            )
            for entry in entries:
                entry.run_once(say)
        for entry in entries:
            next(r for r in rows if r["name"] == entry.lib.name).update(entry.summary())
        ours = next((e for e in entries if e.lib.name == OURS and not e.errors), None)
        if ours is not None and (args.mirror or not args.no_extras):
            say(f"{OURS}: extra scenarios")
            extras = run_extras(
                ours.target,
                args.jobs,
                say,
                mirror=args.mirror,
                others=not args.no_extras,
                database_url=args.database_url,
            )
        if ours is not None and args.profile:
            say(f"{OURS}: py-spy profile of the work phase")
            try:
                profile = profile_engine(ours.target, args.jobs * 5, logs, say)
            except Exception as exc:
                profile = f"profile failed: {type(exc).__name__}: {exc}"
    finally:
        redis.stop()
        ctl.stop()
    ceil = median_ceiling(ceilings)

    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    info = machine()
    cmd = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    text = [
        f"Run {when} on {info['cpu']} ({info['cores']} cores), Python {info['python']}, "
        f"redis-server {redis.version}; `{cmd.strip()}`; {args.runs} round(s) (median), "
        f"{args.jobs:,} no-op jobs per phase, {args.latency} round trips.",
        f"Raw ceiling: {_fmt(ceil['set_per_s'])} SET/s single client unpipelined "
        f"({ceil['tool']}); {_fmt(ceil.get('set_per_s_pipelined_100'))} SET/s with "
        f"pipelines of 100; {_fmt(ceil.get('redis_py_asyncio_set_per_s'))} SET/s from an awaited "
        f"redis-py asyncio loop on {ceil.get('redis_py_asyncio_loop', 'asyncio')} (what one "
        "Python client call costs).",
        f"Sync floor (the wire reference of a sync enqueue): `redis.Redis().set()` "
        f"{args.sync_calls:,} times from a plain loop, redis-py {_redis_py()} "
        f"({ceil.get('sync_floor_parser', '?')} parser): "
        f"{_fmt(ceil.get('sync_floor_calls_per_s'))} calls/s, p50 "
        f"{_fmt(ceil.get('sync_floor_p50_ms'), '.3f')} ms, Redis CPU "
        f"{_fmt(ceil.get('sync_floor_cpu_us_per_call'), '.1f')} us per SET.",
        cpu_note(ceil),
        loops_note(rows),
        "",
        main_table(rows),
    ]
    if extras:
        text += ["", extras_table(extras)]
    note = ratios(rows, ceil, OURS)
    if note:
        text += ["", "repid_django against the best peer:", note]
    if profile:
        text += ["", f"py-spy on repid_django, {args.jobs * 5:,} no-op jobs.", "", profile]
    table = "\n".join(text)
    print(table)

    record = {
        "date": when,
        "command": cmd.strip(),
        "machine": info,
        "redis": redis.version,
        "ceiling": ceil,
        "runs": args.runs,
        "jobs": args.jobs,
        "latency_k": args.latency,
        "sync_calls": args.sync_calls,
        "loop_rule": "asyncio.run (--no-uvloop)" if args.no_uvloop else "uvloop where installed",
        "libraries": rows,
        "extras": extras,
    }
    out = RESULTS / f"{stamp}.json"
    out.write_text(json.dumps(record, indent=1, default=str))
    if not args.small and args.only == "":
        (RESULTS / "latest.md").write_text(table + "\n")
    say(f"results: {out.relative_to(HERE.parent)} (logs in {logs.relative_to(HERE.parent)})")

    ours_failed = any(
        r["name"] == OURS and not (r.get("ok") and r.get("sync_ok", True)) for r in rows
    )
    return 1 if ours_failed or any(not e["ok"] for e in extras) else 0


def _fmt(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _redis_py() -> str:
    import redis

    return str(redis.__version__)


if __name__ == "__main__":
    sys.exit(main())
