"""Calling an actor's function: the arguments, the child-process entry point and error text.

A leaf module: the processor (``processor.py``) and the actor processes (``procs.py``) use it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

from ..results import MAX_ERROR_CHARS
from ..serializer import JSON, check_json, dumps, loads

_CUT_NOTE_ROOM = 64
"""Characters kept free for the note that says how much of a long error text was cut."""


class RemoteFailure(Exception):
    """A failure reported by a child process; ``text`` is its formatted traceback."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def error_text(exc: BaseException) -> str:
    """The exception with its traceback, bounded to :data:`MAX_ERROR_CHARS`."""
    text = exc.text if isinstance(exc, RemoteFailure) else "".join(traceback.format_exception(exc))
    if len(text) > MAX_ERROR_CHARS:
        half = (MAX_ERROR_CHARS - _CUT_NOTE_ROOM) // 2
        cut = len(text) - 2 * half
        text = f"{text[:half]}\n[... {cut} characters cut ...]\n{text[-half:]}"
    return text.rstrip("\n")


def call_actor(fn: Callable[..., Any], args: JSON) -> Any:
    """Call ``fn`` with JSON ``args``: a dict as keywords, a list as positionals, None as none."""
    if args is None:
        return fn()
    if isinstance(args, dict):
        return fn(**args)
    return fn(*args)


def run_in_child(fn: Callable[..., Any], payload: bytes, actor: str) -> tuple[bool, bytes | str]:
    """Entry point in a pool process: only ``fn``'s reference and JSON cross the boundary.

    Returns ``(True, json_of_return_value)`` or ``(False, traceback_text)``.
    """
    try:
        value = call_actor(fn, loads(payload))
        check_json(value, f"the return value of actor {actor!r}")
        return True, dumps(value)
    except Exception as exc:
        return False, error_text(exc)
