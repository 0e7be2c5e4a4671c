"""The scheduler: `ctx.scheduler` from mutations and actions, `_scheduled_functions`, and the loop.

Every test runs a real Deployment on an SQLite file with a ManualClock: time moves only when a test
advances it, and `scheduler.drain()` runs whatever is due at that moment. Restarts are real: the
Deployment is closed mid-run and reopened on the same file (and, in the slow test, a server process
is killed with SIGKILL).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.deployment import Auth, Deployment
from engine.scheduler import INTERRUPTED, ManualClock, to_ms

APP = Path(__file__).parent / "apps" / "sched"
START = datetime(2026, 3, 7, 12, 0, tzinfo=timezone.utc)
START_MS = START.timestamp() * 1000
ADMIN = Auth(admin=True)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
async def dep(tmp_path: Path, clock: ManualClock):
    d = await Deployment.open(APP, tmp_path / "db.sqlite3", clock=clock)
    yield d
    await d.close()


def _numbers(args: dict[str, Any] | None) -> dict[str, Any]:
    # Python ints are int64 in the value model; the functions take JavaScript-style numbers.
    return {k: float(v) if type(v) is int else v for k, v in (args or {}).items()}


async def call(dep: Deployment, path: str, args: dict[str, Any] | None = None) -> Any:
    outcome = await dep.call(path, _numbers(args), kind=None, auth=ADMIN)
    assert outcome.success, outcome.error_message
    return outcome.value


async def call_error(dep: Deployment, path: str, args: dict[str, Any] | None = None) -> str:
    outcome = await dep.call(path, _numbers(args), kind=None, auth=ADMIN)
    assert not outcome.success, f"{path} unexpectedly succeeded: {outcome.value!r}"
    return outcome.error_message or ""


async def events(dep: Deployment) -> list[str]:
    return await call(dep, "jobs:events")


async def job(dep: Deployment, job_id: str) -> dict[str, Any]:
    return await call(dep, "jobs:job", {"id": job_id})


def gates(dep: Deployment):
    """The app's `_gates` module as this Deployment loaded it."""
    return sys.modules[f"{dep.app.package}.functions._gates"]


async def until(dep: Deployment, predicate: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    """Wait, commit by commit (no polling on a timer), until `predicate()` holds."""
    changed = asyncio.Event()

    def listener(_ts: int) -> None:
        changed.set()

    dep.committer.listeners.append(listener)
    try:
        async with asyncio.timeout(timeout):
            while True:
                changed.clear()
                if await predicate():
                    return
                await changed.wait()
    finally:
        dep.committer.listeners.remove(listener)


# -- scheduling and running ----------------------------------------------------------------------
async def test_run_after_runs_at_exactly_the_due_time(dep: Deployment, clock: ManualClock) -> None:
    job_id = await call(dep, "jobs:schedule", {"delay": 5000, "tag": "a"})
    doc = await job(dep, job_id)
    assert doc["name"] == "jobs.js:record"  # Convex's spelling of the function path
    assert doc["args"] == [{"tag": "a"}]
    assert doc["scheduledTime"] == START_MS + 5000
    assert doc["state"] == {"kind": "pending"}
    assert "completedTime" not in doc

    clock.advance(4999)
    await dep.scheduler.drain()
    assert await events(dep) == []

    clock.advance(1)
    await dep.scheduler.drain()
    assert await events(dep) == ["a"]
    doc = await job(dep, job_id)
    assert doc["state"] == {"kind": "success"}
    assert doc["completedTime"] == START_MS + 5000


async def test_run_at_in_the_past_runs_at_once(dep: Deployment) -> None:
    job_id = await call(dep, "jobs:schedule_at", {"at": START_MS - 60_000, "tag": "past"})
    await dep.scheduler.drain()
    assert await events(dep) == ["past"]
    assert (await job(dep, job_id))["scheduledTime"] == START_MS - 60_000


async def test_jobs_run_when_due_in_order(dep: Deployment, clock: ManualClock) -> None:
    await call(dep, "jobs:schedule", {"delay": 2000, "tag": "second"})
    await call(dep, "jobs:schedule", {"delay": 1000, "tag": "first"})
    clock.advance(1000)
    await dep.scheduler.drain()
    assert await events(dep) == ["first"]
    clock.advance(1000)
    await dep.scheduler.drain()
    assert await events(dep) == ["first", "second"]


async def test_a_job_scheduled_for_now_by_a_job_runs_in_the_same_drain(dep: Deployment) -> None:
    await call(dep, "jobs:schedule", {"delay": 0, "tag": "x", "fn": "jobs:chain"})
    await dep.scheduler.drain()
    assert await events(dep) == ["x"]


async def test_scheduling_is_atomic_with_the_mutation(dep: Deployment) -> None:
    message = await call_error(dep, "jobs:schedule", {"delay": 0, "tag": "never", "fail": True})
    assert "failed after scheduling" in message
    assert await call(dep, "jobs:jobs") == []
    await dep.scheduler.drain()
    assert await events(dep) == []


async def test_scheduling_from_an_action_commits_at_once(dep: Deployment) -> None:
    # The action fails after scheduling: the job stays (actions are not transactions).
    message = await call_error(dep, "jobs:schedule_from_action", {"delay": 0, "tag": "kept", "fail": True})
    assert "the action failed after scheduling" in message
    jobs = await call(dep, "jobs:jobs")
    assert [(j["name"], j["state"]["kind"]) for j in jobs] == [("jobs.js:record", "pending")]
    await dep.scheduler.drain()
    assert await events(dep) == ["kept"]


async def test_scheduled_action_runs_once_and_records_success(dep: Deployment) -> None:
    job_id = await call(dep, "jobs:schedule_action", {"delay": 0, "tag": "t"})
    await dep.scheduler.drain()
    assert await events(dep) == ["t:started", "t:done"]
    doc = await job(dep, job_id)
    assert doc["state"] == {"kind": "success"} and doc["completedTime"] == START_MS
    await dep.scheduler.drain()
    assert await events(dep) == ["t:started", "t:done"]


# -- the loop on its own -------------------------------------------------------------------------
async def test_the_loop_wakes_for_a_new_job_and_at_the_due_time(dep: Deployment, clock: ManualClock) -> None:
    # No drain(): the background loop notices the commit, and later the clock reaching the due time.
    await call(dep, "jobs:schedule", {"delay": 0, "tag": "now"})

    async def has(tag: str) -> bool:
        return tag in await events(dep)

    await until(dep, lambda: has("now"))
    await call(dep, "jobs:schedule", {"delay": 60_000, "tag": "later"})
    clock.advance(59_999)
    await dep.scheduler.poll()  # lets the loop's own pass run too; nothing is due yet
    assert await events(dep) == ["now"]
    clock.advance(1)
    await until(dep, lambda: has("later"))
    assert await events(dep) == ["now", "later"]


# -- cancel --------------------------------------------------------------------------------------
async def test_canceled_jobs_never_run(dep: Deployment, clock: ManualClock) -> None:
    a = await call(dep, "jobs:schedule", {"delay": 1000, "tag": "a"})
    b = await call(dep, "jobs:schedule", {"delay": 1000, "tag": "b"})
    await call(dep, "jobs:cancel", {"id": a})
    await call(dep, "jobs:cancel_from_action", {"id": b})
    clock.advance(5000)
    await dep.scheduler.drain()
    assert await events(dep) == []
    for job_id in (a, b):
        doc = await job(dep, job_id)
        assert doc["state"] == {"kind": "canceled"}
        assert doc["completedTime"] == START_MS
    # Canceling a finished job changes nothing.
    c = await call(dep, "jobs:schedule", {"delay": 0, "tag": "c"})
    await dep.scheduler.drain()
    await call(dep, "jobs:cancel", {"id": c})
    assert (await job(dep, c))["state"] == {"kind": "success"}


async def test_cancel_while_the_mutation_runs_discards_it(dep: Deployment) -> None:
    job_id = await call(dep, "jobs:schedule", {"delay": 0, "tag": "raced", "hold": "h"})
    await dep.scheduler.poll()
    await gates(dep).started("h").wait()
    await call(dep, "jobs:cancel", {"id": job_id})  # commits while the job's mutation is mid-run
    gates(dep).gate("h").set()
    await dep.scheduler.drain()
    # The job's mutation read its job, saw the cancel as a conflict, re-ran, and stopped.
    assert await events(dep) == []
    assert (await job(dep, job_id))["state"] == {"kind": "canceled"}


# -- failures ------------------------------------------------------------------------------------
async def test_missing_functions_are_refused_when_scheduled_and_queries_fail_when_run(dep: Deployment) -> None:
    """Convex's rules and texts (udf/src/validation.rs validate_schedule_args; scheduled_jobs/mod.rs):
    scheduling a function that does not exist fails the scheduling function; a query can be
    scheduled, and its job fails when it comes due."""
    for name, text in (("nope:missing", "Attempted to schedule function at nonexistent path: nope.js"),
                       ("jobs:missing", "Attempted to schedule function, but no exported function missing found "
                                        "in the file: jobs.js. Did you forget to export it?")):
        message = await call_error(dep, "jobs:schedule_by_name", {"name": name, "delay": 0})
        assert f"\nUncaught Error: {text}\n    at async schedule_by_name (" in message, message
    a_query = await call(dep, "jobs:schedule_by_name", {"name": "jobs:ping", "delay": 0})
    await dep.scheduler.drain()
    doc = await job(dep, a_query)
    assert doc["completedTime"] == START_MS
    assert doc["state"] == {"kind": "failed", "error": 'Unsupported function type. FunctionName("ping") in module '
                            '"jobs.js" is defined as a Query. "\n                            "Only Mutation and '
                            'Action can be scheduled.'}


async def test_failing_jobs_record_the_error_and_keep_no_writes(dep: Deployment) -> None:
    m = await call(dep, "jobs:schedule_by_name", {"name": "jobs:boom", "delay": 0})
    a = await call(dep, "jobs:schedule_by_name", {"name": "jobs:act_fails", "delay": 0})
    bad_args = await call(dep, "jobs:schedule_by_name", {"name": "jobs:record", "delay": 0})
    await dep.scheduler.drain()
    # Convex records the error's whole text, frames included.
    failed_m, failed_a = (await job(dep, m))["state"], (await job(dep, a))["state"]
    assert failed_m["kind"] == failed_a["kind"] == "failed"
    assert failed_m["error"].startswith('Uncaught ConvexError: {"reason":"boom"}\n    at boom (functions/jobs.py:')
    assert failed_a["error"].startswith("Uncaught RuntimeError: the action broke\n    at act_fails (functions/jobs.py:")
    assert failed_m["error"].endswith(")\n") and failed_a["error"].endswith(")\n")
    state = (await job(dep, bad_args))["state"]
    assert state["kind"] == "failed" and state["error"].startswith("ArgumentValidationError:")
    assert await events(dep) == []  # boom's insert was rolled back


async def test_bad_scheduling_calls_fail_the_caller(dep: Deployment) -> None:
    assert "Uncaught Error: Invalid function path 'no such/path!'" in await call_error(
        dep, "jobs:schedule_by_name", {"name": "no such/path!", "delay": 0})
    assert await call(dep, "jobs:jobs") == []


def test_to_ms_accepts_datetimes_and_numbers() -> None:
    assert to_ms(START) == START_MS
    assert to_ms(datetime(2026, 3, 7, 12, 0)) == START_MS  # naive means UTC
    assert to_ms(5) == 5.0
    with pytest.raises(Exception, match="InvalidTimestamp"):
        to_ms("soon")


# -- system tables -------------------------------------------------------------------------------
async def test_system_tables_are_read_through_db_system_only(dep: Deployment) -> None:
    job_id = await call(dep, "jobs:schedule", {"delay": 1000, "tag": "s"})
    assert (await call(dep, "jobs:job_two_args", {"id": job_id}))["_id"] == job_id
    assert [j["_id"] for j in await call(dep, "jobs:jobs")] == [job_id]
    only_system = "Uncaught Error: System tables can only be accessed with db.system."  # Convex's texts
    for path in ("jobs:read_job_via_db", "jobs:patch_job", "jobs:delete_job"):
        assert only_system in await call_error(dep, path, {"id": job_id})
    assert only_system in await call_error(dep, "jobs:scan_jobs_via_db")
    assert "Uncaught Error: System tables (prefixed with `_`) are read-only." in await call_error(dep, "jobs:insert_job")
    assert "Uncaught Error: User tables cannot be accessed with db.system." in await call_error(
        dep, "jobs:system_reads_app_table")
    assert (await job(dep, job_id))["state"] == {"kind": "pending"}


async def test_system_table_numbers_are_stable_across_restarts(tmp_path: Path) -> None:
    dep = await Deployment.open(APP, tmp_path / "db.sqlite3", clock=ManualClock(START))
    numbers = {name: info.number for name, info in dep.catalog.by_name.items() if info.system}
    user = dep.catalog.by_name["events"].number
    await dep.close()
    dep = await Deployment.open(APP, tmp_path / "db.sqlite3", clock=ManualClock(START))
    try:
        assert {n: i.number for n, i in dep.catalog.by_name.items() if i.system} == numbers
        assert numbers == {"_scheduled_functions": 1, "_cron_jobs": 2, "_storage": 3, "_storage_keys": 4}
        assert dep.catalog.by_name["events"].number == user >= 10001
    finally:
        await dep.close()


# -- restarts ------------------------------------------------------------------------------------
async def test_a_mutation_cut_off_by_a_restart_runs_exactly_once(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    dep = await Deployment.open(APP, db, clock=ManualClock(START))
    job_id = await call(dep, "jobs:schedule", {"delay": 0, "tag": "once", "hold": "h"})
    await dep.scheduler.poll()
    await gates(dep).started("h").wait()
    await dep.close()  # mid-run: nothing of the job's mutation was committed

    dep = await Deployment.open(APP, db, clock=ManualClock(START_MS + 1000))
    try:
        assert await events(dep) == []
        gates(dep).gate("h").set()
        await dep.scheduler.drain()
        assert await events(dep) == ["once"]
        assert (await job(dep, job_id))["state"] == {"kind": "success"}
    finally:
        await dep.close()

    # Once committed, it never runs again.
    dep = await Deployment.open(APP, db, clock=ManualClock(START_MS + 2000))
    try:
        await dep.scheduler.drain()
        assert await events(dep) == ["once"]
    finally:
        await dep.close()


async def test_an_action_cut_off_by_a_restart_is_failed_not_rerun(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    dep = await Deployment.open(APP, db, clock=ManualClock(START))
    job_id = await call(dep, "jobs:schedule_action", {"delay": 0, "tag": "a", "hold": "h"})
    await dep.scheduler.poll()
    await gates(dep).started("h").wait()
    state = (await job(dep, job_id))["state"]
    # Convex's inProgress state names the run: its request id (16 hex) and execution id (a UUID).
    assert state == {"kind": "inProgress", "requestId": state["requestId"], "executionId": state["executionId"]}
    assert len(state["requestId"]) == 16 and len(state["executionId"]) == 36
    await dep.close()

    dep = await Deployment.open(APP, db, clock=ManualClock(START_MS + 1000))
    try:
        doc = await job(dep, job_id)
        assert doc["state"] == {"kind": "failed", "error": INTERRUPTED}
        assert doc["completedTime"] == START_MS + 1000
        await dep.scheduler.drain()
        assert await events(dep) == ["a:started"]
    finally:
        await dep.close()


async def test_a_job_due_while_down_runs_on_start(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    dep = await Deployment.open(APP, db, clock=ManualClock(START))
    job_id = await call(dep, "jobs:schedule", {"delay": 60_000, "tag": "late"})
    await dep.close()

    dep = await Deployment.open(APP, db, clock=ManualClock(START_MS + 3_600_000))
    try:
        async def ran() -> bool:
            return await events(dep) == ["late"]

        await until(dep, ran)  # the loop starts with the deployment; no drain() needed
        doc = await job(dep, job_id)
        assert doc["state"] == {"kind": "success"} and doc["completedTime"] == START_MS + 3_600_000
    finally:
        await dep.close()


# -- a real server killed with SIGKILL -----------------------------------------------------------
def _post(server: Any, kind: str, path: str, args: dict[str, Any]) -> Any:
    response = httpx.post(f"{server.url}/api/{kind}", json={"path": path, "args": args, "format": "json"},
                          timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    return body["value"]


def _wait_for(server: Any, predicate: Callable[[], bool], what: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{server.log_tail()}")
        try:  # paces the checks on the server process itself, and notices if it died
            code = server.proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        pytest.fail(f"server exited with {code} while waiting for {what}\n{server.log_tail()}")


@pytest.mark.slow
def test_exactly_once_across_sigkill(server_factory: Any) -> None:
    server = server_factory(APP)
    action_job = _post(server, "mutation", "jobs:schedule_action", {"delay": 0, "tag": "a", "hold": "h"})
    _wait_for(server, lambda: "a:started" in _post(server, "query", "jobs:events", {}), "the action to start")
    soon = _post(server, "mutation", "jobs:schedule", {"delay": 1500, "tag": "m"})
    server.kill()  # SIGKILL: no shutdown, no flush beyond what SQLite already has

    server.start()
    assert _post(server, "query", "jobs:job", {"id": action_job})["state"] == {"kind": "failed", "error": INTERRUPTED}
    _wait_for(server, lambda: _post(server, "query", "jobs:job", {"id": soon})["state"]["kind"] == "success",
              "the mutation job to run")
    assert sorted(_post(server, "query", "jobs:events", {})) == ["a:started", "m"]

    server.restart()  # a clean restart runs nothing again
    assert sorted(_post(server, "query", "jobs:events", {})) == ["a:started", "m"]


async def test_the_backlog_gauge_counts_due_jobs_not_yet_started(dep: Deployment, clock: ManualClock) -> None:
    """convex_scheduled_functions_due: jobs due at the loop's last pass that it could not start
    (every slot taken), and none once they ran."""
    from prometheus_client import generate_latest

    from engine import metrics

    def due_gauge() -> float:
        for line in generate_latest(metrics.REGISTRY).decode().splitlines():
            if line.startswith("convex_scheduled_functions_due "):
                return float(line.split()[1])
        raise AssertionError("no convex_scheduled_functions_due sample")

    metrics.attach(dep)
    dep.scheduler.max_running = 0  # every slot taken
    for i in range(3):
        await call(dep, "jobs:schedule", {"delay": 0, "tag": f"t{i}"})
    await call(dep, "jobs:schedule", {"delay": 60_000, "tag": "later"})  # not due: not counted
    await dep.scheduler.poll()
    assert await events(dep) == []
    assert due_gauge() == 3
    dep.scheduler.max_running = 16
    await dep.scheduler.drain()
    assert await events(dep) == ["t0", "t1", "t2"]
    assert due_gauge() == 0
