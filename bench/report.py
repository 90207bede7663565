"""Markdown tables and the JSON record of a run."""

from __future__ import annotations

from typing import Any


def _n(value: float | None, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def main_table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| library | version | ack / results | worker as run | enqueue/s | bulk enqueue/s "
        "| processed/s | latency p50 / p99 ms | worker peak RSS MB "
        "| Redis cmds/job: enqueue / bulk / worker | of which Lua script calls | status |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        status = "ok" if r["ok"] else "FAILED: " + "; ".join(r["errors"])[:160].replace("|", "/")
        cmds = " / ".join(_n(r.get(k), ".1f") for k in ("enqueue_cmds", "bulk_cmds", "work_cmds"))
        scripts = " / ".join(
            _n(r.get(k), ".2f") for k in ("enqueue_scripts", "bulk_scripts", "work_scripts")
        )
        run_as = r["concurrency"] + (f"; {r['jobs']:,} jobs" if r.get("jobs") else "")
        lat = f"{_n(r.get('p50_ms'), '.2f')} / {_n(r.get('p99_ms'), '.2f')}"
        lines.append(
            f"| {r['name']} | {r['version']} | {r['ack']}; results: {r['results']} "
            f"| {run_as} | {_n(r.get('enqueue_rate'))} | {_n(r.get('bulk_rate'))} "
            f"| {_n(r.get('work_rate'))} | {lat} | {_n(r.get('rss_mb'), '.0f')} | {cmds} "
            f"| {scripts} | {status} |"
        )
    return "\n".join(lines)


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
        ("enqueue_rate", "enqueue/s", False),
        ("bulk_rate", "bulk enqueue/s", False),
        ("p50_ms", "latency p50", True),
        ("rss_mb", "worker RSS", True),
    ):
        b = best(key, low)
        if b and me.get(key):
            fmt = ",.2f" if low else ",.0f"
            out.append(
                f"- {label}: {me[key]:{fmt}} vs best peer {b[0]} {b[1]:{fmt}} "
                f"(ratio {me[key] / b[1]:.2f})"
            )
    if ceiling.get("set_per_s") and me.get("enqueue_rate"):
        out.append(
            f"- enqueue one by one = {me['enqueue_rate'] / ceiling['set_per_s']:.0%} of the "
            f"single-client Redis ceiling ({ceiling['set_per_s']:,.0f} SET/s)"
        )
    client = ceiling.get("redis_py_asyncio_set_per_s")
    if client and me.get("enqueue_rate"):
        out.append(
            f"- enqueue one by one = {me['enqueue_rate'] / client:.0%} of an awaited redis-py "
            f"asyncio SET loop ({client:,.0f} SET/s)"
        )
    return "\n".join(out)
