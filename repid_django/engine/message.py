"""The message: one enqueued run of a job, and its JSON wire format.

A :class:`Message` is what brokers store and workers execute. Its body is JSON (never pickle);
:func:`decode` checks every field strictly and raises :class:`MessageDecodeError` with a reason,
so malformed data is dead-lettered instead of crashing a worker.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, overload

from .priorities import MAX_PRIORITY, MIN_PRIORITY
from .serializer import JSON, MAX_NESTING, dumps, is_plain_flat, loads, too_deep

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

    ``store_result``: ``True`` stores every run's result, ``False`` none, ``None`` (auto, the
    default) what is worth reading: a failure, a return value other than ``None``, and every
    run of a recurring job. On the wire auto is ``"store_result": true`` with
    ``"store_none": false``, so a worker that predates auto reads it as ``True`` (it stores
    everything, as it always did), and a body without ``store_none`` means what it always meant.
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
    store_result: bool | None = None
    result_ttl: float | None = None
    unique: bool = False
    unknown_count: int = 0
    enqueued_at: float = field(default_factory=time.time)
    trace: dict[str, str] | None = None
    """The trace context of the code that enqueued it (W3C headers; see ``tracing.py``)."""

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
        data: dict[str, JSON] = {
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
            "store_result": self.store_result is not False,
            "result_ttl": self.result_ttl,
            "unique": self.unique,
            "unknown_count": self.unknown_count,
            "enqueued_at": self.enqueued_at,
        }
        if self.store_result is None:
            data["store_none"] = False
        if self.trace:
            data["trace"] = self.trace
        return data


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
_set_trace = _setter("trace")


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
    store_result: bool | None,
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
    _set_trace(message, None)
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

MAX_SECONDS = 10**10
"""The longest duration a message may carry (timeout, ttl, deferred_by, result_ttl), about 317
years: longer ones mean "never" and would overflow Redis expiry times."""
MAX_COUNT = 2**63 - 1
"""The largest ``retries``, ``attempt`` or ``unknown_count``: a signed 64-bit JSON integer."""


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


def _int(data: dict[str, Any], name: str, low: int, high: int, optional: bool = False) -> int:
    """An int field within ``low..high`` (0 when optional and absent or null)."""
    value = data.get(name)
    if type(value) is int and low <= value <= high:
        return value
    value = _field(data, name, (int,), optional)
    if value is None:
        return 0
    if not low <= value <= high:
        raise MessageDecodeError(f"field {name!r} is {value!r:.40}, outside {low}..{high}")
    return int(value)


@overload
def _seconds(data: dict[str, Any], name: str, optional: Literal[False]) -> float: ...
@overload
def _seconds(data: dict[str, Any], name: str, optional: Literal[True]) -> float | None: ...
def _seconds(data: dict[str, Any], name: str, optional: bool) -> float | None:
    """A duration field: a number of seconds, above 0 and at most :data:`MAX_SECONDS`."""
    value = data.get(name)
    if type(value) is float and 0.0 < value <= MAX_SECONDS:
        return value
    value = _field(data, name, _NUMBER, optional)
    if value is None:
        return None
    if not 0 < value <= MAX_SECONDS:  # int and float compare exactly, however large
        raise MessageDecodeError(
            f"field {name!r} is {value!r:.40}, not a duration in seconds "
            f"(above 0, at most {MAX_SECONDS})"
        )
    return float(value)


@overload
def _time(data: dict[str, Any], name: str, optional: Literal[False]) -> float: ...
@overload
def _time(data: dict[str, Any], name: str, optional: Literal[True]) -> float | None: ...
def _time(data: dict[str, Any], name: str, optional: bool) -> float | None:
    """A Unix timestamp field: any finite number of seconds."""
    value = data.get(name)
    if type(value) is float and value - value == 0.0:  # inf - inf and nan - nan are nan
        return value
    value = _field(data, name, _NUMBER, optional)
    if value is None:
        return None
    try:
        stamp = float(value)
    except OverflowError:  # an int beyond a double (the stdlib parser keeps big ints)
        stamp = math.inf
    if not math.isfinite(stamp):
        raise MessageDecodeError(f"field {name!r} is {value!r:.40}, not a finite timestamp")
    return stamp


def _store_result(data: dict[str, Any]) -> bool | None:
    """``store_result`` as sent: ``None`` (auto) for ``true`` with ``"store_none": false``."""
    store: bool = _field(data, "store_result", (bool,), False)
    store_none = _field(data, "store_none", (bool,), True)
    return None if store and store_none is False else store


def _trace(value: Any) -> dict[str, str] | None:
    """A trace context: a few short string headers; anything else is dropped (a bad trace
    context never costs a job its run)."""
    if not isinstance(value, dict) or not value or len(value) > 8:
        return None
    for key, header in value.items():
        if not isinstance(key, str) or not isinstance(header, str) or len(header) > 512:
            return None
        if len(key) > 64 or not _plain(key) or not _plain(header):
            return None
    return value


def _plain(text: str) -> bool:
    """No lone surrogates (JSON that orjson could not write back)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode(body: bytes | str, max_size: int = DEFAULT_MAX_MESSAGE_SIZE) -> Message:
    """Parse and validate a message body; raises :class:`MessageDecodeError` with a reason.

    Every field is checked for its type and range (what :class:`~.job.Job` accepts), so a
    message that decodes can be run, retried and encoded again; nothing else is ever raised.
    """
    if len(body) > max_size:
        raise MessageDecodeError(f"body is {len(body)} bytes, over {max_size}", "too_large")
    try:
        data = loads(body)
    except ValueError as exc:  # UnicodeError and orjson's JSONDecodeError are ValueErrors
        raise MessageDecodeError(f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise MessageDecodeError(f"body is a JSON {type(data).__name__}, not an object")
    if data.get("v") != WIRE_VERSION:
        raise MessageDecodeError(f"unsupported wire version {data.get('v')!r:.40}")
    args = data.get("args")
    if args is not None:
        if not isinstance(args, dict | list):
            raise MessageDecodeError(f"field 'args' has type {type(args).__name__}")
        # Deeper than MAX_NESTING takes more than 2 * MAX_NESTING brackets.
        if len(body) > 2 * MAX_NESTING and not is_plain_flat(args) and too_deep(args):
            raise MessageDecodeError(
                f"field 'args' nests lists and dicts more than {MAX_NESTING} levels deep"
            )
    message = Message(
        id=_field(data, "id", (str,), False),
        actor=_field(data, "actor", (str,), False),
        queue=_field(data, "queue", (str,), False),
        priority=_int(data, "priority", MIN_PRIORITY, MAX_PRIORITY),
        args=args,
        retries=_int(data, "retries", 0, MAX_COUNT),
        attempt=_int(data, "attempt", 0, MAX_COUNT),
        timeout=_seconds(data, "timeout", False),
        ttl=_seconds(data, "ttl", True),
        run_at=_time(data, "run_at", True),
        deferred_by=_seconds(data, "deferred_by", True),
        store_result=_store_result(data),
        result_ttl=_seconds(data, "result_ttl", True),
        unique=bool(_field(data, "unique", (bool,), True)),
        unknown_count=_int(data, "unknown_count", 0, MAX_COUNT, True),
        enqueued_at=_time(data, "enqueued_at", False),
        trace=_trace(data.get("trace")),
    )
    if not message.id or not message.actor or not message.queue:
        raise MessageDecodeError("fields 'id', 'actor' and 'queue' must not be empty")
    return message
