"""The run log of the fault tests, and its audit: which runs of which jobs happened, and why.

Every run of a job by ``redis_worker.py`` appends JSON records to one Redis list,
``<prefix>:{e2e}:log``:

* ``start`` and ``end`` (``ok`` false when the actor raised), by the actor, with the job id,
  the worker, a run id, and the delivery's ``a`` (attempt: failed runs already spent) and
  ``lost`` (leases of the job that expired so far);
* what the broker did with the run's outcome, right after ``finish`` returned: ``ack``,
  ``retry``, ``dead``, ``reject``, or ``refused`` (the worker had lost the lease);
* ``kill``, by the test, once the SIGKILLed worker has been reaped (so after its last record).

Why one Redis list and not a file per worker: RPUSH returns once Redis holds the record, so
every record written exists outside the worker and survives its SIGKILL (Redis itself is not
killed in these tests); and Redis runs one command at a time, so the list is one total order
over every worker and the test. The audit compares positions in it, not the clocks of different
processes. (A file per worker, written with ``O_APPEND``, would survive a SIGKILL as well, but
would order nothing across workers.)

A record is written after the fact it reports, so a SIGKILL can take the last one with it: a
finish that Redis applied may have no record, and its run then looks unfinished. The stored
result settles it: the finish script writes it with the ack, and the actor puts its run id in it.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("ack", "retry", "dead", "reject", "refused")


@dataclass
class Run:
    job: str
    run: str
    worker: str
    attempt: int | None
    lost: int | None
    at: int
    """Position of the start record in the log."""
    ok: bool | None = None
    """From the end record: True done, False raised, None no end record."""
    outcome: str | None = None
    """What ``finish`` did (one of OUTCOMES); None: no record (cut short, or the record was)."""


@dataclass
class Audit:
    problems: list[str] = field(default_factory=list)
    runs: int = 0
    kills: int = 0
    reran: int = 0
    """Runs cut short by the SIGKILL of their worker, and run again."""
    landed: int = 0
    """Runs that look cut short by a kill, but whose finish reached Redis (the result is theirs)."""
    retried: int = 0
    """Runs that failed and were retried (``flaky`` jobs)."""


def parse(records: Iterable[Mapping[str, Any]]) -> tuple[dict[str, list[Run]], dict[str, int]]:
    """The runs of each job in start order, and where each killed worker's kill mark is."""
    runs: dict[str, list[Run]] = defaultdict(list)
    by_id: dict[str, Run] = {}
    killed: dict[str, int] = {}
    for at, record in enumerate(records):
        kind, worker = record["e"], record["w"]
        if kind == "kill":
            killed[worker] = at
        elif kind == "start":
            run = Run(record["job"], record["run"], worker, record["a"], record["lost"], at)
            runs[run.job].append(run)
            by_id[run.run] = run
        elif record.get("run") in by_id:
            run = by_id[record["run"]]
            if kind == "end":
                run.ok = record["ok"]
            else:
                run.outcome = kind
    return runs, killed


def audit(
    records: Iterable[Mapping[str, Any]],
    results: Mapping[str, Mapping[str, Any] | None],
    flaky: Iterable[str] = (),
) -> Audit:
    """Check the run log of jobs ``results`` (job id -> stored result) after a kill test.

    Every job succeeded, with the result of its last run; a run that did not finish was in
    flight in a worker when that worker was SIGKILLed, and ran again only after the kill; no
    run was followed by another after its success (or a lost lease); attempts (``a``) count the
    failed runs: 0 first, +1 after a retry, unchanged after a kill. ``flaky`` jobs fail their
    first attempt, the others never fail.
    """
    runs, killed = parse(records)
    report = Audit(runs=sum(map(len, runs.values())), kills=len(killed))
    flaky = set(flaky)
    for job, result in results.items():
        report.problems += _job(job, runs.get(job, []), result, killed, job in flaky, report)
    unknown = set(runs) - set(results)
    if unknown:
        report.problems.append(f"runs of jobs that were not enqueued: {sorted(unknown)[:5]}")
    return report


def _job(
    job: str,
    runs: list[Run],
    result: Mapping[str, Any] | None,
    killed: Mapping[str, int],
    flaky: bool,
    report: Audit,
) -> list[str]:
    if not runs:
        return [f"{job} never ran"]
    if result is None or result.get("success") is not True:
        return [f"{job} has no successful result: {result}"]
    problems = []
    last = runs[-1]
    data = result.get("data")
    committed = data.get("run") if isinstance(data, dict) else None
    if committed != last.run:
        problems.append(f"{job}: the result is from run {committed}, yet {last.run} ran after it")
    if last.outcome not in (None, "ack"):
        problems.append(f"{job}: its last run {last.run} ended {last.outcome!r}")
    if result.get("attempt") != last.attempt or last.attempt != (1 if flaky else 0):
        problems.append(f"{job}: result attempt {result.get('attempt')}, last run {last}")
    if runs[0].attempt != 0:
        problems.append(f"{job}: its first run has attempt {runs[0].attempt}")
    for run in runs:
        if run.ok is not None and run.ok != (not flaky or run.attempt != 0):
            problems.append(f"{job}: run {run.run} at attempt {run.attempt} ended ok={run.ok}")
    for run, rerun in itertools.pairwise(runs):
        problems += _rerun(job, run, rerun, killed, report)
    kill = killed.get(last.worker)
    if last.outcome is None and kill is not None and kill > last.at and committed == last.run:
        report.landed += 1
    return problems


def _rerun(job: str, run: Run, rerun: Run, killed: Mapping[str, int], report: Audit) -> list[str]:
    """What may lie between two runs of ``job``: a retry, or the SIGKILL of the first's worker."""
    if run.attempt is None or rerun.attempt is None or run.lost is None or rerun.lost is None:
        return [f"{job}: a run does not know its delivery: {run} {rerun}"]
    if run.outcome == "retry":
        report.retried += 1
        if run.ok is not False or rerun.attempt != run.attempt + 1 or rerun.lost < run.lost:
            return [f"{job}: {run} was retried as {rerun}"]
        return []
    if run.outcome is not None:  # ack, dead, reject or refused: a duplicate, not a rerun
        return [f"{job}: run {run.run} ended {run.outcome!r}, yet {rerun.run} ran it again"]
    kill = killed.get(run.worker)
    if kill is None or kill < run.at:
        return [f"{job}: run {run.run} did not finish and its worker was not killed during it, "
                f"yet {rerun.run} ran it again"]  # fmt: skip
    if rerun.at < kill:
        return [f"{job}: {rerun.run} ran it while {run.run} was still in flight in a live "
                f"worker (killed at log position {kill}, rerun started at {rerun.at})"]  # fmt: skip
    report.reran += 1
    # The kill let the lease expire (lost + 1), unless the run had failed and its retry was
    # recorded by the broker just before the kill (attempt + 1: the log lost that record).
    if rerun.attempt == run.attempt and rerun.lost < run.lost + 1:
        return [f"{job}: {rerun} after the kill of {run}: no expired lease counted"]
    if rerun.attempt == run.attempt + 1 and run.ok is not False:
        return [f"{job}: {rerun} spent an attempt after {run}, which did not fail"]
    if rerun.attempt not in (run.attempt, run.attempt + 1):
        return [f"{job}: {rerun} after {run}: attempts jump"]
    return []
