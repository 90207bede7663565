"""``manage.py demo --check`` brings up the example site and a worker, runs a job, and stops."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def test_demo_check_runs_the_site_and_a_worker(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("REPID_", "DJANGO_"))},
        "DJANGO_SETTINGS_MODULE": "example_project.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        "REPID_BROKER_URL": redis_url,
        "REPID_PREFIX": key_prefix,
    }
    port = free_port()
    done = subprocess.run(
        [sys.executable, "manage.py", "demo", "--check", "--no-input", "--port", str(port)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "Created the demo superuser 'admin' with password 'admin'" in out
    assert f"http://127.0.0.1:{port}/" in out
    assert "Check passed" in out
    assert "Worker and web server stopped." in out
