"""The broker's Lua scripts: loaded from ``lua/``, run with EVALSHA, reloaded on NOSCRIPT.

Each script is ``lua/common.lua`` (shared helpers) followed by its own file, so every state
change is one atomic script. Scripts are sent by SHA1; a server that does not know one yet
(first use, restart, ``SCRIPT FLUSH``) answers NOSCRIPT, and the script is loaded and the call
repeated (a NOSCRIPT call changed nothing, so repeating it is safe).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis
from redis.exceptions import NoScriptError

LUA_DIR = Path(__file__).with_name("lua")


@dataclass(frozen=True, slots=True)
class Script:
    name: str
    source: str
    sha: str


@cache
def script(name: str) -> Script:
    """The script ``lua/<name>.lua`` with the shared helpers in front."""
    common = (LUA_DIR / "common.lua").read_text(encoding="utf-8")
    source = common + "\n" + (LUA_DIR / f"{name}.lua").read_text(encoding="utf-8")
    return Script(name, source, hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest())


async def run(client: aredis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    """Run script ``name`` (one round trip once the server has it)."""
    s = script(name)
    try:
        return await client.evalsha(s.sha, len(keys), *keys, *args)
    except NoScriptError:
        await client.script_load(s.source)
        return await client.evalsha(s.sha, len(keys), *keys, *args)


def run_sync(client: redis.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    """:func:`run` for synchronous clients (the lease keeper thread)."""
    s = script(name)
    try:
        return client.evalsha(s.sha, len(keys), *keys, *args)
    except NoScriptError:
        client.script_load(s.source)
        return client.evalsha(s.sha, len(keys), *keys, *args)


def is_noscript(reply: object) -> bool:
    return isinstance(reply, NoScriptError)
