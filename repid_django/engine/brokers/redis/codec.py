"""Translating between broker objects and the Lua scripts' arguments and replies.

Kept apart from ``redis.py`` so the broker reads as the sequence of its Redis calls. The worker
side only ever parses JSON (:func:`~repid_django.engine.message.decode`); a body that fails is
dead-lettered with its reason and a printable excerpt, never evaluated.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Sequence
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
    """A reply as text; bytes that are not UTF-8 (a foreign writer's) shown escaped."""
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else value


def claimed_id(value: bytes | str) -> str:
    """A claimed message's id as text that :func:`wire_id` turns back into the same bytes,
    even when a foreign writer stored an id that is not UTF-8 (it is buried by that id)."""
    return value.decode(errors="surrogateescape") if isinstance(value, bytes) else value


def wire_id(message_id: str) -> str | bytes:
    """The id as sent to Redis: the bytes it was read from (see :func:`claimed_id`)."""
    return message_id if message_id.isascii() else message_id.encode(errors="surrogateescape")


def printable(raw: bytes | str, limit: int = 500) -> str:
    """A safe excerpt of a raw body for display (never parsed beyond UTF-8)."""
    data = raw.encode() if isinstance(raw, str) else raw
    excerpt = data[:limit].decode("utf-8", errors="backslashreplace")
    return excerpt + ("..." if len(data) > limit else "")


_CODES = {
    OutcomeKind.ACK: "A",
    OutcomeKind.RETRY: "r",
    OutcomeKind.REJECT: "j",
    OutcomeKind.DEAD: "d",
}


def outcome_args(outcome: Outcome, now: float, result_ttl: float) -> list[Any]:
    """The script arguments of one outcome (see ``lua/finish.lua``): ``[id, result]`` for an
    ack whose message goes with its result kept for the default time (``result_ttl`` seconds),
    nine (starting with the id and the kind's code) otherwise."""
    delivery = outcome.delivery
    message = delivery.message
    kind = outcome.kind
    result: bytes | str = ""
    if outcome.result is not None and message.store_result is not False:
        result = dumps(outcome.result.to_dict())
    ttl_ms = result_ttl_ms(message.result_ttl or result_ttl)
    plain = kind is OutcomeKind.ACK and message.deferred_by is None
    if plain and (not result or ttl_ms == result_ttl_ms(result_ttl)):
        return [wire_id(message.id), result]
    code = _CODES[kind]
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
        if kind is OutcomeKind.ACK:
            code = "n"
    else:
        run_at = None
    reason = (outcome.reason or DeadReason.FAILED).value if kind is OutcomeKind.DEAD else ""
    error = (outcome.error or "")[:MAX_ERROR_CHARS]
    return [
        wire_id(message.id),
        code,
        result,
        ttl_ms,
        body,
        fmt_time(run_at),
        message.priority,
        reason,
        error,
    ]


def result_ttl_ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def finish_args(
    outcomes: Sequence[Outcome],
    now: float,
    result_ttl: float,
    head: list[Any],
    wake: Collection[str] = (),
) -> tuple[list[str], list[Any], list[int]]:
    """The queues, the arguments after ``head`` (see ``lua/finish.lua``: grouped by queue, then
    by lease token, plain acks first) and, for each reply position, the index of its outcome.
    A queue in ``wake`` (it has a concurrency limit) wakes a waiting claimer once its slots are
    freed (its group count carries a ``w``)."""
    # queue -> token -> (plain acks, other outcomes): (index, arguments) pairs
    groups: dict[str, dict[str, tuple[list[Any], list[Any]]]] = {}
    for index, outcome in enumerate(outcomes):
        delivery = outcome.delivery
        by_token = groups.setdefault(delivery.message.queue, {})
        plain, full = by_token.setdefault(delivery.token, ([], []))
        record = outcome_args(outcome, now, result_ttl)
        (plain if len(record) == 2 else full).append((index, record))
    seen = {(o.delivery.message.queue, o.delivery.message.id) for o in outcomes}
    args = [*head, 1 if len(seen) < len(outcomes) else 0]
    order: list[int] = []
    for queue, by_token in groups.items():
        args.append(f"{len(by_token)}w" if queue in wake else len(by_token))
        for token, (plain, full) in by_token.items():
            args += [token, len(plain), len(full)]
            for index, record in (*plain, *full):
                args += record
                order.append(index)
    return list(groups), args, order


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
            f"{message.queue}\0{message.id}\0{delivery.token}\0{outcome.kind.value}\n".encode(
                errors="surrogateescape"
            )
        )
    return digest.hexdigest()


def bad_delivery(queue: str, message_id: str, token: str) -> Delivery:
    """A placeholder delivery for a body that cannot be decoded (used to bury it)."""
    placeholder = Message(id=message_id, actor="?", queue=queue, store_result=False)
    return Delivery(message=placeholder, token=token)


def decode_claimed(
    reply: list[Any], queues: list[str], token: str, max_size: int, now: float
) -> tuple[list[Delivery], list[Outcome]]:
    """Split a claim reply (see ``lua/claim.lua``) into good deliveries and outcomes that bury
    the bad ones."""
    good: list[Delivery] = []
    bad: list[Outcome] = []
    info = text(reply[2]).split() if reply[2] else None
    for n, i in enumerate(range(4, len(reply), 2)):
        queue, lost = queues[0], 0
        if info is not None:
            index, _, count = info[n].partition(",")
            queue, lost = queues[int(index) - 1], int(count)
        message_id = claimed_id(reply[i])
        body = reply[i + 1]
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
        if message.id != message_id or message.queue != queue:  # buried as decode_error
            raise MessageDecodeError("stored under another id or queue")
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
