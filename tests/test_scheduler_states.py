"""`_scheduled_functions` states and fields as Convex shapes them (model/src/scheduled_jobs), on the
`exact` test app with a manual clock: a function that cancels itself ends `canceled`; failed jobs
keep the error text Convex records; names are "module.js:export"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.deployment import Auth, Deployment
from engine.scheduler import ManualClock

APP = Path(__file__).resolve().parent / "apps" / "exact"
START = 1_800_000_000_000.0


async def ok(dep: Deployment, path: str, args: dict | None = None, kind: str = "mutation") -> Any:
    outcome = await dep.call(path, args or {}, kind=kind, auth=Auth(admin=True))
    assert outcome.success, outcome.error_message
    return outcome.value


async def test_a_mutation_that_cancels_itself_ends_canceled_and_keeps_its_writes(tmp_path):
    clock = ManualClock(START)
    dep = await Deployment.open(APP, tmp_path / "db.sqlite3", clock=clock)
    try:
        job_id = await ok(dep, "sched:schedule", {"which": "mutation"})
        pending = await ok(dep, "sched:job", {"id": job_id}, "query")
        assert pending == {"_id": job_id, "_creationTime": pending["_creationTime"], "name": "sched.js:selfCancellingMutation",
                           "args": [{}], "scheduledTime": START, "state": {"kind": "pending"}}
        clock.advance(seconds=1)
        await dep.scheduler.drain()
        job = await ok(dep, "sched:job", {"id": job_id}, "query")
        # It saw itself inProgress, canceled itself, and its other writes committed with it.
        assert await ok(dep, "sched:events", {}, "query") == ["mutation saw inProgress"]
        assert job == {**pending, "state": {"kind": "canceled"}, "completedTime": START + 1000}
    finally:
        await dep.close()


async def test_an_action_that_cancels_itself_ends_canceled(tmp_path):
    clock = ManualClock(START)
    dep = await Deployment.open(APP, tmp_path / "db.sqlite3", clock=clock)
    try:
        job_id = await ok(dep, "sched:schedule", {"which": "action"})
        await dep.scheduler.drain()
        job = await ok(dep, "sched:job", {"id": job_id}, "query")
        assert job["state"] == {"kind": "canceled"} and job["completedTime"] == START
        assert await ok(dep, "sched:events", {}, "query") == ["action canceled itself"]
        # Canceling it again changes nothing.
        await ok(dep, "sched:cancel", {"id": job_id})
        assert await ok(dep, "sched:job", {"id": job_id}, "query") == job
    finally:
        await dep.close()


async def test_success_failed_and_canceled_shapes(tmp_path):
    clock = ManualClock(START)
    dep = await Deployment.open(APP, tmp_path / "db.sqlite3", clock=clock)
    try:
        done = await ok(dep, "sched:schedule", {"which": "record"})
        failed = await ok(dep, "sched:schedule", {"which": "failing"})
        canceled = await ok(dep, "sched:schedule", {"which": "record", "delay": 1000.0})
        await ok(dep, "sched:cancel", {"id": canceled})  # before it is due: it never runs
        clock.advance(seconds=2)
        await dep.scheduler.drain()
        jobs = {i: await ok(dep, "sched:job", {"id": i}, "query") for i in (done, failed, canceled)}
        assert jobs[done]["state"] == {"kind": "success"} and jobs[done]["completedTime"] in (START, START + 2000)
        assert set(jobs[done]) == {"_id", "_creationTime", "name", "args", "scheduledTime", "completedTime", "state"}
        assert jobs[done]["args"] == [{"tag": "scheduled"}] and jobs[done]["name"] == "sched.js:record"
        state = jobs[failed]["state"]
        assert set(state) == {"kind", "error"} and state["kind"] == "failed"
        assert state["error"].startswith("Uncaught Error: scheduled failure\n    at failing (functions/sched.py:")
        assert jobs[canceled]["state"] == {"kind": "canceled"} and jobs[canceled]["completedTime"] == START
        assert await ok(dep, "sched:events", {}, "query") == ["scheduled"]
    finally:
        await dep.close()


async def test_a_job_whose_function_is_gone_fails_with_convexs_text(tmp_path):
    """The app changed between scheduling and running: the job fails with Convex's text for a
    module that no longer exports the function, or for a module that is gone."""
    import re
    import shutil

    def drop_function(source: str, name: str) -> str:
        # Remove one decorated function (decorator line through the blank lines after its body).
        return re.sub(rf"@internal_mutation[^\n]*\nasync def {name}\(.*?(?=\n@|\Z)", "", source, flags=re.S)

    texts = {}
    for case in ("function", "module"):
        app = tmp_path / case / "app"
        shutil.copytree(APP, app)
        clock = ManualClock(START)
        db = tmp_path / case / "db.sqlite3"
        dep = await Deployment.open(app, db, clock=clock)
        try:
            job_id = await ok(dep, "sched:schedule", {"which": "record", "delay": 1000.0})
        finally:
            await dep.close()
        sched = app / "functions" / "sched.py"
        if case == "function":
            sched.write_text(drop_function(sched.read_text(), "record"))
            assert "async def record(" not in sched.read_text() and "async def schedule(" in sched.read_text()
        else:
            (app / "functions" / "jobs.py").write_text(
                "from engine import query, v\n\n\n@query(args={'id': v.id('_scheduled_functions')})\n"
                "async def job(ctx, args):\n    return await ctx.db.system.get(args['id'])\n")
            sched.unlink()
        clock.advance(seconds=2)
        dep = await Deployment.open(app, db, clock=clock)
        try:
            await dep.scheduler.drain()
            path = "sched:job" if case == "function" else "jobs:job"
            job = await ok(dep, path, {"id": job_id}, "query")
            assert job["state"]["kind"] == "failed" and job["completedTime"] >= START + 1000, job
            texts[case] = job["state"]["error"]
        finally:
            await dep.close()
    assert texts == {"function": 'Couldn\'t find "record" in module "sched.js".',
                     "module": "Couldn't find JavaScript module 'sched.js'. Did you forget to run `npx convex dev`?"}
