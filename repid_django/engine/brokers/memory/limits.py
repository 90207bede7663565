"""The in-memory broker's limits (see :mod:`...limits`): the same rules as the Redis claim
script, kept in this process's memory."""

from __future__ import annotations

import time
from collections.abc import Mapping

from ...limits import Limits, ctl_fields, field_names, from_fields
from ...message import Message
from .state import Lease


class InMemoryLimitsMixin:
    """``set_limits`` / ``get_limits`` and the admission check the claim makes."""

    _leases: dict[str, Lease]
    _rate_due: float | None

    async def set_limits(self, queue: str, limits: Mapping[str | None, Limits]) -> None:
        ctl: dict[str, str] = self.__dict__.setdefault("_ctl", {}).setdefault(queue, {})
        for who, chosen in limits.items():
            for name in field_names(who):
                ctl.pop(name, None)
            ctl.update(ctl_fields(chosen, who))

    async def get_limits(self, queue: str) -> dict[str | None, Limits]:
        return self._limits_of(queue)

    def _limits_of(self, queue: str) -> dict[str | None, Limits]:
        return from_fields(dict(self.__dict__.get("_ctl", {}).get(queue, {})))

    def _limited(self, queue: str) -> bool:
        return bool(self.__dict__.get("_ctl", {}).get(queue))

    def _admit(self, queue: str, running: int, message: Message) -> bool:
        """May ``message`` start now? Takes its slot and tokens when it may. ``running``: the
        queue's jobs running now. Sets ``_rate_due`` (monotonic) when a rate limit says no."""
        ctl = self.__dict__.get("_ctl", {}).get(queue)
        if not ctl:
            return True
        conc = ctl.get("conc")
        if conc is not None and running >= int(conc):
            return False
        actor = message.actor
        cap = ctl.get(f"c:{actor}")
        if cap is not None:
            leases = self._leases.values()
            busy = sum(1 for x in leases if x.queue == queue and x.message.actor == actor)
            if busy >= int(cap):
                return False
        draws = []
        rate = ctl.get(f"r:{actor}")
        if rate is not None:
            count, window, *named = rate.split(" ", 2)
            key = f"{queue}|{actor}"
            if named and isinstance(message.args, dict):
                key += f"|{message.args.get(named[0])}"
            draws.append((key, int(count), int(window)))
        if "rate" in ctl:
            count, window = ctl["rate"].split(" ")[:2]
            draws.append((queue, int(count), int(window)))
        buckets: dict[str, list[float]] = self.__dict__.setdefault("_buckets", {})
        now = time.monotonic() * 1000
        for key, count, window in draws:
            tokens, at = buckets.get(key, [float(count), now])
            tokens = min(float(count), tokens + (now - at) * count / window)
            buckets[key] = [tokens, now]
            if tokens < 1:
                due = time.monotonic() + (1 - tokens) * window / count / 1000
                self._rate_due = due if self._rate_due is None else min(self._rate_due, due)
                return False
        for key, _, _ in draws:
            buckets[key][0] -= 1
        return True
