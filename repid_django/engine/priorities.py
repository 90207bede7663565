"""Job priorities.

Priorities are plain integers on Django's task scale, ``-100`` (lowest) to ``100`` (highest).
``PrioritiesT`` names three points on that scale. A higher number is always served first
(strict, not weighted); jobs of equal priority are served first-in, first-out.
"""

from __future__ import annotations

from enum import IntEnum

MIN_PRIORITY = -100
MAX_PRIORITY = 100


class PrioritiesT(IntEnum):
    """Named priority levels; any int in ``MIN_PRIORITY..MAX_PRIORITY`` is accepted too."""

    LOW = -50
    MEDIUM = 0
    HIGH = 50


def validate_priority(value: int) -> int:
    """Return ``value`` as an int or raise a ``ValueError`` that says what is accepted."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"priority must be a PrioritiesT or an int in {MIN_PRIORITY}..{MAX_PRIORITY}, "
            f"got {type(value).__name__}"
        )
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(
            f"priority {value} is out of range: use PrioritiesT.HIGH/MEDIUM/LOW or an int "
            f"in {MIN_PRIORITY}..{MAX_PRIORITY}"
        )
    return int(value)
