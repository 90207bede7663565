"""Translating between broker objects and the Lua scripts' arguments and replies.

Kept apart from ``redis.py`` so the broker reads as the sequence of its Redis calls. The worker
side only ever parses JSON (:func:`~repid_django.engine.message.decode`); a body that fails is
dead-lettered with its reason and a printable excerpt, never evaluated.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ...message import Message, MessageDecodeError, decode, encode
from ...serializer import dumps, loads
from ..base import DeadLetter, DeadReason, Delivery, Outcome, OutcomeKind

MAX_ERROR_CHARS = 32_000
"""Error texts (tracebacks) stored with dead letters are cut to this length."""


def fmt_time(value: float | None) -> str:
    return "" if value is None else repr(float(value))


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def printable(raw: bytes | str, limit: int = 500) -> str:
    """A safe excerpt of a raw body for display (never parsed beyond UTF-8)."""
    data = raw.encode() if isinstance(raw, str) else raw
    excerpt = data[:limit].decode("utf-8", errors="backslashreplace")
    return excerpt + ("..." if len(data) > limit else "")


def outcome_args(
    outcome: Outcome, queue_index: int, now: float, default_result_ttl: float
) -> list[str | int | bytes]:
    """The ten script arguments of one outcome (see ``lua/finish.lua``)."""
    delivery = outcome.delivery
    message = delivery.message
    kind = outcome.kind
    body: bytes | str = ""
    run_at = outcome.run_at
    if kind is OutcomeKind.RETRY:
        body = encode(message.with_changes(attempt=message.attempt + 1, run_at=run_at))
    elif kind is OutcomeKind.REJECT:
        if outcome.count_unknown or run_at is not None:
            unknown = message.unknown_count + (1 if outcome.count_unknown else 0)
            body = encode(message.with_changes(unknown_count=unknown, run_at=run_at))
    elif message.deferred_by is not None:  # ACK / DEAD of a recurring message: next occurrence
        if run_at is None:
            run_at = now + message.deferred_by
        body = encode(message.with_changes(attempt=0, unknown_count=0, run_at=run_at))
    else:
        run_at = None
    result: bytes | str = ""
    ttl_ms = 0
    if outcome.result is not None and message.store_result:
        result = dumps(outcome.result.to_dict())
        ttl_ms = max(1, int((message.result_ttl or default_result_ttl) * 1000))
    reason = outcome.reason or DeadReason.FAILED
    error = (outcome.error or "")[:MAX_ERROR_CHARS]
    return [
        queue_index,
        message.id,
        delivery.token,
        kind.value,
        body,
        fmt_time(run_at),
        result,
        ttl_ms,
        reason.value if kind is OutcomeKind.DEAD else "",
        error,
    ]


def call_digest(outcomes: Sequence[Outcome]) -> str:
    """A short hash naming one finish call by its outcomes' ids, tokens and kinds.

    The same call sent again (after a lost reply) has the same digest; any other call, even
    for the same message, has another token or kind, so another digest.
    """
    digest = hashlib.blake2b(digest_size=12)
    for outcome in outcomes:
        delivery = outcome.delivery
        message = delivery.message
        digest.update(
            f"{message.queue}\0{message.id}\0{delivery.token}\0{outcome.kind.value}\n".encode()
        )
    return digest.hexdigest()


def bad_delivery(queue: str, message_id: str, token: str) -> Delivery:
    """A placeholder delivery for a body that cannot be decoded (used to bury it)."""
    placeholder = Message(id=message_id, actor="?", queue=queue, store_result=False)
    return Delivery(message=placeholder, token=token)


def decode_claimed(
    reply: list[Any], queues: list[str], token: str, max_size: int, now: float
) -> tuple[list[Delivery], list[Outcome]]:
    """Split a claim reply into good deliveries and outcomes that bury the bad ones."""
    good: list[Delivery] = []
    bad: list[Outcome] = []
    for i in range(2, len(reply), 4):
        queue = queues[int(reply[i]) - 1]
        message_id = text(reply[i + 1])
        lost = int(reply[i + 2])
        body = reply[i + 3]
        try:
            message = decode(body, max_size)
            if message.id != message_id or message.queue != queue:
                raise MessageDecodeError(
                    f"body names message {message.id!r} of queue {message.queue!r}, "
                    f"but it is stored as {message_id!r} in {queue!r}"
                )
        except MessageDecodeError as exc:
            reason = DeadReason(exc.reason)
            placeholder = bad_delivery(queue, message_id, token)
            bad.append(Outcome(placeholder, OutcomeKind.DEAD, reason=reason, error=exc.detail))
            continue
        delivery = Delivery(message=message, token=token, lost=lost)
        if message.expired(now):
            error = f"its ttl of {message.ttl}s passed before a worker took it"
            bad.append(Outcome(delivery, OutcomeKind.DEAD, reason=DeadReason.EXPIRED, error=error))
            continue
        good.append(delivery)
    return good, bad


def dead_letter(queue: str, message_id: str, info: bytes, body: bytes, max_size: int) -> DeadLetter:
    """Rebuild a dead letter from ``lua/list_dead.lua``'s reply."""
    try:
        meta = loads(info)
        if not isinstance(meta, dict):
            meta = {}
    except ValueError:
        meta = {}
    try:
        reason = DeadReason(str(meta.get("reason", "failed")))
    except ValueError:
        reason = DeadReason.FAILED
    failed_at = meta.get("failed_at")
    stamp = float(failed_at) if isinstance(failed_at, int | float) else time.time()
    error = meta.get("error")
    message: Message | None
    raw: str | None = None
    try:
        message = decode(body, max_size)
    except MessageDecodeError:
        message, raw = None, printable(body)
    return DeadLetter(
        id=message_id,
        queue=queue,
        reason=reason,
        error=error if isinstance(error, str) and error else None,
        failed_at=datetime.fromtimestamp(stamp, UTC),
        message=message,
        raw=raw,
    )
