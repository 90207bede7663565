"""Bounded label values: a job's actor and queue name as a metric label.

Names come from messages, which anyone with access to Redis can write, so a metric must never
grow one series per unexpected name: past ``limit`` distinct names (or, given ``known``, any
name not in it), a name is counted as :data:`OTHER`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

OTHER = "_other"
"""The label value of every name past the cap (or not among the known names)."""

MAX_ACTORS = 200
"""Distinct actor labels a process counts at most (beyond them: :data:`OTHER`)."""
MAX_QUEUES = 100
"""Distinct queue labels a process counts at most (beyond them: :data:`OTHER`)."""


class LabelCap:
    """Maps names to label values: the name itself while room is left, then :data:`OTHER`.

    With ``known``, exactly those names are kept and every other one is :data:`OTHER` (a worker
    knows its actors: an unknown actor name in a message is no new series).
    """

    def __init__(self, limit: int, known: Iterable[str] | None = None) -> None:
        self.limit = limit
        self._fixed = known is not None
        self._seen: set[str] = set(known or ())
        self._lock = threading.Lock()

    def __call__(self, name: str) -> str:
        seen = self._seen
        if name in seen:
            return name
        if self._fixed:
            return OTHER
        with self._lock:
            if name in seen:
                return name
            if len(seen) >= self.limit:
                return OTHER
            seen.add(name)
            return name
