"""``make clean`` stops the embedded Redis before it deletes ``.repid/``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from repid_django.engine.brokers.embedded import (
    embedded_running,
    ensure_embedded_redis,
    stop_embedded_redis,
)

MAKEFILE = Path(__file__).resolve().parents[2] / "Makefile"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_stops_the_embedded_redis_first(tmp_path: Path) -> None:
    """In a folder without a venv (so by the pid file): the server is stopped, not orphaned."""
    ensure_embedded_redis(tmp_path)
    pid = int((tmp_path / ".repid" / "redis.pid").read_text())
    try:
        done = subprocess.run(
            ["make", "--no-print-directory", "-f", str(MAKEFILE), "clean"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert f"stopping the embedded Redis (pid {pid})" in done.stdout
        assert not embedded_running(tmp_path)
        assert not Path(f"/proc/{pid}").exists()
        assert not (tmp_path / ".repid").exists()
    finally:
        stop_embedded_redis(tmp_path)
