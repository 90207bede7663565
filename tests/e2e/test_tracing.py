"""OpenTelemetry across processes: a request span in a producer process, its ``send`` span,
and the worker process's ``process`` spans (one per run, the failed first run marked an error)
in one trace; and nothing at all when OpenTelemetry is not configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from repid_django import Connection, InMemoryMessageBroker, Job
from repid_django.engine import tracing
from repid_django.engine.message import decode, encode

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("otel_worker.py")


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_the_run_spans_continue_the_trace_of_the_enqueue_across_processes(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    worker_spans, producer_spans = tmp_path / "worker.jsonl", tmp_path / "producer.jsonl"
    worker = subprocess.Popen(
        [sys.executable, str(SCRIPT), "worker", redis_url, key_prefix, str(worker_spans)],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert worker.stdout is not None
    assert worker.stdout.readline().strip() == b"ready"
    subprocess.run(
        [sys.executable, str(SCRIPT), "produce", redis_url, key_prefix, str(producer_spans)],
        env=env,
        check=True,
        timeout=30,
    )
    assert worker.wait(30) == 0
    worker.stdout.close()
    produced = {s["name"]: s for s in spans(producer_spans)}
    request, send = produced["request"], produced["send default"]
    assert send["kind"] == "PRODUCER"
    assert send["parent"] == request["span"]
    assert send["trace"] == request["trace"]
    runs = [s for s in spans(worker_spans) if s["name"] == "process default"]
    assert len(runs) == 2  # each run (the retry too) is a span of its own, in the same trace
    for run in runs:
        assert run["kind"] == "CONSUMER"
        assert run["trace"] == request["trace"]
        assert run["parent"] == send["span"]
        attributes = run["attributes"]
        assert attributes["messaging.system"] == "repid"
        assert attributes["messaging.destination.name"] == "default"
        assert attributes["messaging.message.id"] == send["attributes"]["messaging.message.id"]
    assert sorted((r["attributes"]["repid.attempt"], r["status"]) for r in runs) == [
        (1, "ERROR"),
        (2, "UNSET"),
    ]


async def test_without_a_configured_tracer_nothing_is_added() -> None:
    assert not tracing.enabled()  # the test process configures no provider
    broker = InMemoryMessageBroker()
    await broker.declare_queue("default")
    job = Job("x", connection=Connection(broker))
    message = job.to_message()
    assert message.trace is None
    assert b'"trace"' not in encode(message)


def test_a_bad_trace_field_is_dropped_not_the_job() -> None:
    good = Job("x").to_message()
    body = json.loads(encode(good))
    for bad in ({"traceparent": 5}, "00-abc", {"k": "v" * 600}, {f"k{i}": "v" for i in range(9)}):
        body["trace"] = bad
        assert decode(json.dumps(body)).trace is None
    body["trace"] = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    assert decode(json.dumps(body)).trace == body["trace"]
