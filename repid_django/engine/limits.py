"""Global flow limits: at most N running at once, at most N starts per window.

Limits are enforced by the broker, atomically with the claim, across every worker:

* ``concurrency``: never more than that many jobs running at once (of one actor, or in one
  queue). A dead worker's slots come back with its leases (``lease_ttl + reaper_interval``).
* ``rate``: ``"100/m"`` (also ``/s``, ``/h``, ``/d``, or a window such as ``"5/10s"``): at most
  that many starts per window, as a token bucket (a burst of up to N at once, then N per window,
  refilled continuously). ``rate_key`` (actors only) names an argument whose value gets a bucket
  of its own (``rate_key="customer_id"``: one busy customer cannot use another's starts).

A job over a limit stays waiting, in its place in the queue: it is not retried, failed or
polled for; the jobs behind it that are allowed start, and it starts as soon as a slot frees (a
finish wakes a waiting worker) or a token comes back (the claim tells the worker when). Queues
and actors without limits pay nothing for the feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


class LimitError(ValueError):
    """A limit that cannot be enforced; the message says which and what to write instead."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits of an actor (or, with ``rate_key=None``, of a queue); ``None``: no limit."""

    concurrency: int | None = None
    rate: str | None = None
    rate_key: str | None = None

    def __post_init__(self) -> None:
        c = self.concurrency
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise LimitError(f"concurrency limit must be an int >= 1 (or None), got {c!r}")
        if self.rate is not None:
            parse_rate(self.rate)
        elif self.rate_key is not None:
            raise LimitError("rate_limit_key needs a rate_limit (for example '100/m')")
        if self.rate_key is not None and (not isinstance(self.rate_key, str) or not self.rate_key):
            raise LimitError(f"rate_limit_key must be an argument name, got {self.rate_key!r}")

    @property
    def empty(self) -> bool:
        return self.concurrency is None and self.rate is None


NO_LIMITS = Limits()


def parse_rate(rate: str) -> tuple[int, int]:
    """``"100/m"`` -> ``(100, 60000)``: starts and the window in milliseconds."""
    found = _RATE.match(rate) if isinstance(rate, str) else None
    if not found:
        raise LimitError(
            f"invalid rate limit {rate!r}: write '<count>/<unit>' with s, m, h or d "
            "(for example '100/m' or '20/s'), or a window such as '5/10s'"
        )
    count, size, unit = int(found[1]), found[2], found[3]
    window = round(float(size or 1) * _UNIT_MS[unit])
    if count < 1 or window < 1:
        raise LimitError(f"invalid rate limit {rate!r}: count and window must be positive")
    return count, window


def ctl_fields(limits: Limits, actor: str | None) -> dict[str, str]:
    """The broker's control fields for ``limits`` (of ``actor``, or the queue's when None)."""
    fields: dict[str, str] = {}
    conc_field, rate_field = ("conc", "rate") if actor is None else (f"c:{actor}", f"r:{actor}")
    if limits.concurrency is not None:
        fields[conc_field] = str(limits.concurrency)
    if limits.rate is not None:
        count, window = parse_rate(limits.rate)
        key = f" {limits.rate_key}" if actor is not None and limits.rate_key else ""
        fields[rate_field] = f"{count} {window}{key}"
    return fields


def field_names(actor: str | None) -> tuple[str, str]:
    return ("conc", "rate") if actor is None else (f"c:{actor}", f"r:{actor}")


def from_fields(found: dict[str, str]) -> dict[str | None, Limits]:
    """Read control fields back: ``{None: queue limits, actor: its limits}``."""
    conc: dict[str | None, int] = {}
    rates: dict[str | None, tuple[str, str | None]] = {}
    for name, value in found.items():
        if name == "conc":
            conc[None] = int(value)
        elif name.startswith("c:"):
            conc[name[2:]] = int(value)
        elif name == "rate" or name.startswith("r:"):
            count, window, *named = value.split(" ", 2)
            every = f"{count}/{int(window) / 1000:g}s"
            rates[None if name == "rate" else name[2:]] = (every, named[0] if named else None)
    out: dict[str | None, Limits] = {}
    for who in {*conc, *rates}:
        rate, key = rates.get(who, (None, None))
        out[who] = Limits(conc.get(who), rate, key if who is not None else None)
    return out
