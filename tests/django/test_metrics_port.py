"""``runworker --metrics-port``: a real worker process serves its metrics over HTTP."""

from __future__ import annotations

import queue
import re
import signal
import threading
import time
import urllib.request
from typing import IO

import pytest

from repid_django import Job

from .scrape import Samples, parse, value
from .test_runworker import runworker, worker_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]

SERVING = re.compile(r"serving Prometheus metrics on http://([^:/]+):(\d+)/metrics")


def lines_of(stream: IO[str]) -> tuple[queue.Queue[str], threading.Thread]:
    """The stream's lines, read by a thread (so a test can wait for one with a deadline)."""
    found: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:
            found.put(line)
        stream.close()

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return found, thread


def wait_for_line(
    lines: queue.Queue[str], pattern: re.Pattern[str], timeout: float
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
        except queue.Empty:
            break
        seen.append(line)
        match = pattern.search(line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern.pattern!r} in {timeout}s: {''.join(seen)}")


def fetch(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return parse(response.read().decode())[0]


def test_runworker_serves_its_metrics_on_a_port(redis_url: str, key_prefix: str) -> None:
    for tag in ("one", "two"):
        Job("record", args={"tag": tag}).enqueue()
    process = runworker(
        worker_env(redis_url, key_prefix), "--metrics-port", "127.0.0.1:0", "--queues", "default"
    )
    assert process.stderr is not None
    lines, reader = lines_of(process.stderr)
    try:
        port = int(wait_for_line(lines, SERVING, 60).group(2))
        deadline = time.monotonic() + 20
        samples = fetch(port)
        while value(samples, "repid_jobs_succeeded_total", actor="record", queue="default") < 2:
            assert time.monotonic() < deadline, "the worker's scrape never showed 2 successes"
            time.sleep(0.1)
            samples = fetch(port)
        assert value(samples, "repid_jobs_started_total", actor="record", queue="default") == 2
        assert value(samples, "repid_job_run_seconds_count", actor="record", queue="default") == 2
        assert value(samples, "repid_broker_up") == 1
        assert value(samples, "repid_queue_ready", queue="default") == 0
        assert value(samples, "repid_worker_heartbeat_timestamp_seconds") > time.time() - 30
        assert value(samples, "process_resident_memory_bytes") > 0  # the process's own
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        reader.join(10)
        assert process.stdout is not None
        process.stdout.close()


def test_a_port_in_use_is_a_clear_error(redis_url: str, key_prefix: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = runworker(
            worker_env(redis_url, key_prefix), "--metrics-port", f"127.0.0.1:{port}", "--burst"
        )
        _out, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    bad = runworker(worker_env(redis_url, key_prefix), "--metrics-port", "nine", "--burst")
    _out, err = bad.communicate(timeout=60)
    assert bad.returncode == 1
    assert "use PORT or HOST:PORT" in err
