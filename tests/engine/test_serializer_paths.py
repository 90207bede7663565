"""The JSON paths (orjson and the stdlib fallback) refuse the same hostile bodies."""

from __future__ import annotations

import importlib.util
import json

import pytest

from repid_django.engine import serializer
from repid_django.engine.message import Message, MessageDecodeError, decode, encode


@pytest.fixture(params=["orjson", "stdlib"])
def json_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(serializer, "_orjson", None)
    elif importlib.util.find_spec("orjson") is None:
        pytest.fail("orjson is a dev dependency: install the project with '.[dev]'")
    return str(request.param)


def body_with(**fields: object) -> bytes:
    data = json.loads(encode(Message(id="a", actor="x", queue="default")))
    data.update(fields)
    return json.dumps(data).encode()  # the stdlib writes NaN and Infinity when asked to


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("field", ["timeout", "ttl", "run_at", "deferred_by", "result_ttl"])
def test_non_finite_numbers_are_refused(json_path: str, field: str, value: float) -> None:
    with pytest.raises(MessageDecodeError, match="not JSON"):
        decode(body_with(**{field: value}))


def test_deep_nesting_is_refused_not_a_recursion_error(json_path: str) -> None:
    depth = 200_000
    deep = b'{"v":1,"id":"a","actor":"x","queue":"default","args":' + b"[" * depth
    deep += b"]" * depth + b"}"
    with pytest.raises(MessageDecodeError, match="not JSON"):
        decode(deep, max_size=len(deep) + 1)


def test_a_valid_body_reads_the_same_on_both_paths(json_path: str) -> None:
    message = Message(id="a", actor="x", queue="default", args={"n": [1, 2.5, "s", None]})
    assert decode(encode(message)).args == {"n": [1, 2.5, "s", None]}
