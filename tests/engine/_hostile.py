"""Hostile message bodies for property tests, each with the verdict the wire format's rules give.

The verdict never comes from :func:`~repid_django.engine.message.decode` itself: :func:`verdict`
restates the rules (JSON that orjson reads, an object with ``v == 1``, every field of its type
and range), so a test compares the code against this spec, not against itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import strategies as st

from repid_django.engine import serializer
from repid_django.engine.message import MAX_COUNT, MAX_SECONDS, Message

PATHS = ("orjson", "stdlib")

# With database=None Hypothesis saves no examples, but it still caches unicode tables and
# source constants in its storage directory: keep that out of the working tree.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", str(Path(tempfile.gettempdir()) / "repid-django-hypothesis")
)


@contextlib.contextmanager
def json_path(name: str) -> Iterator[None]:
    """Run with the orjson or the stdlib JSON path, as test_serializer_paths.py switches it
    (``serializer._orjson``), and the stdlib's ``dumps`` wherever a module bound orjson's."""
    if importlib.util.find_spec("orjson") is None:
        pytest.fail("orjson is a dev dependency: install the project with '.[dev]'")
    if name == "orjson":
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(serializer, "_orjson", None)
        for module in [m for n, m in sys.modules.items() if n.startswith("repid_django")]:
            if getattr(module, "dumps", None) is orjson.dumps:
                patch.setattr(module, "dumps", serializer._json_dumps)
        yield


INVALID = object()
"""What a body holds when it is not JSON at all."""


def read(body: bytes) -> Any:
    """What ``body`` holds, read leniently: lone surrogates, NaN, huge numbers and deep nesting
    (up to the parser's limit) are kept, for :func:`clean` to judge; INVALID if not JSON, or if
    a key given twice first had a value that is not clean (the bodies here repeat top-level
    keys only)."""
    overridden: list[Any] = []

    def last_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        value: dict[str, Any] = {}
        for key, item in pairs:
            if key in value:
                overridden.append(value[key])
            value[key] = item
        return value

    try:
        value = json.loads(body.decode("utf-8", "surrogatepass"), object_pairs_hook=last_wins)
    except (ValueError, RecursionError):
        return INVALID
    if not all(clean(item, 2) for item in overridden):
        return INVALID
    return value


RAW_LITERALS = [
    b"NaN",
    b"-Infinity",
    b"1e400",
    b"1" + b"0" * 400,  # an int beyond a double
    b"1" + b"0" * 30,  # beyond 64 bits: orjson reads a float
    b"18446744073709551616",
    b"9223372036854775808",
    b"1e-400",
    b"-0",
    b"1E+2",
    b" 7 ",
    b'"\\ud800"',  # a lone surrogate, escaped
    b'"x\\udfff\\ud800"',  # a low then a high one: no pair
    b'"\\ud83d\\ude00"',  # an escaped pair
    b'"\xed\xa0\x80"',  # a surrogate encoded as UTF-8 bytes
    b'"\xff"',
    b"[" * 100_000 + b"]" * 100_000,
    b"[" * 1024 + b"]" * 1024,  # 1025 levels with the body
    b"[" * 1023 + b"]" * 1023,
    b"[" * 254 + b"]" * 254,
    b"[" * 253 + b"]" * 253,
    b'"600"',
    b"true",
    b"null",
    b"{}",
]

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF, categories=["Cs"])
texts = st.text(max_size=10) | st.text(st.characters() | surrogates, max_size=4)
big_ints = st.sampled_from(
    [2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 10**308, 10**400]
)
scalars = st.none() | st.booleans() | st.integers() | big_ints | st.floats() | texts
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4)
)
clean_args = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=8,
).filter(lambda value: isinstance(value, dict | list))
ids = st.text("0123456789abcdef", min_size=1, max_size=20)
seconds = st.floats(min_value=0, max_value=MAX_SECONDS, exclude_min=True) | st.integers(
    1, MAX_SECONDS
)
times = st.floats(allow_nan=False, allow_infinity=False)
counts = st.integers(0, MAX_COUNT)


@st.composite
def messages(draw: st.DrawFn, message_id: str | None = None, queue: str | None = None) -> Message:
    """A valid message; recurring ones recur at least an hour apart."""
    return Message(
        id=message_id or draw(ids),
        actor=draw(st.text(min_size=1, max_size=12)),
        queue=queue or draw(st.text(min_size=1, max_size=12)),
        priority=draw(st.integers(-100, 100)),
        args=draw(st.none() | clean_args),
        retries=draw(counts),
        attempt=draw(counts),
        timeout=draw(seconds),
        ttl=draw(st.none() | seconds),
        run_at=draw(st.none() | times),
        deferred_by=draw(st.none() | st.floats(3600, MAX_SECONDS)),
        store_result=draw(st.none() | st.booleans()),
        result_ttl=draw(st.none() | seconds),
        unique=draw(st.booleans()),
        unknown_count=draw(counts),
        enqueued_at=draw(times),
    )


@dataclass(frozen=True)
class Body:
    """A body to store under ``stored_id``; ``kind`` says how it was made (for reports)."""

    kind: str
    stored_id: str
    body: bytes

    @property
    def meaning(self) -> Any:
        return read(self.body)


def write(value: Any, how: str) -> bytes:
    """``value`` as JSON bytes, written the way ``how`` names (hostile writers included)."""
    if how == "ascii":  # \ud800 escapes, NaN and Infinity literals
        return json.dumps(value).encode()
    if how == "utf-8":  # lone surrogates as (invalid) UTF-8 bytes
        return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return json.dumps(value, indent=1, sort_keys=True).encode()  # "pretty"


WRITERS = st.sampled_from(["ascii", "utf-8", "pretty"])
FIELDS = (*Message.__slots__, "store_none", "v", "extra")


@st.composite
def bodies(draw: st.DrawFn, queue: str | None = None) -> Body:
    """Arbitrary bytes, arbitrary JSON, valid messages and valid messages with one field
    replaced, removed or given twice (the first or the last one hostile)."""
    kind = draw(st.sampled_from(["bytes", "json", "valid", "mutated", "mutated", "mutated"]))
    stored_id = draw(ids)
    if kind == "bytes":
        raw = draw(st.binary(max_size=64) | st.binary(min_size=600, max_size=2000))
        return Body(kind, stored_id, raw)
    if kind == "json":
        value = draw(json_values)
        return Body(kind, stored_id, write(value, draw(WRITERS)))
    message = draw(messages(stored_id, queue))
    data: dict[str, Any] = {"v": 1} | message.to_dict()
    if kind == "valid":
        return Body(kind, stored_id, write(data, draw(WRITERS)))
    field = draw(st.sampled_from(FIELDS))
    how = draw(st.sampled_from(["replace", "delete", "raw first", "raw last"]))
    kind = f"{field}: {how}"
    if how == "replace":
        data[field] = draw(json_values | st.sampled_from(["", stored_id + "x", 0, -1, 1e10 + 1]))
        return Body(kind, stored_id, write(data, draw(WRITERS)))
    if how == "delete":
        data.pop(field, None)
        return Body(kind, stored_id, write(data, draw(WRITERS)))
    raw = draw(st.sampled_from(RAW_LITERALS))
    valid = json.dumps(data).encode()
    extra = b'"' + field.encode() + b'":' + raw
    if how == "raw first":  # the valid value comes last and wins, if the body is JSON at all
        return Body(kind, stored_id, b"{" + extra + b"," + valid[1:])
    return Body(kind, stored_id, valid[:-1] + b"," + extra + b"}")


def clean(value: Any, depth: int = 1) -> bool:
    """JSON that orjson reads (within the body, at nesting level ``depth``)."""
    stack = [(value, depth)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return False
        if isinstance(item, int) and abs(item) >= 2**1024 - 2**970:  # rounds to infinity
            return False
        if isinstance(item, str) and any(0xD800 <= ord(char) <= 0xDFFF for char in item):
            return False
        if isinstance(item, dict | list):
            if level > 1024:
                return False
            if isinstance(item, dict):
                stack += [(key, level) for key in item]
            stack += [(i, level + 1) for i in (item.values() if isinstance(item, dict) else item)]
    return True


def _levels(value: Any) -> int:
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack += [(i, level + 1) for i in (item.values() if isinstance(item, dict) else item)]
    return deepest


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_read(value: Any) -> Any:
    """An int beyond 64 bits as orjson reads it (a float); anything else as is."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        return float(value)
    return value


_ABSENT = object()
_RULES: dict[str, tuple[bool, Any]] = {  # field -> (required, accepts(value))
    "priority": (True, lambda v: type(_as_read(v)) is int and -100 <= v <= 100),
    "retries": (True, lambda v: type(_as_read(v)) is int and 0 <= v <= MAX_COUNT),
    "attempt": (True, lambda v: type(_as_read(v)) is int and 0 <= v <= MAX_COUNT),
    "unknown_count": (False, lambda v: type(_as_read(v)) is int and 0 <= v <= MAX_COUNT),
    "timeout": (True, lambda v: _number(v) and 0 < v <= MAX_SECONDS),
    "ttl": (False, lambda v: _number(v) and 0 < v <= MAX_SECONDS),
    "deferred_by": (False, lambda v: _number(v) and 0 < v <= MAX_SECONDS),
    "result_ttl": (False, lambda v: _number(v) and 0 < v <= MAX_SECONDS),
    "run_at": (False, _number),  # finite: clean() checked it
    "enqueued_at": (True, _number),
    "store_result": (True, lambda v: isinstance(v, bool)),
    "store_none": (False, lambda v: isinstance(v, bool)),
    "unique": (False, lambda v: isinstance(v, bool)),
    "args": (False, lambda v: isinstance(v, dict | list) and _levels(v) <= 253),
}


def verdict(body: Body, max_size: int, queue: str | None = None) -> str:
    """``"too_large"``, ``"decode_error"`` or ``"ok"`` (a message that decodes); with ``queue``,
    the body must also name its stored id and that queue, as a claim checks."""
    if len(body.body) > max_size:
        return "too_large"
    data = body.meaning
    if data is INVALID or not clean(data) or not isinstance(data, dict) or data.get("v") != 1:
        return "decode_error"
    for name in ("id", "actor", "queue"):
        if not isinstance(data.get(name), str) or not data[name]:
            return "decode_error"
    if queue is not None and (data["id"] != body.stored_id or data["queue"] != queue):
        return "decode_error"
    for name, (required, accepts) in _RULES.items():
        value = data.get(name, _ABSENT)
        if value is _ABSENT or value is None:
            if required:
                return "decode_error"
        elif not accepts(value):
            return "decode_error"
    return "ok"
