"""Results only when useful, from Django: tasks always store, ``RESULT_TTL`` applies, noops don't.

On the session's real redis-server (``conftest.py``), one key prefix per test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
from django.tasks import TaskResultStatus

from repid_django import Job
from repid_django.engine.message import decode
from tests.django.testapp import dj_tasks, tasks


def result_key(prefix: str, job_id: str, queue: str = "default") -> str:
    return f"{prefix}:{{{queue}}}:result:{job_id}"


def test_a_django_task_returning_none_still_gets_its_result(
    run_worker: Callable[..., str], redis_client: redis.Redis, key_prefix: str
) -> None:
    result = dj_tasks.asleep.enqueue(0)
    body = redis_client.hget(f"{key_prefix}:{{default}}:msgs", result.id)
    assert body is not None
    assert decode(body).store_result is True  # TaskResult is rebuilt from the stored result
    run_worker("--no-mirror")
    assert redis_client.exists(result_key(key_prefix, result.id))
    assert 0 < redis_client.pttl(result_key(key_prefix, result.id)) <= 3_600_000
    done = dj_tasks.asleep.get_result(result.id)
    assert done.status == TaskResultStatus.SUCCESSFUL
    assert done.return_value is None
    assert done.finished_at is not None


def test_result_ttl_setting_applies_to_default_jobs(
    run_worker: Callable[..., str],
    redis_client: redis.Redis,
    key_prefix: str,
    repid_settings: dict[str, Any],
    settings: Any,
) -> None:
    settings.REPID = {**repid_settings, "RESULT_TTL": 120}
    job = tasks.add.job().build(2, 3)
    assert (job.store_result, job.result_ttl) == (None, None)  # auto; the broker's RESULT_TTL
    job.enqueue()
    noop = Job("noop")
    noop.enqueue()
    run_worker("--no-mirror")
    assert 60_000 < redis_client.pttl(result_key(key_prefix, job.last_id or "")) <= 120_000
    assert not redis_client.exists(result_key(key_prefix, noop.last_id or ""))  # a None
    done = noop.result.value
    assert done is not None
    assert (done.success, done.stored) == (True, False)
    added = job.result.value
    assert added is not None
    assert added.data == 5
