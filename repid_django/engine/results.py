"""Job results: what a finished run returned or raised, and how their times are given.

A result is kept for ``result_ttl`` (the job's, else the broker's: an hour by default) when the
job's ``store_result`` says so: with auto (the default) only when it is worth reading, so a
no-op that returns ``None`` costs no memory once it ran. ``job.result`` still answers for it:
a job whose message is gone and that left nothing gets a result rebuilt from how it ended
(:func:`unstored`, :func:`from_dead_letter`), with ``stored=False``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, overload

from .serializer import JSON

DEFAULT_RESULT_TTL_SECONDS = 3_600.0
"""How long a result is kept when neither the job nor the broker says otherwise: an hour (long
enough to read a result after a request or a retry, short enough that a busy site holds
minutes, not days, of them: 100 value-returning jobs a second keep 360,000 results)."""

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
    ``stored`` is ``False`` for a result rebuilt because none was stored: see :func:`unstored`
    and :func:`from_dead_letter` (it is not part of :meth:`to_dict`).
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
    stored: bool = True

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


def unstored(job_id: str, actor: str, seen: float) -> JobResult:
    """The result of a job that ended with nothing stored: its message is gone, with no result
    and no dead letter. That is what a run that returned ``None`` leaves when its job stores
    results only when useful (``store_result`` auto, the default), so it reads as a success
    with no data; ``started_when`` and ``finished_when`` are both ``seen`` (when that was
    found, the run's own times being unknown) and ``stored`` is ``False``.

    The broker cannot tell that case from a job that left nothing for another reason, which
    reads the same: a result that expired after ``result_ttl`` (its data is then not known),
    a message cancelled or flushed before it ran, or an id that was never enqueued (a send that
    failed, a ``Job(id_=...)`` not sent yet).
    """
    when = stamp(seen)
    return JobResult(job_id, actor, True, None, None, when, when, stored=False)


def from_dead_letter(
    job_id: str, actor: str, reason: str, error: str | None, failed_at: float
) -> JobResult:
    """The failure of a job that was dead-lettered with no result stored (its worker was lost,
    it expired, it was undecodable, or it stores no results): built from the dead letter's
    ``reason`` and ``error``; both times are ``failed_at``; ``stored`` is ``False``."""
    when = stamp(failed_at)
    text = f"dead-lettered ({reason})" + (f": {error}" if error else "")
    return JobResult(
        job_id, actor, False, None, text, when, when, timed_out=reason == "timeout", stored=False
    )
