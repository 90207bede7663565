"""What the loopback topologies (``tests/topologies.py``) share: a bounded wait, one-shot
commands to a node, and the data nodes' lifecycle (start, signal, restart, stop).

The data nodes are ``tests.redis_server.RedisServer`` processes (free port, own temp dir,
persistence off unless asked), so the binary choice is the suite's. Every started topology is
remembered until it is stopped, and an ``atexit`` hook stops what a failed test left running:
no redis-server outlives the interpreter (short of the interpreter itself being SIGKILLed).
"""

from __future__ import annotations

import atexit
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis

from .redis_server import RedisServer, test_binary

HOST = "127.0.0.1"
Address = tuple[str, int]

_running: set[Topology] = set()


@atexit.register
def _stop_all() -> None:
    """Stop every topology a test left running (a failed test, an interrupted session)."""
    for topology in list(_running):
        topology.stop()


def wait_until[T](
    probe: Callable[[], T | None], timeout: float, what: str, step: float = 0.05
) -> T:
    """``probe()`` once it is truthy, polling every ``step`` seconds; a ``TimeoutError`` naming
    ``what`` (and the last connection error) after ``timeout``. A probe that raises a Redis or
    socket error counts as "not yet": nodes restart, fail over and refuse connections while we
    wait for them."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = probe()
        except (redis.RedisError, OSError) as error:
            value, last = None, error
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout}s (last error: {last!r})")
        time.sleep(step)


def ask(port: int, *command: Any, password: str | None = None) -> Any:
    """One command to the node on ``port`` over a fresh connection, answers decoded (a
    fresh connection each time, so a restarted or killed node never leaves a stale one)."""
    with redis.Redis(
        host=HOST,
        port=port,
        password=password,
        decode_responses=True,
        socket_timeout=5.0,
        socket_connect_timeout=2.0,
    ) as client:
        return client.execute_command(*command)


def info_field(port: int, field: str, command: str = "INFO", password: str | None = None) -> str:
    """One ``field:value`` of an ``INFO``-like answer (``INFO``, ``CLUSTER INFO``) as text,
    ``""`` when the node does not report it. redis-py parses ``INFO`` into a dict but leaves
    ``CLUSTER INFO`` as text: both are read here."""
    answer = ask(port, *command.split(), password=password)
    if isinstance(answer, dict):
        return str(answer.get(field, ""))
    for line in str(answer).splitlines():
        if line.startswith(f"{field}:"):
            return line.partition(":")[2].strip()
    return ""


def signal_process(process: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Send ``sig`` to a running process and wait for it to end (SIGKILL after 10 s),
    unless the signal was SIGSTOP (a hung process, continued by SIGCONT)."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    if sig != signal.SIGSTOP:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


class Topology:
    """Data nodes by port, with what a fault test does to them: a signal, a restart, a stop.

    Subclasses build the topology in ``_build`` (a failed build stops what it started) and
    may stop more processes in ``stop``; ``with topology:`` starts and stops it.
    """

    def __init__(
        self,
        binary: str | None,
        *,
        password: str | None,
        appendonly: bool,
        timeout: float,
    ) -> None:
        self.binary = binary or test_binary()
        self.password = password
        self.appendonly = appendonly
        self.timeout = timeout
        self.servers: dict[int, RedisServer] = {}

    def _build(self) -> None:
        raise NotImplementedError

    def start(self) -> Self:
        """Start every process and wait (bounded) until the topology is ready."""
        _running.add(self)
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, extra: list[str], port: int | None = None) -> RedisServer:
        """Start one data node with ``extra`` options (on ``port``, default a free one); its
        log is ``redis.log`` in its dir."""
        directory = tempfile.mkdtemp(prefix="repid-topology-")
        # A replica's full sync starts at once (the default waits 5 s for more replicas), and
        # its offset moves every second even when idle (Redis 7's CLUSTER SLOTS leaves out a
        # replica whose offset is still 0: the default ping period would hide it for 10 s).
        extra = [*extra, "--logfile", f"{directory}/redis.log"]
        extra += ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]
        if self.password:
            extra += ["--masterauth", self.password]
        server = RedisServer(
            self.binary,
            appendonly=self.appendonly,
            directory=directory,
            extra=extra,
            password=self.password,
        )
        server.port = port or server.port
        self.servers[server.port] = server
        server.start(self.timeout)
        return server

    def ask(self, port: int, *command: Any) -> Any:
        """One command to the data node on ``port`` (with the topology's password)."""
        return ask(port, *command, password=self.password)

    def alive(self, port: int) -> bool:
        """Whether the node's process is running (a SIGSTOPped one counts as running)."""
        process = self.servers[port].process
        return process is not None and process.poll() is None

    def live_ports(self) -> list[int]:
        return [port for port in self.servers if self.alive(port)]

    def kill(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a node: SIGKILL (a crash, the default), SIGTERM (a clean shutdown),
        SIGSTOP (a hung node; ``resume`` continues it). Waits for the process to end unless
        the signal was SIGSTOP."""
        signal_process(self.servers[port].process, sig)

    def resume(self, port: int) -> None:
        """SIGCONT a node that ``kill(port, signal.SIGSTOP)`` froze."""
        process = self.servers[port].process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)

    def ready(self) -> bool:
        raise NotImplementedError

    def wait_ready(self, timeout: float | None = None) -> float:
        """Wait (bounded) until ``ready()``; the seconds it took."""
        began = time.monotonic()
        wait_until(self.ready, timeout or self.timeout, f"{type(self).__name__} ready")
        return time.monotonic() - began

    def restart(self, port: int) -> float:
        """Start a killed node again on its port and dir, with the options it first had, and
        wait until the topology is ready again: the seconds from the start to then (what the
        node comes back as is the subclass's story)."""
        began = time.monotonic()
        self.kill(port)
        self.servers[port].start(self.timeout)
        self.wait_ready()
        return time.monotonic() - began

    def _url(self, scheme: str, nodes: list[Address], tail: str = "") -> str:
        """``scheme://[:password@]host:port,host:port...tail``: the broker's URL forms."""
        auth = f":{self.password}@" if self.password else ""
        return f"{scheme}://{auth}" + ",".join(f"{host}:{port}" for host, port in nodes) + tail

    def logs(self, lines: int = 40) -> str:
        """The last ``lines`` of every process's log, for a failing test's message."""
        return "\n".join(
            f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for path in self._log_files()
            if path.exists()
        )

    def _log_files(self) -> list[Path]:
        return [server.directory / "redis.log" for server in self.servers.values()]

    def stop(self) -> None:
        """SIGKILL every node (no point in a clean shutdown of test data) and remove its dir."""
        for server in self.servers.values():
            server.kill()
            server.cleanup()
        _running.discard(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
