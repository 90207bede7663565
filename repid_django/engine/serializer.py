"""JSON encoding for everything that crosses the broker.

Only JSON ever goes on the wire: no pickle, marshal or eval touches broker data. ``orjson`` is
used when it is installed (the ``fast`` extra); the standard library's ``json`` otherwise.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any

try:  # pragma: no cover - depends on the environment
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None  # type: ignore[assignment,unused-ignore]

JSON = Any
"""A value made of dict (str keys), list, str, int, float, bool and None."""


def _json_dumps(value: JSON) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


dumps: Callable[[JSON], bytes] = _json_dumps if _orjson is None else _orjson.dumps
"""Encode an already validated JSON value to bytes (``orjson.dumps`` itself when installed)."""


def loads(data: bytes | str) -> JSON:
    """Decode JSON bytes; raises ``ValueError`` on anything that is not JSON.

    Both paths refuse what orjson refuses: ``NaN``/``Infinity`` (not JSON), numbers too large
    for a double (``1e400``), bytes that are not UTF-8 (the stdlib would also guess UTF-16 and
    UTF-32, and let a byte order mark or encoded surrogates through), strings with a lone
    surrogate (``"\\ud800"``: no UTF-8 encoder can write them back) and nesting deeper than the
    parser's limit (the stdlib parser would raise ``RecursionError``).
    """
    if _orjson is not None:
        return _orjson.loads(data)
    if isinstance(data, str):
        data.encode()  # a lone surrogate in the str itself: UnicodeEncodeError, a ValueError
        text = data
    else:
        text = data.decode()  # strict UTF-8: UnicodeDecodeError, a ValueError
    try:
        value = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
        if len(text) > _LONGEST_DOUBLE and _LONG_DIGITS.search(text):  # an int beyond a double?
            json.loads(text, parse_int=_double_range_int)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    # The text, not the value: a key given twice keeps only its last value, but orjson
    # refuses the body for what the first one held.
    if ("\\ud" in text or "\\uD" in text) and any(_SURROGATE_ESCAPES.findall(text)):
        raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff)")
    if len(text) > 2 * _ORJSON_MAX_DEPTH and _nests_deeper(text, _ORJSON_MAX_DEPTH):
        raise ValueError(f"JSON nested deeper than {_ORJSON_MAX_DEPTH} levels")
    return value


_ORJSON_MAX_DEPTH = 1024
"""orjson reads at most this many levels of nesting."""
_LONGEST_DOUBLE = 309
"""Digits of the largest double: an int literal beyond a double has at least as many."""
_LONG_DIGITS = re.compile(rf"[0-9]{{{_LONGEST_DOUBLE}}}")
_SURROGATE_ESCAPES = re.compile(
    r"\\(?:\\"  # an escaped backslash
    r"|u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # a pair
    r"|(u[dD][89a-fA-F][0-9a-fA-F]{2}))"  # a lone surrogate
)
"""An escaped backslash, an escaped surrogate pair, or (the group) a lone escaped surrogate:
in JSON that parsed, every backslash in a string starts an escape, so matching escaped
backslashes first keeps the scan aligned."""
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
"""A whole string (skipped) or a bracket."""


def _nests_deeper(text: str, limit: int) -> bool:
    depth = 0
    for match in _BRACKETS.finditer(text):
        found = match.group()
        if found in "[{":
            depth += 1
            if depth > limit:
                return True
        elif found in "]}":
            depth -= 1
    return False


def _not_json(name: str) -> JSON:
    raise ValueError(f"{name} is not JSON")


def _double_range_int(text: str) -> int:
    value = int(text)
    try:
        float(value)
    except OverflowError:
        raise ValueError(f"number {text[:40]}... is too large for a double") from None
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if value - value != 0.0:  # inf - inf is nan
        raise ValueError(f"number {text[:40]} is too large for a double")
    return value


_PLAIN = frozenset({str, bool, type(None)})
"""Exact types that are always plain JSON (subclasses, e.g. enums, take the full check)."""
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
"""The ints JSON carries here: orjson writes no others (and reads larger ones as floats)."""


def is_plain_flat(value: dict[Any, Any] | list[Any]) -> bool:
    """True when ``value`` is a ``dict`` with ``str`` keys or a ``list`` whose items are all of
    the exact types str, int (64-bit), bool, None or finite float: a cheap check that never
    accepts what :func:`check_json` refuses (``False`` only means "take the full check")."""
    plain, low, high = _PLAIN, MIN_INT, MAX_INT
    if type(value) is dict:
        for key in value:
            if type(key) is not str:
                return False
        items: Any = value.values()
    elif type(value) is list:
        items = value
    else:
        return False
    for item in items:
        kind = type(item)
        if kind in plain:
            continue
        if kind is int and low <= item <= high:
            continue
        if kind is float and item - item == 0.0:  # inf - inf and nan - nan are nan
            continue
        return False
    return True


MAX_NESTING = 253
"""How many levels of lists and dicts a job's args may have: orjson writes at most 254 levels,
and the message body that holds the args is one of them."""


def too_deep(value: JSON, limit: int = MAX_NESTING) -> bool:
    """True when ``value`` nests lists and dicts more than ``limit`` levels deep (a list or a
    dict alone is one level); iterative, so any depth is measured without recursion."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[dict[str, JSON] | list[JSON], int]] = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        if depth > limit:
            return True
        for item in container.values() if isinstance(container, dict) else container:
            if isinstance(item, dict | list):
                stack.append((item, depth + 1))
    return False


def check_json(value: object, where: str, *, level: int = 1) -> None:
    """Raise ``TypeError`` naming the first part of ``value`` that JSON cannot carry.

    ``where`` names the value for the message, e.g. ``"args['user']"``. ``level`` is the nesting
    level of ``value`` in a job's args or an actor's return value (1 for the whole of it, 2 for
    an item of the args): lists and dicts nest at most :data:`MAX_NESTING` levels in all.
    """
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if not MIN_INT <= value <= MAX_INT:
            raise TypeError(
                f"{where} is an int of {value.bit_length()} bits, beyond the 64-bit integers "
                "JSON carries here; pass it as a str"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"{where} is {value!r}, which JSON cannot carry; use a finite number")
        return
    if isinstance(value, dict | list | tuple) and level > MAX_NESTING:
        raise TypeError(
            f"{where} nests lists and dicts more than {MAX_NESTING} levels deep, more than "
            "JSON carries here"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be str"
                )
            check_json(item, f"{where}[{key!r}]", level=level + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            check_json(item, f"{where}[{index}]", level=level + 1)
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}, which is not JSON-encodable; pass str, int, "
        "float, bool, None, list or dict (e.g. an id instead of a model instance, "
        "an ISO string instead of a datetime)"
    )
