"""py-spy on a worker during the work phase, and the hotspots of what it recorded."""

from __future__ import annotations

import collections
import contextlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


class Recorder:
    """``py-spy record`` (raw collapsed stacks) attached to one pid until ``stop()``.

    ``--gil``: only the thread holding the GIL is sampled, so the shares are of the Python work
    that competes for the one core an asyncio worker can use (idle waits are left out).
    """

    def __init__(self, pid: int, out: Path, rate: int = 250) -> None:
        tool = py_spy()
        if tool is None:
            raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
        self.out = out
        self.proc = subprocess.Popen(
            [
                tool,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _frame(frame: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rstrip(')').rsplit(':', 1)[0]).name})" if where else name


def hotspots(raw: Path, top: int = 15) -> str:
    """Self and inclusive shares of the busiest functions, as a markdown table."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    with contextlib.suppress(OSError):
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            n = int(count)
            frames = [_frame(f) for f in stack.split(";") if f]
            if not frames:
                continue
            total += n
            own[frames[-1]] += n
            for f in set(frames):
                incl[f] += n
    if not total:
        return "(no samples)"
    lines = ["| function | self | inclusive |", "|---|---|---|"]
    for name, n in own.most_common(top):
        lines.append(f"| `{name}` | {n / total:.1%} | {incl[name] / total:.1%} |")
    lines += ["", "| function (inclusive) | share |", "|---|---|"]
    for name, n in incl.most_common(top + 10):
        lines.append(f"| `{name}` | {n / total:.1%} |")
    return "\n".join(lines)
