"""Signal handling for workers: the first signal drains, a second one forces the stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Callable, Iterable

logger = logging.getLogger("repid_django.worker")

DEFAULT_SIGNALS: tuple[signal.Signals, ...] = (
    () if sys.platform == "emscripten" else (signal.SIGINT, signal.SIGTERM)
)
"""``SIGINT`` and ``SIGTERM``; none on platforms without signals (emscripten)."""


def install(
    loop: asyncio.AbstractEventLoop,
    signals: Iterable[signal.Signals],
    handler: Callable[[signal.Signals], None],
) -> Callable[[], None]:
    """Route ``signals`` to ``handler(sig)`` on ``loop``; returns the function that undoes it.

    Signals can only be handled in the main thread of a loop that supports them; elsewhere
    (a worker started in another thread, Windows, emscripten) nothing is installed and the
    worker stops through ``Worker.stop()`` or its messages limit instead.
    """
    installed: list[signal.Signals] = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, handler, sig)
        except (NotImplementedError, RuntimeError, ValueError) as exc:
            logger.debug("not handling %s here: %s", signal.Signals(sig).name, exc)
        else:
            installed.append(sig)

    def remove() -> None:
        for sig in installed:
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)

    return remove
