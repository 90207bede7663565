"""Markdown tables and the JSON record of a run."""

from __future__ import annotations

from typing import Any


def _n(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def _status(r: dict[str, Any]) -> str:
    if not r["ok"]:
        return "FAILED: " + "; ".join(r["errors"])[:160].replace("|", "/")
    if r.get("sync_errors"):
        return "sync enqueue FAILED: " + "; ".join(r["sync_errors"])[:160].replace("|", "/")
    return "ok"


def _sync(r: dict[str, Any]) -> str:
    if r.get("sync_errors"):
        return "FAILED"
    if r.get("sync_rate") is None:
        return "- (no sync API)" if not r.get("sync_calls") else "-"
    return f"{_n(r['sync_rate'])} ({_n(r.get('sync_p50_ms'), '.3f')})"


def main_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| library | version | ack / results | worker as run | event loop "
        "| sync enqueue/s (p50 ms) | async enqueue/s | bulk enqueue/s "
        "| processed/s | latency p50 / p99 ms | worker peak RSS MB "
        "| Redis CPU us/job: enqueue / bulk / worker / cycle "
        "| Redis cmds/job: enqueue / bulk / worker | of which Lua script calls "
        "| Redis bytes/job: waiting / finished | status |"
    )
    lines = [head, "|" + "---|" * 16]
    for r in rows:
        cmds = " / ".join(_n(r.get(k), ".1f") for k in ("enqueue_cmds", "bulk_cmds", "work_cmds"))
        scripts = " / ".join(
            _n(r.get(k), ".2f") for k in ("enqueue_scripts", "bulk_scripts", "work_scripts")
        )
        cpu = " / ".join(
            _n(r.get(k), ".1f") for k in ("enqueue_cpu", "bulk_cpu", "work_cpu", "cycle_cpu")
        )
        mem = f"{_n(r.get('mem_waiting'))} / {_n(r.get('mem_finished'))}"
        run_as = r["concurrency"] + (f"; {r['jobs']:,} jobs" if r.get("jobs") else "")
        lat = f"{_n(r.get('p50_ms'), '.2f')} / {_n(r.get('p99_ms'), '.2f')}"
        lines.append(
            f"| {r['name']} | {r['version']} | {r['ack']}; results: {r['results']} "
            f"| {run_as} | {r.get('loop') or '-'} | {_sync(r)} | {_n(r.get('enqueue_rate'))} "
            f"| {_n(r.get('bulk_rate'))} | {_n(r.get('work_rate'))} | {lat} "
            f"| {_n(r.get('rss_mb'), '.0f')} | {cpu} | {cmds} | {scripts} | {mem} | {_status(r)} |"
        )
    return "\n".join(lines)


def cpu_note(ceiling: dict[str, Any]) -> str:
    """How the Redis CPU columns are measured (one paragraph of the report)."""
    idle = ceiling.get("idle_us_per_s")
    info = ceiling.get("info_us")
    return (
        "Redis CPU us/job: `used_cpu_user + used_cpu_sys` of the measured redis-server "
        "(`INFO cpu`) read just before and just after each phase, divided by its jobs: "
        "enqueue = one by one (async), bulk = the bulk API, worker = the processing phase "
        "(worker start-up and idle polling included), cycle = enqueue + worker; the sync "
        "enqueue phase is in the JSON record (`sync_cpu`). Nothing else talks to that server "
        "during a phase: the workers publish their job counts every 20 ms to a second "
        "redis-server (the control server), which the harness polls, so that publication "
        "costs the measured server nothing (moved, not subtracted). Subtracted from every "
        f"figure: the server's own idle CPU ({_n(idle)} us per second of the phase, measured "
        f"with nothing connected at the start of each round) and one INFO call ({_n(info)} us)."
    )


def loops_note(rows: list[dict[str, Any]]) -> str:
    """Which event loop each library ran on (the one-by-one enqueue and its worker)."""
    parts = [f"{r['name']}: {r['loop']}" for r in rows if r.get("loop")]
    return (
        "Event loops (rule: every asyncio adapter, this project's and the peers', runs on uvloop "
        "when it is installed, and it is installed in every asyncio peer's venv and in the "
        "project venv by the `fast` extra; `--no-uvloop` runs them all on `asyncio.run`; "
        "rq, celery, dramatiq and huey have no event loop; the sync enqueue phase runs with "
        "no event loop in the caller): " + "; ".join(parts) + "."
    )


def extras_table(extras: list[dict[str, Any]]) -> str:
    lines = [
        "| repid_django scenario | jobs | processed/s | ideal | of ideal | peak RSS MB "
        "| Redis cmds/job | status |",
        "|" + "---|" * 8,
    ]
    for e in extras:
        if not e["ok"]:
            lines.append(f"| {e['name']} | - | - | - | - | - | - | FAILED: {e['error'][:160]} |")
            continue
        share = f"{e['rate'] / e['ideal']:.0%}" if e.get("ideal") else "-"
        lines.append(
            f"| {e['name']} | {e['jobs']:,} | {_n(e['rate'])} | {_n(e.get('ideal'))} | {share} "
            f"| {_n(e['rss_mb'], '.0f')} | {_n(e['cmds_per_job'], '.1f')} | ok |"
        )
    return "\n".join(lines)


def ratios(rows: list[dict[str, Any]], ceiling: dict[str, Any], ours: str) -> str:
    """Our figures against the best peer's and the Redis ceiling (the issue's targets)."""
    me = next((r for r in rows if r["name"] == ours and r["ok"]), None)
    peers = [r for r in rows if r["name"] != ours and r["ok"]]
    if me is None or not peers:
        return ""

    def best(key: str, low: bool = False) -> tuple[str, float] | None:
        vals = [(r["name"], r[key]) for r in peers if r.get(key) is not None]
        if not vals:
            return None
        return min(vals, key=lambda v: v[1]) if low else max(vals, key=lambda v: v[1])

    out = []
    for key, label, low in (
        ("work_rate", "processed/s", False),
        ("enqueue_rate", "async enqueue/s", False),
        ("sync_rate", "sync enqueue/s", False),
        ("sync_p50_ms", "sync enqueue p50 ms", True),
        ("bulk_rate", "bulk enqueue/s", False),
        ("p50_ms", "latency p50", True),
        ("rss_mb", "worker RSS", True),
        ("enqueue_cpu", "Redis CPU us/job, enqueue", True),
        ("bulk_cpu", "Redis CPU us/job, bulk", True),
        ("work_cpu", "Redis CPU us/job, worker", True),
        ("cycle_cpu", "Redis CPU us/job, whole cycle", True),
        ("mem_waiting", "Redis bytes per waiting job", True),
        ("mem_finished", "Redis bytes per finished job", True),
    ):
        b = best(key, low)
        if b and me.get(key) and b[1] > 0:
            fmt = ",.3f" if key == "sync_p50_ms" else ",.2f" if low else ",.0f"
            out.append(
                f"- {label}: {me[key]:{fmt}} vs best peer {b[0]} {b[1]:{fmt}} "
                f"(ratio {me[key] / b[1]:.2f})"
            )
    if ceiling.get("set_per_s") and me.get("enqueue_rate"):
        out.append(
            f"- enqueue one by one = {me['enqueue_rate'] / ceiling['set_per_s']:.0%} of the "
            f"single-client Redis ceiling ({ceiling['set_per_s']:,.0f} SET/s)"
        )
    per_set = ceiling.get("sync_floor_cpu_us_per_call")
    if per_set and me.get("cycle_cpu"):
        out.append(
            f"- Redis CPU of the whole cycle = {me['cycle_cpu'] / per_set:.1f} unpipelined SETs "
            f"per job (one SET of the floor loop cost the server {per_set:.1f} us in this run: "
            "a yardstick that moves with the machine's load like the other CPU figures)"
        )
    floor = ceiling.get("sync_floor_calls_per_s")
    if floor and me.get("sync_rate"):
        out.append(
            f"- sync enqueue = {me['sync_rate'] / floor:.0%} of the redis-py sync SET loop "
            f"({floor:,.0f} calls/s, p50 {ceiling.get('sync_floor_p50_ms', 0):.3f} ms)"
        )
    client = ceiling.get("redis_py_asyncio_set_per_s")
    if client and me.get("enqueue_rate"):
        out.append(
            f"- enqueue one by one = {me['enqueue_rate'] / client:.0%} of an awaited redis-py "
            f"asyncio SET loop ({client:,.0f} SET/s)"
        )
    return "\n".join(out)
