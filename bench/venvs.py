"""One cached virtual environment per peer under bench/.venvs/<lib>, from bench/requirements."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENVS = HERE / ".venvs"
REQUIREMENTS = HERE / "requirements"


def base_python() -> str:
    """The interpreter the project venv was made from (Python >= 3.12)."""
    return getattr(sys, "_base_executable", None) or sys.executable


def pins(lib: str) -> dict[str, str]:
    out = {}
    for line in (REQUIREMENTS / f"{lib}.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            out[name.lower().replace("_", "-")] = version
    return out


def ensure(lib: str, log: Path) -> str:
    """Create (or reuse) the venv of ``lib`` and return its python."""
    req = REQUIREMENTS / f"{lib}.txt"
    digest = hashlib.sha256(req.read_bytes()).hexdigest()
    venv = VENVS / lib
    python = venv / "bin" / "python"
    marker = venv / ".bench-requirements"
    if python.exists() and marker.exists() and marker.read_text() == digest:
        return str(python)
    with log.open("a") as out:
        subprocess.run(
            [base_python(), "-m", "venv", "--clear", str(venv)],
            check=True,
            stdout=out,
            stderr=out,
            timeout=300,
        )
        subprocess.run(
            [
                str(python),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(req),
            ],
            check=True,
            stdout=out,
            stderr=out,
            timeout=900,
        )
    marker.write_text(digest)
    return str(python)
