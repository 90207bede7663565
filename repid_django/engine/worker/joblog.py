"""One log line per notable job outcome, with the job's fields as ``extra`` for JSON logging.

Logger ``repid_django.worker``. What each outcome says (a worker logs nothing per success):

* a failure that will be retried (WARNING): actor, job id, queue, "attempt n of m", the
  exception's last line, and the delay before the retry;
* a dead letter (ERROR): the same, with the reason (``failed``, ``timeout``, ``unknown_actor``,
  ``cancelled`` ... ; a cancel is INFO);
* a refused outcome (lease lost, WARNING) is logged by the recorder.

The traceback of a failure follows at DEBUG (``runworker -v 2``). Every record carries
``job_id``, ``actor``, ``queue`` and ``attempt`` (1-based) in ``extra``, so a JSON formatter
gets them as fields.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from ..brokers.base import DeadReason, Outcome, OutcomeKind
from ..message import Message

logger = logging.getLogger("repid_django.worker")


def fields(message: Message) -> dict[str, Any]:
    """The ``extra`` of a record about ``message``."""
    return {
        "job_id": message.id,
        "actor": message.actor,
        "queue": message.queue,
        "attempt": message.attempt + 1,
    }


def summary(error: str | None) -> str:
    """The last line of a traceback text (the exception and its message)."""
    if not error:
        return "(no error text)"
    lines = [line for line in error.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no error text)"


def log_outcome(outcome: Outcome) -> None:
    """Log a failure, retry or dead letter of an applied outcome (nothing for the rest)."""
    kind = outcome.kind
    if kind is OutcomeKind.ACK or kind is OutcomeKind.REJECT:
        return
    message = outcome.delivery.message
    extra = fields(message)
    tries = f"attempt {message.attempt + 1} of {message.retries + 1}"
    if kind is OutcomeKind.RETRY:
        delay = max((outcome.run_at or time.time()) - time.time(), 0.0)
        logger.warning(
            "job %s (actor %r, queue %r) failed on %s: %s; retrying in %.3gs",
            message.id,
            message.actor,
            message.queue,
            tries,
            summary(outcome.error),
            delay,
            extra=extra,
        )
    else:
        reason = outcome.reason or DeadReason.FAILED
        level = logging.INFO if reason is DeadReason.CANCELLED else logging.ERROR
        logger.log(
            level,
            "job %s (actor %r, queue %r) dead-lettered (%s) after %s: %s",
            message.id,
            message.actor,
            message.queue,
            reason.value,
            tries,
            summary(outcome.error),
            extra={**extra, "reason": reason.value},
        )
    if outcome.error and logger.isEnabledFor(logging.DEBUG) and "Traceback" in outcome.error:
        logger.debug("job %s traceback:\n%s", message.id, outcome.error, extra=extra)
