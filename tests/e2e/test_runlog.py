"""The run-log audit of the kill test trips on each way a job can run twice without a kill.

Hand-written logs, no processes: the kill test (``test_redis_faults.py``) can only fail if its
audit can, so each rule is shown failing here on the smallest log that breaks it.
"""

from __future__ import annotations

from typing import Any

from .runlog import Audit, audit


def start(job: str, run: str, w: str, a: int = 0, lost: int = 0) -> dict[str, Any]:
    return {"e": "start", "job": job, "run": run, "w": w, "a": a, "lost": lost}


def end(job: str, run: str, w: str, ok: bool = True) -> dict[str, Any]:
    return {"e": "end", "job": job, "run": run, "w": w, "ok": ok}


def outcome(kind: str, job: str, run: str, w: str) -> dict[str, Any]:
    return {"e": kind, "job": job, "run": run, "w": w}


def kill(w: str) -> dict[str, Any]:
    return {"e": "kill", "w": w}


def result(run: str, attempt: int = 0) -> dict[str, Any]:
    return {"success": True, "data": {"n": 1, "run": run}, "attempt": attempt}


def check(log: list[dict[str, Any]], stored: str | None, **options: Any) -> Audit:
    return audit(log, {"j": None if stored is None else result(stored, **options)})


def test_one_run_one_result() -> None:
    report = check(
        [start("j", "r1", "A"), end("j", "r1", "A"), outcome("ack", "j", "r1", "A")], "r1"
    )
    assert report.problems == []


def test_a_run_in_flight_at_a_kill_runs_again_after_it() -> None:
    log = [start("j", "r1", "A"), kill("A"), start("j", "r2", "B", lost=1), end("j", "r2", "B")]
    report = check([*log, outcome("ack", "j", "r2", "B")], "r2")
    assert report.problems == []
    assert report.reran == 1


def test_a_finish_that_landed_just_before_the_kill_is_told_by_the_result() -> None:
    report = check([start("j", "r1", "A"), end("j", "r1", "A"), kill("A")], "r1")
    assert report.problems == []
    assert report.landed == 1


def test_a_failed_attempt_is_retried_with_the_next_attempt_number() -> None:
    log = [start("j", "r1", "A"), end("j", "r1", "A", ok=False), outcome("retry", "j", "r1", "A")]
    log += [start("j", "r2", "A", a=1), end("j", "r2", "A"), outcome("ack", "j", "r2", "A")]
    report = audit(log, {"j": result("r2", attempt=1)}, flaky=["j"])
    assert report.problems == []
    assert report.retried == 1


def test_trips_a_rerun_while_the_first_worker_lived() -> None:
    log = [start("j", "r1", "A"), start("j", "r2", "B", lost=1), kill("A"), end("j", "r2", "B")]
    (problem,) = check(log, "r2").problems
    assert "still in flight in a live worker" in problem


def test_trips_a_rerun_without_any_kill() -> None:
    log = [start("j", "r1", "A"), start("j", "r2", "B", lost=1), end("j", "r2", "B")]
    (problem,) = check(log, "r2").problems
    assert "its worker was not killed" in problem


def test_trips_a_rerun_after_a_lost_lease() -> None:
    log = [start("j", "r1", "A"), start("j", "r2", "B", lost=1), outcome("refused", "j", "r1", "A")]
    (problem,) = check(log, "r2").problems
    assert "ended 'refused'" in problem


def test_trips_a_job_that_succeeded_and_ran_again() -> None:
    log = [start("j", "r1", "A"), end("j", "r1", "A"), outcome("ack", "j", "r1", "A")]
    log += [kill("A"), start("j", "r2", "B", lost=1), outcome("ack", "j", "r2", "B")]
    problems = check(log, "r2").problems
    assert any("ended 'ack', yet r2 ran it again" in problem for problem in problems)


def test_trips_a_result_overwritten_by_a_later_run() -> None:
    log = [start("j", "r1", "A"), kill("A"), start("j", "r2", "B", lost=1)]
    (problem,) = check(log, "r1").problems
    assert "the result is from run r1, yet r2 ran after it" in problem


def test_trips_a_rerun_that_spent_an_attempt_without_a_failure() -> None:
    log = [start("j", "r1", "A"), end("j", "r1", "A"), kill("A"), start("j", "r2", "B", a=1)]
    problems = check(log, "r2", attempt=1).problems
    assert any("spent an attempt" in problem for problem in problems)


def test_trips_a_rerun_whose_lease_never_expired() -> None:
    log = [start("j", "r1", "A"), kill("A"), start("j", "r2", "B", lost=0)]
    (problem,) = check(log, "r2").problems
    assert "no expired lease counted" in problem


def test_trips_a_lost_job() -> None:
    assert check([start("j", "r1", "A"), kill("A")], None).problems == [
        "j has no successful result: None"
    ]
    assert audit([], {"j": None}).problems == ["j never ran"]
