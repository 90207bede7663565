"""What a worker does when a claim fails: pause, log, and tell an outage from a broken setup.

A broker that is away (a lost connection, a failover: :data:`TRANSIENT_ERRORS`) is waited for
without end, with pauses that double from 0.1 s up to :data:`AWAY_BACKOFF`, and one traceback
per outage. Any other failure, :data:`MAX_BROKEN_CLAIMS` times in a row, stops the worker with
an error that says so, so a broken deployment fails loudly instead of spinning.
"""

from __future__ import annotations

import logging

logger = logging.getLogger("repid_django.worker")

TRANSIENT_ERRORS = (ConnectionError, OSError, TimeoutError)
"""Claim errors worth retrying for ever (the broker is away)."""

MAX_BROKEN_CLAIMS = 3
"""Failed claims in a row (other than :data:`TRANSIENT_ERRORS`) that stop the worker."""

AWAY_BACKOFF = 1.0
"""Longest pause between claims while the broker is away: short, so a worker follows a
failover within about a second of the new primary serving."""

BROKEN_BACKOFF = 5.0
"""Longest pause between claims that failed for another reason."""


class ClaimFailures:
    """The pause before the next claim and the run of broken claims, for one worker."""

    def __init__(self) -> None:
        self.pause = 0.0
        self.broken = 0

    def failed(self, exc: Exception) -> float:
        """Count and log a failed claim; the seconds to pause before the next. Raises
        ``RuntimeError`` once :data:`MAX_BROKEN_CLAIMS` non-transient failures came in a row."""
        away = isinstance(exc, TRANSIENT_ERRORS)
        if not away:
            self.broken += 1
            if self.broken >= MAX_BROKEN_CLAIMS:
                raise RuntimeError(
                    f"claiming jobs failed {self.broken} times in a row with "
                    f"{type(exc).__name__}: {exc}; the worker stops (jobs it holds go back to "
                    "the queue). This is not a lost connection: check the broker's "
                    "configuration and version, then restart the worker"
                ) from exc
        if not self.pause:  # the first failure of a run: its traceback, once
            logger.exception("claim failed; retrying")
        elif not away:
            logger.error("claim failed again (%s: %s)", type(exc).__name__, exc)
        self.pause = min(self.pause * 2 or 0.1, AWAY_BACKOFF if away else BROKEN_BACKOFF)
        return self.pause

    def succeeded(self) -> None:
        if self.pause:
            logger.warning("claims succeed again; the worker goes on")
        self.pause = 0.0
        self.broken = 0
