"""Which event loop a worker runs on: uvloop when it is installed (the ``fast`` extra), else
asyncio's own. uvloop's faster sockets and callbacks cut the per-job cost of the worker."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable
from typing import Literal

LoopName = Literal["auto", "asyncio", "uvloop"]
LOOPS: tuple[LoopName, ...] = ("auto", "asyncio", "uvloop")


def loop_factory(name: LoopName = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """A factory for :class:`asyncio.Runner`; ``None`` means asyncio's default loop.

    ``"auto"``: uvloop when importable; ``"uvloop"`` raises ``RuntimeError`` without it.
    """
    if name == "asyncio":
        return None
    if name == "auto" and importlib.util.find_spec("uvloop") is None:
        return None
    try:
        import uvloop
    except ImportError:
        raise RuntimeError(
            "the uvloop event loop was asked for but uvloop is not installed: "
            "pip install 'repid-django[fast]' (or use --loop asyncio)"
        ) from None
    new: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return new
