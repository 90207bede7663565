"""The message: one enqueued run of a job, and its JSON wire format.

A :class:`Message` is what brokers store and workers execute. Its body is JSON (never pickle);
:func:`decode` checks every field strictly and raises :class:`MessageDecodeError` with a reason,
so malformed data is dead-lettered instead of crashing a worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .serializer import JSON, dumps, loads

WIRE_VERSION = 1
DEFAULT_MAX_MESSAGE_SIZE = 512 * 1024
"""Bytes; bodies larger than this are refused at enqueue (and dead-lettered if found)."""


class MessageDecodeError(ValueError):
    """Broker data that is not a valid message; ``reason`` is ``decode_error`` or ``too_large``."""

    def __init__(self, detail: str, reason: str = "decode_error") -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


# uuid4 bits: clear the version and variant bits, then set version 4 and the RFC 4122 variant.
_UUID4_KEEP = ~(0xF000 << 64) & ~(0xC000 << 48)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> str:
    """A fresh message id: the same text as ``uuid.uuid4().hex``, without the UUID object."""
    return "%032x" % ((int.from_bytes(os.urandom(16)) & _UUID4_KEEP) | _UUID4_SET)


def new_ids(count: int) -> list[str]:
    """``count`` fresh message ids (as :func:`new_id`) from one read of the OS random source."""
    raw = os.urandom(16 * count)
    keep, set_ = _UUID4_KEEP, _UUID4_SET
    return [
        "%032x" % ((int.from_bytes(raw[i : i + 16]) & keep) | set_)
        for i in range(0, 16 * count, 16)
    ]


@dataclass(frozen=True, slots=True)
class Message:
    """One run of a job as stored on the broker.

    Times are Unix timestamps in seconds. ``attempt`` counts the failed runs already spent
    (0 for a first run); a run fails for good when ``attempt == retries``.
    """

    id: str
    actor: str
    queue: str
    priority: int = 0
    args: JSON = None
    retries: int = 0
    attempt: int = 0
    timeout: float = 600.0
    ttl: float | None = None
    run_at: float | None = None
    deferred_by: float | None = None
    store_result: bool = True
    result_ttl: float | None = None
    unique: bool = False
    unknown_count: int = 0
    enqueued_at: float = field(default_factory=time.time)

    def expired(self, now: float) -> bool:
        """True when ``ttl`` seconds passed since the run became due and it has not started.

        A run is due at ``run_at`` (deferred, retried or recurring) or else when enqueued, so a
        recurring job's later occurrences get the same ``ttl`` as its first.
        """
        if self.ttl is None:
            return False
        due = self.enqueued_at if self.run_at is None else max(self.run_at, self.enqueued_at)
        return now > due + self.ttl

    def with_changes(self, **changes: Any) -> Message:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, JSON]:
        return {
            "v": WIRE_VERSION,
            "id": self.id,
            "actor": self.actor,
            "queue": self.queue,
            "priority": self.priority,
            "args": self.args,
            "retries": self.retries,
            "attempt": self.attempt,
            "timeout": self.timeout,
            "ttl": self.ttl,
            "run_at": self.run_at,
            "deferred_by": self.deferred_by,
            "store_result": self.store_result,
            "result_ttl": self.result_ttl,
            "unique": self.unique,
            "unknown_count": self.unknown_count,
            "enqueued_at": self.enqueued_at,
        }


_new = object.__new__


def _setter(name: str) -> Callable[[Message, Any], None]:
    """The slot's own setter: it bypasses the frozen ``__setattr__``."""
    setter: Callable[[Message, Any], None] = getattr(Message, name).__set__
    return setter


_set_id = _setter("id")
_set_actor = _setter("actor")
_set_queue = _setter("queue")
_set_priority = _setter("priority")
_set_args = _setter("args")
_set_retries = _setter("retries")
_set_attempt = _setter("attempt")
_set_timeout = _setter("timeout")
_set_ttl = _setter("ttl")
_set_run_at = _setter("run_at")
_set_deferred_by = _setter("deferred_by")
_set_store_result = _setter("store_result")
_set_result_ttl = _setter("result_ttl")
_set_unique = _setter("unique")
_set_unknown_count = _setter("unknown_count")
_set_enqueued_at = _setter("enqueued_at")


def new_message(  # noqa: PLR0917 - one parameter per field, in field order
    id: str,
    actor: str,
    queue: str,
    priority: int,
    args: JSON,
    retries: int,
    timeout: float,
    ttl: float | None,
    run_at: float | None,
    deferred_by: float | None,
    store_result: bool,
    result_ttl: float | None,
    unique: bool,
    enqueued_at: float,
) -> Message:
    """``Message(...)`` with ``attempt=0`` and ``unknown_count=0``, without the dataclass
    ``__init__``'s keyword handling and frozen ``__setattr__`` (the enqueue hot path)."""
    message: Message = _new(Message)
    _set_id(message, id)
    _set_actor(message, actor)
    _set_queue(message, queue)
    _set_priority(message, priority)
    _set_args(message, args)
    _set_retries(message, retries)
    _set_attempt(message, 0)
    _set_timeout(message, timeout)
    _set_ttl(message, ttl)
    _set_run_at(message, run_at)
    _set_deferred_by(message, deferred_by)
    _set_store_result(message, store_result)
    _set_result_ttl(message, result_ttl)
    _set_unique(message, unique)
    _set_unknown_count(message, 0)
    _set_enqueued_at(message, enqueued_at)
    return message


def encode(message: Message) -> bytes:
    """The message's JSON body."""
    return dumps(message.to_dict())


def encode_checked(message: Message, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> bytes:
    """Encode for enqueue; ``ValueError`` naming the job when the body is over ``max_size``."""
    body = dumps(message.to_dict())
    if len(body) > max_size:
        raise ValueError(
            f"job {message.actor!r} is {len(body)} bytes encoded, over the broker's limit of "
            f"{max_size} bytes (max_message_size): store large data elsewhere and pass a "
            "reference (an id, a path or a URL) in args; nothing was sent"
        )
    return body


_NUMBER = (int, float)


def _field(data: dict[str, Any], name: str, kinds: tuple[type, ...], optional: bool) -> Any:
    if name not in data:
        if optional:
            return None
        raise MessageDecodeError(f"field {name!r} is missing")
    value = data[name]
    if value is None and optional:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise MessageDecodeError(f"field {name!r} has type bool")
    if not isinstance(value, kinds):
        raise MessageDecodeError(f"field {name!r} has type {type(value).__name__}")
    return value


def decode(body: bytes | str, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Message:
    """Parse and validate a message body; raises :class:`MessageDecodeError` with a reason."""
    if len(body) > max_size:
        raise MessageDecodeError(f"body is {len(body)} bytes, over {max_size}", "too_large")
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageDecodeError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageDecodeError(f"body is a JSON {type(data).__name__}, not an object")
    if data.get("v") != WIRE_VERSION:
        raise MessageDecodeError(f"unsupported wire version {data.get('v')!r}")
    args = data.get("args")
    if args is not None and not isinstance(args, dict | list):
        raise MessageDecodeError(f"field 'args' has type {type(args).__name__}")
    try:
        message = Message(
            id=_field(data, "id", (str,), False),
            actor=_field(data, "actor", (str,), False),
            queue=_field(data, "queue", (str,), False),
            priority=_field(data, "priority", (int,), False),
            args=args,
            retries=_field(data, "retries", (int,), False),
            attempt=_field(data, "attempt", (int,), False),
            timeout=float(_field(data, "timeout", _NUMBER, False)),
            ttl=_opt_float(_field(data, "ttl", _NUMBER, True)),
            run_at=_opt_float(_field(data, "run_at", _NUMBER, True)),
            deferred_by=_opt_float(_field(data, "deferred_by", _NUMBER, True)),
            store_result=_field(data, "store_result", (bool,), False),
            result_ttl=_opt_float(_field(data, "result_ttl", _NUMBER, True)),
            unique=bool(_field(data, "unique", (bool,), True)),
            unknown_count=_field(data, "unknown_count", (int,), True) or 0,
            enqueued_at=float(_field(data, "enqueued_at", _NUMBER, False)),
        )
    except MessageDecodeError:
        raise
    if not message.id or not message.actor or not message.queue:
        raise MessageDecodeError("fields 'id', 'actor' and 'queue' must not be empty")
    if message.retries < 0 or message.attempt < 0 or message.timeout <= 0:
        raise MessageDecodeError("'retries' and 'attempt' must be >= 0 and 'timeout' > 0")
    return message


def _opt_float(value: int | float | None) -> float | None:
    return None if value is None else float(value)
