"""Job results: what a finished run returned or raised, and how their times are given."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from .serializer import JSON

MAX_ERROR_CHARS = 16_000
"""The longest error text (traceback) a result or dead letter holds: the worker keeps the head
and the tail of a longer one, and a broker may cut what is longer still."""


@overload
def stamp(seconds: float) -> datetime: ...
@overload
def stamp(seconds: None) -> None: ...
@overload
def stamp(seconds: float | None) -> datetime | None: ...
def stamp(seconds: float | None) -> datetime | None:
    """The aware UTC datetime of a Unix time (``None`` stays ``None``)."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


@dataclass(frozen=True, slots=True)
class JobResult:
    """The stored outcome of one job run.

    ``data`` is the actor's JSON return value (``None`` on failure); ``exception`` is the error
    text with its traceback when the run failed; ``timed_out`` tells a timeout from an error.
    """

    job_id: str
    actor: str
    success: bool
    data: JSON
    exception: str | None
    started_when: datetime
    finished_when: datetime
    attempt: int = 0
    timed_out: bool = False

    @property
    def duration(self) -> float:
        """Seconds between start and finish."""
        return (self.finished_when - self.started_when).total_seconds()

    def to_dict(self) -> dict[str, JSON]:
        return {
            "job_id": self.job_id,
            "actor": self.actor,
            "success": self.success,
            "data": self.data,
            "exception": self.exception,
            "started_when": self.started_when.timestamp(),
            "finished_when": self.finished_when.timestamp(),
            "attempt": self.attempt,
            "timed_out": self.timed_out,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobResult:
        """Rebuild a result written by :meth:`to_dict`; raises ``ValueError`` on bad data."""
        try:
            return cls(
                job_id=str(data["job_id"]),
                actor=str(data["actor"]),
                success=bool(data["success"]),
                data=data.get("data"),
                exception=data.get("exception"),
                started_when=stamp(float(data["started_when"])),
                finished_when=stamp(float(data["finished_when"])),
                attempt=int(data.get("attempt", 0)),
                timed_out=bool(data.get("timed_out", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed job result: {exc!r}") from None
