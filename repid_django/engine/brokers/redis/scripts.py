"""The broker's Lua scripts: loaded from ``lua/``, run with EVALSHA, reloaded on NOSCRIPT.

Each script is its own file with, in front, the helpers of ``lua/common.lua`` it uses (directly
or through another helper), so every state change is one atomic script and no call pays for
defining helpers it never runs. ``common.lua`` is a sequence of blocks separated by blank
lines, each defining one ``local`` (a function or a constant); a block is included when its
name is used as ``name(`` (functions) or as a word (constants) by the script or by an included
block. Scripts are sent by SHA1; a server that does not know one yet
(first use, restart, ``SCRIPT FLUSH``) answers NOSCRIPT, and the script is loaded and the call
repeated (a NOSCRIPT call changed nothing, so repeating it is safe).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import (
    AuthenticationError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

LUA_DIR = Path(__file__).with_name("lua")


class ServerBusyError(ResponseError):
    """Redis cannot serve now: ``BUSY`` (a long script holds it until it ends or ``SCRIPT
    KILL``), ``MASTERDOWN`` (a replica lost its primary), ``TRYAGAIN`` or ``CLUSTERDOWN`` (a
    cluster resharding or failing over). Retried like a lost connection."""


RETRYABLE = (
    RedisConnectionError,
    RedisTimeoutError,
    ReadOnlyError,
    OutOfMemoryError,
    ServerBusyError,
    OSError,
)
"""Errors of an unreachable, restarting (loading), failing-over, busy or full Redis: worth
retrying. A producer does not wait for memory: see :func:`refused`."""
log = logging.getLogger("repid_django.redis")


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str
    parts: tuple[str, ...] = ()
    """The fixed keys of a queue the script may touch (``ready``, ``msgs``...), found in its
    source: on a Redis Cluster they are declared in KEYS after the queue bases."""


_PART = re.compile(r"\.\. '([a-z]+)'")
_PART_LISTS = re.compile(r"ipairs\(\{([^}]*)\}\)")
_EXTRA_PARTS = {"list": ("ready", "delayed")}
"""Parts named by an argument (``base .. ARGV[1]``), which the source does not show."""


def _parts(name: str, source: str) -> tuple[str, ...]:
    found = set(_PART.findall(source))
    for listed in _PART_LISTS.findall(source):
        found.update(re.findall(r"'([a-z]+)'", listed))
    found.update(_EXTRA_PARTS.get(name, ()))
    return tuple(sorted(found))


_DEFINES = re.compile(r"^local (function )?([A-Za-z_]\w*)", re.MULTILINE)


@cache
def helpers() -> dict[str, tuple[str, re.Pattern[str]]]:
    """The blocks of ``lua/common.lua`` by the name each defines (in file order), each with
    the pattern that finds a use of that name."""
    common = (LUA_DIR / "common.lua").read_text(encoding="utf-8")
    blocks: dict[str, tuple[str, re.Pattern[str]]] = {}
    for block in re.split(r"\n\s*\n", common):
        found = _DEFINES.search(block)
        if found:
            is_function, name = found.groups()
            use = rf"(?<![\w.'\"]){name}" + (r"\s*\(" if is_function else r"\b")
            blocks[name] = (block.strip("\n"), re.compile(use))
    return blocks


@cache
def script(name: str) -> Script:
    """The script ``lua/<name>.lua`` with the helpers it needs in front."""
    own = (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    blocks = helpers()
    needed: set[str] = set()
    pending = [own]
    while pending:
        text = pending.pop()
        for helper, (block, use) in blocks.items():
            if helper not in needed and use.search(text):
                needed.add(helper)
                pending.append(block)
    parts = [block for helper, (block, _) in blocks.items() if helper in needed]
    source = "\n\n".join([*parts, own])
    sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()
    return Script(name, source, sha, _parts(name, source))


async def run_many(
    client: aredis.Redis,
    name: str,
    calls: Sequence[tuple[list[str], list[Any]]],
    register: tuple[str, list[str]] | None = None,
) -> list[Any]:
    """Run script ``name`` once per ``(keys, args)`` in one pipelined round trip.

    ``register``: ``(set key, members)`` to SADD in the same round trip (when members exist).
    """
    s = script(name)
    for attempt in range(2):
        async with client.pipeline(transaction=False) as pipe:
            skip = _queue_calls(pipe, s, calls, register)
            replies = (await pipe.execute(raise_on_error=False))[skip:]
        if (done := _checked(replies, retry=not attempt)) is not None:
            return done
        await client.script_load(s.source)  # NOSCRIPT replies changed nothing: run them again
    raise AssertionError("unreachable")  # pragma: no cover


def run_many_sync(
    client: redis.Redis,
    name: str,
    calls: Sequence[tuple[list[str], list[Any]]],
    register: tuple[str, list[str]] | None = None,
) -> list[Any]:
    """:func:`run_many` for synchronous clients."""
    s = script(name)
    for attempt in range(2):
        with client.pipeline(transaction=False) as pipe:
            skip = _queue_calls(pipe, s, calls, register)
            replies = pipe.execute(raise_on_error=False)[skip:]
        if (done := _checked(replies, retry=not attempt)) is not None:
            return done
        client.script_load(s.source)
    raise AssertionError("unreachable")  # pragma: no cover


def _queue_calls(
    pipe: redis.client.Pipeline | aredis.client.Pipeline,
    s: Script,
    calls: Sequence[tuple[list[str], list[Any]]],
    register: tuple[str, list[str]] | None,
) -> int:
    """Queue the SADD (when there are members) and the calls; how many replies lead."""
    skip = 0
    if register is not None and register[1]:
        pipe.sadd(register[0], *register[1])
        skip = 1
    for keys, args in calls:
        pipe.evalsha(s.sha, len(keys), *keys, *args)
    return skip


def _checked(replies: list[Any], *, retry: bool) -> list[Any] | None:
    """The replies, raising the first error; ``None`` when a NOSCRIPT asks to load and retry."""
    if retry and any(isinstance(r, NoScriptError) for r in replies):
        return None
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return list(replies)


def refused(
    exc: BaseException, target: str, what: str, *, producer: bool = False
) -> ConnectionError | None:
    """The error to raise at once for a failure that retrying cannot mend (credentials refused,
    a TLS certificate not trusted; for a ``producer``, a Redis out of memory, which a web
    request should not wait for); ``None`` for the rest."""
    text = str(exc)
    if producer and isinstance(exc, OutOfMemoryError):
        why = "is out of memory (used memory is over maxmemory and the policy evicts nothing)"
        fix = "Nothing was written. Free memory, raise maxmemory or shorten RESULT_TTL; then retry"
    elif isinstance(exc, AuthenticationError) or text.startswith(("WRONGPASS", "NOAUTH")):
        why = "refused the credentials of the broker URL"
        fix = "Fix the user name or password in the URL (REPID_BROKER_URL)"
    elif isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        why = "presented a TLS certificate that was not trusted"
        fix = "Give ssl_ca_certs (the CA that signed the server's certificate) or fix the host name"
    else:
        return None
    return ConnectionError(f"Redis at {target} {why} during {what} ({exc}). {fix}.")


def retrying_sync[T](
    what: str,
    call: Callable[[], T],
    target: str,
    max_backoff: float,
    deadline: float,
    *,
    failures: list[BaseException] | None = None,
    producer: bool = False,
) -> T | None:
    """:func:`retrying` for sync callers: ``None`` once ``deadline`` (monotonic) has passed."""
    delay, failed = 0.05, False
    while True:
        try:
            result = call()
        except RETRYABLE as exc:
            if (fatal := refused(exc, target, what, producer=producer)) is not None:
                raise fatal from None
            if failures is not None:
                failures.append(exc)
            left = deadline - time.monotonic()
            if not failed:
                failed = True
                log.warning("Redis at %s unreachable during %s (%s); retrying", target, what, exc)
            if left <= 0:
                return None
            time.sleep(min(delay, left))
            delay = min(delay * 2, max_backoff)
            continue
        if failed:
            log.warning("Redis at %s reachable again; %s resumed", target, what)
        return result


async def retrying[T](
    what: str,
    call: Callable[[], Awaitable[T]],
    target: str,
    max_backoff: float,
    give_up: float | None = None,
    *,
    failures: list[BaseException] | None = None,
    producer: bool = False,
) -> T:
    """``call()`` again with back-off while Redis is unreachable; logs the outage once.

    ``give_up``: seconds of failure after which a ``ConnectionError`` naming ``target`` (a
    redacted URL) is raised; ``None``: never. Failures retrying cannot mend (see
    :func:`refused`) are raised at once. ``failures`` collects the errors retried.
    """
    delay, failing_since = 0.05, 0.0
    while True:
        try:
            result = await call()
        except RETRYABLE as exc:
            if (fatal := refused(exc, target, what, producer=producer)) is not None:
                raise fatal from None
            if failures is not None:
                failures.append(exc)
            now = time.monotonic()
            if not failing_since:
                failing_since = now
                log.warning("Redis at %s unreachable during %s (%s); retrying", target, what, exc)
            if give_up is not None and now - failing_since > give_up:
                raise ConnectionError(
                    f"Redis at {target} unreachable for {give_up:.0f}s during {what}: {exc}. "
                    "Check that Redis is running; retry later."
                ) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_backoff)
            continue
        if failing_since:
            log.warning("Redis at %s reachable again; %s resumed", target, what)
        return result
