"""Adapter subprocesses: start, talk to (READY/GO/RESULT), sample memory, stop."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import psutil

HERE = Path(__file__).resolve().parent
LAUNCH = HERE / "peers" / "_launch.py"


class PhaseError(RuntimeError):
    pass


def command(
    python: str,
    lib: str,
    mode: str,
    n: int,
    redis_url: str,
    *,
    concurrency: int = 0,
    scenario: str = "noop",
) -> list[str]:
    script = HERE / "peers" / f"{lib}.py"
    return [
        python,
        "-P",
        str(LAUNCH),
        str(script),
        mode,
        str(n),
        "--redis",
        redis_url,
        "--concurrency",
        str(concurrency),
        "--scenario",
        scenario,
    ]


def environment(ctl_url: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.update(BENCH_CTL=ctl_url, PYTHONUNBUFFERED="1", **extra)
    return env


class Adapter:
    """One adapter process with a line reader on its stdout."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._log_file = log.open("a")
        self._log_file.write("$ " + " ".join(cmd[3:]) + "\n")
        self._log_file.flush()
        self.proc = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log_file,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(self.proc.stdout,), daemon=True).start()

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            if line.startswith(("READY", "RESULT ")):
                self.lines.put(line.rstrip("\n"))
            else:
                self._log_file.write(line)
        self.lines.put(None)

    def expect(self, prefix: str, deadline: float) -> str:
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise PhaseError(f"timed out waiting for {prefix}") from None
            if line is None:
                self.proc.wait(5)
                raise PhaseError(f"adapter exited with {self.proc.returncode}: {self.tail()}")
            if line.startswith(prefix):
                return line

    def result(self, deadline: float) -> dict[str, Any]:
        return dict(json.loads(self.expect("RESULT", deadline).removeprefix("RESULT ")))

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("GO\n")
        self.proc.stdin.flush()

    def tail(self) -> str:
        self._log_file.flush()
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return " | ".join(lines[-3:])[-400:]

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # children a forking library left behind
        self._log_file.close()


class RssSampler(threading.Thread):
    """Peak resident memory of process trees (the root and all its children), sampled."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pids = pids
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def sample(self) -> None:
        total = 0
        for pid in self.pids:
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            for proc in procs:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
        self.peak = max(self.peak, total)

    def vmhwm(self) -> int:
        """Sum of the kernel's own peak (VmHWM) of the root processes."""
        total = 0
        for pid in self.pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def finish(self) -> int:
        self.sample()
        self.peak = max(self.peak, self.vmhwm())
        self._stop.set()
        return self.peak
