"""What a crash of Redis loses, per persistence setting, measured on a real redis-server.

A producer enqueues jobs one at a time, each ``enqueue()`` returning only once Redis has
acknowledged it, and counts the acknowledgements; a timer SIGKILLs redis-server in the middle
of the stream. The server restarts on the same data directory and the test counts how many
acknowledged jobs are still there. Two kinds of crash:

* The process: redis-server is SIGKILLed (the OOM killer, a segfault). What it had written
  to its files stays in the kernel's page cache and is read back.
* The machine (power cut, kernel panic), simulated: redis-server runs with a small
  ``LD_PRELOAD`` library (C, compiled here; skipped without a C compiler) that notes the size of
  a file each time an ``fsync``/``fdatasync`` of it completes; after the SIGKILL every
  append-only file is cut back to its last synced size, which is what survives a power cut in
  the worst case (nothing written since the last fsync reached the disk).

And three settings:

* ``appendonly yes`` + ``appendfsync always``: no acknowledged job may be lost (either crash).
* ``appendonly yes`` + ``appendfsync everysec``: what was acknowledged in the last ``RECENT``
  seconds before the crash may be lost, nothing older (Redis fsyncs once a second, and holds a
  write back for up to two seconds while an fsync is slow).
* persistence off (``appendonly no``, no ``save`` points): everything is lost. The control: it
  shows that the count sees a loss when there is one.

In every case the survivors are a prefix of the acknowledged stream: a crash loses a tail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from repid_django import Connection, Job
from repid_django.engine.brokers.redis.broker import RedisMessageBroker

from ..redis_server import RedisServer

pytestmark = [pytest.mark.slow, pytest.mark.redis]
RECENT = 2.0
"""The ``everysec`` bound: acknowledged writes of the last RECENT seconds may be lost."""


class Case(NamedTuple):
    appendonly: bool
    fsync: str | None
    machine: bool
    """True: a crash of the machine (simulated), False: of the process."""
    seconds: float
    """How long the producer runs before the crash: for ``everysec``, longer than RECENT."""


CASES = {
    "always": Case(True, "always", False, 1.0),
    "everysec": Case(True, "everysec", False, RECENT + 0.5),
    "off": Case(False, None, False, 0.6),
    "always-machine": Case(True, "always", True, 1.0),
    "everysec-machine": Case(True, "everysec", True, RECENT + 0.5),
}

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* After each completed fsync/fdatasync: "<size before the call> <path>" to $SYNC_LOG. */
static int synced(int fd, const char *name) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, name);
    struct stat st;
    off_t size = fstat(fd, &st) == 0 ? st.st_size : -1;
    int result = real(fd);
    const char *log = getenv("SYNC_LOG");
    char link[64], path[4096], line[4200];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (result != 0 || size < 0 || !log || n < 0) return result;
    path[n] = 0;
    int len = snprintf(line, sizeof line, "%lld %s\n", (long long)size, path);
    int out = open(log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    if (out >= 0) {
        if (write(out, line, len) < 0) {}
        close(out);
    }
    return result;
}

int fsync(int fd) { return synced(fd, "fsync"); }
int fdatasync(int fd) { return synced(fd, "fdatasync"); }
"""


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path | None:
    """The compiled LD_PRELOAD library, or None without a C compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    folder = tmp_path_factory.mktemp("shim")
    (folder / "synclog.c").write_text(SHIM)
    built = folder / "synclog.so"
    args = [compiler, "-shared", "-fPIC", "-O2", "-o", str(built), str(folder / "synclog.c")]
    subprocess.run([*args, "-ldl"], check=True, capture_output=True)
    return built


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[str, Case]:
    return request.param, CASES[request.param]


@pytest.fixture
def server(
    case: tuple[str, Case], shim: Path | None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RedisServer]:
    _, (appendonly, fsync, machine, _) = case
    extra = ["--appendfsync", fsync] if fsync else []
    found = RedisServer(appendonly=appendonly, extra=extra)
    if machine:
        if shim is None:
            pytest.skip("no C compiler for the fsync-noting library")
        with monkeypatch.context() as env:  # only the server inherits these
            env.setenv("LD_PRELOAD", str(shim))
            env.setenv("SYNC_LOG", str(found.directory / "synced.log"))
            found.start()
    else:
        found.start()
    try:
        yield found
    finally:
        found.cleanup()


def drop_unsynced(directory: Path) -> None:
    """Cut every append-only file back to its size at its last completed fsync (a power cut)."""
    log = directory / "synced.log"
    assert log.exists(), "the fsync-noting library saw no fsync (a static redis-server?)"
    synced: dict[str, int] = {}
    for line in log.read_text().splitlines():
        size, _, path = line.partition(" ")
        synced[path] = max(int(size), synced.get(path, 0))
    for aof in directory.rglob("*.aof"):
        keep = synced.get(os.path.realpath(aof), 0)
        if aof.stat().st_size > keep:
            os.truncate(aof, keep)


class Stream:
    """The acknowledged enqueues, in order, with the time of each acknowledgement."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.acked_at: list[float] = []
        self.killed_at = 0.0

    def recent(self, seconds: float) -> int:
        """How many enqueues were acknowledged in the ``seconds`` before the kill (or after)."""
        return sum(1 for at in self.acked_at if at >= self.killed_at - seconds)

    @property
    def rate(self) -> float:
        """Acknowledged enqueues per second, one at a time."""
        span = self.acked_at[-1] - self.acked_at[0] if len(self.acked_at) > 1 else 0.0
        return (len(self.acked_at) - 1) / span if span > 0 else 0.0


def crash_while_enqueueing(server: RedisServer, prefix: str, seconds: float) -> Stream:
    """Enqueue one job at a time until a timer SIGKILLs ``server`` after ``seconds``."""
    stream = Stream()

    def crash() -> None:
        stream.killed_at = time.monotonic()
        server.kill()

    broker = RedisMessageBroker(server.url, prefix=prefix, enqueue_timeout=0.5)
    connection = Connection(broker)
    timer = threading.Timer(seconds, crash)
    timer.start()
    try:
        while True:
            job_id = f"job-{len(stream.ids)}"
            try:
                Job("record", queue="d", id_=job_id, connection=connection).enqueue()
            except Exception:
                if server.process is None or server.process.poll() is None:
                    raise  # Redis is up: a real failure, not the crash
                break
            stream.acked_at.append(time.monotonic())
            stream.ids.append(job_id)
    finally:
        timer.join()
        connection.close()
    return stream


def surviving(server: RedisServer, prefix: str, ids: list[str]) -> list[bool]:
    """For each of ``ids``: whether the restarted server still holds the job (body and queue)."""
    with server.client() as client:
        bodies = client.hmget(f"{prefix}:{{d}}:msgs", ids)
        queued = client.zmscore(f"{prefix}:{{d}}:ready", ids)
    found = [body is not None for body in bodies]
    # One enqueue writes body and queue entry in one script: a crash keeps both or neither.
    assert found == [score is not None for score in queued]
    return found


def test_a_redis_crash_loses_what_its_persistence_setting_says(
    case: tuple[str, Case], server: RedisServer, key_prefix: str
) -> None:
    name, (_, fsync, machine, seconds) = case
    stream = crash_while_enqueueing(server, key_prefix, seconds)
    acked = len(stream.ids)
    assert acked >= 20, "the stream was too short to say anything"
    if machine:
        drop_unsynced(server.directory)
    server.start()  # the same port and data directory: Redis loads what it kept on disk
    found = surviving(server, key_prefix, stream.ids)
    kept = sum(found)
    lost = acked - kept
    assert found == [True] * kept + [False] * lost  # a crash loses a tail, never a hole
    recent = stream.recent(RECENT)
    age = (
        f", acknowledged in the last {stream.killed_at - stream.acked_at[kept]:.2f}s"
        if lost
        else ""
    )
    print(
        f"\n{name}: {lost} of {acked} acknowledged enqueues lost{age} ({recent} were "
        f"acknowledged in the last {RECENT:g}s; {stream.rate:,.0f} enqueues/s, one at a time)"
    )
    if fsync == "always":
        assert lost == 0
    elif fsync == "everysec":
        assert lost <= recent  # nothing acknowledged more than RECENT seconds before the crash
        assert recent < acked  # ... and there was something older to keep
        if machine:
            assert lost > 0  # the simulation drops what was not synced: not vacuous
    else:
        assert kept == 0  # no persistence: the restart starts empty
