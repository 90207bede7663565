"""The counters of a worker run: what it claimed, ran and recorded.

The run loop (``runner.py``) counts what it claims and runs; the recorder (``recorder.py``)
counts the outcomes the broker accepted. Both write one :class:`Counters` object, which the run
exposes read-only (``runner.processed`` ...).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..brokers.base import DeadReason, OutcomeKind


@dataclass(slots=True)
class Counters:
    """``processed``: actor runs that ended (successfully or not); ``succeeded``, ``failed``
    (runs that raised or timed out), ``retried``, ``dead``, ``rejected`` (returned to the
    queue without spending a retry), ``lease_lost`` (outcomes the broker refused), ``claimed``
    (messages received), ``unknown`` (messages for actors this worker does not have),
    ``cancelled`` (jobs stopped by a cancel request; counted in ``dead`` too, not ``failed``).
    """

    processed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    dead: int = 0
    rejected: int = 0
    lease_lost: int = 0
    claimed: int = 0
    unknown: int = 0
    cancelled: int = 0

    def recorded(self, kind: OutcomeKind, reason: DeadReason | None = None) -> None:
        """Count one outcome the broker accepted."""
        if kind is OutcomeKind.ACK:
            self.succeeded += 1
        elif kind is OutcomeKind.RETRY:
            self.failed += 1
            self.retried += 1
        elif kind is OutcomeKind.DEAD:
            self.dead += 1
            if reason is DeadReason.CANCELLED:
                self.cancelled += 1
            elif reason is not DeadReason.UNKNOWN_ACTOR:
                self.failed += 1
        else:
            self.rejected += 1


class CountedRun:
    """Read-only views of a run's :class:`Counters` (``runner.processed`` ...)."""

    counters: Counters

    @property
    def processed(self) -> int:
        return self.counters.processed

    @property
    def succeeded(self) -> int:
        return self.counters.succeeded

    @property
    def failed(self) -> int:
        return self.counters.failed

    @property
    def retried(self) -> int:
        return self.counters.retried

    @property
    def dead(self) -> int:
        return self.counters.dead

    @property
    def rejected(self) -> int:
        return self.counters.rejected

    @property
    def lease_lost(self) -> int:
        return self.counters.lease_lost

    @property
    def claimed(self) -> int:
        return self.counters.claimed

    @property
    def unknown(self) -> int:
        return self.counters.unknown

    @property
    def cancelled(self) -> int:
        return self.counters.cancelled
