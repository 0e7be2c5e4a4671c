"""Cron jobs: the `cron_jobs()` registry, `_cron_jobs`, and runs driven by an injected clock.

Each test copies the scheduler test app (tests/apps/sched) and writes its own `crons.py`; cron
targets in `functions/ticks.py` insert an `events` row tagged with the job. The ManualClock moves
only when a test sets it, and `dep.crons.drain()` runs whatever is due at that moment, so "fires at
exactly 23:30" is checked as "not at 23:29:59.999, once at 23:30:00.000".
"""

from __future__ import annotations

import shutil
import sys
import textwrap
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from engine import EngineError, cron_jobs, cronJobs
from engine.cron import CronSchedule
from engine.deployment import Auth, Deployment
from engine.scheduler import INTERRUPTED, ManualClock

APP = Path(__file__).parent / "apps" / "sched"
UTC = timezone.utc
SATURDAY = datetime(2026, 3, 7, tzinfo=UTC)  # 2026-03-07 is a Saturday


def ms(moment: datetime) -> float:
    return moment.timestamp() * 1000


def app_with_crons(tmp_path: Path, body: str, name: str = "app") -> Path:
    app = tmp_path / name
    if app.exists():
        shutil.rmtree(app)
    shutil.copytree(APP, app, ignore=shutil.ignore_patterns("__pycache__"))
    source = "from engine import cron_jobs, internal\n\ncrons = cron_jobs()\n" + textwrap.dedent(body)
    (app / "crons.py").write_text(source)
    return app


async def events(dep: Deployment) -> list[str]:
    outcome = await dep.call("jobs:events", {}, kind="query", auth=Auth(admin=True))
    assert outcome.success, outcome.error_message
    return outcome.value


async def cron_docs(dep: Deployment) -> dict[str, dict[str, Any]]:
    outcome = await dep.call("jobs:crons", {}, kind="query", auth=Auth(admin=True))
    assert outcome.success, outcome.error_message
    return {doc["name"]: doc for doc in outcome.value}


def gates(dep: Deployment):
    return sys.modules[f"{dep.app.package}.functions._gates"]


class Run:
    """A deployment of an app with a crons.py, on a ManualClock; `at(t)` moves there and drains."""

    def __init__(self, dep: Deployment, clock: ManualClock) -> None:
        self.dep = dep
        self.clock = clock
        self.seen = 0

    @classmethod
    async def open(cls, app: Path, db: Path, start: datetime) -> Run:
        clock = ManualClock(start)
        return cls(await Deployment.open(app, db, clock=clock), clock)

    async def at(self, moment: datetime) -> list[str]:
        """Set the clock, run what is due, and return the events recorded since the last call."""
        self.clock.set(moment)
        await self.dep.crons.drain()
        all_events = await events(self.dep)
        new, self.seen = all_events[self.seen:], len(all_events)
        return new


# -- the registry --------------------------------------------------------------------------------
def test_registry_shapes_and_the_camel_case_alias() -> None:
    crons = cronJobs()
    crons.interval("i", {"minutes": 5}, "ticks:tick", {"tag": "i"})
    crons.cron("c", "2,17,32,47 * * * *", "ticks:tick")
    crons.hourly("h", {"minuteUTC": 7}, "ticks:tick")
    crons.daily("d", {"hourUTC": 23, "minuteUTC": 30}, "ticks:tick")
    crons.weekly("w", {"dayOfWeek": "sunday", "hourUTC": 3, "minuteUTC": 0}, "ticks:tick")
    crons.monthly("m", {"day": 1, "hourUTC": 16, "minuteUTC": 0}, "ticks:tick")
    specs = {name: job.schedule.spec for name, job in crons.jobs.items()}
    assert specs == {
        "i": {"type": "interval", "seconds": 300.0},
        "c": {"type": "cron", "cron": "2,17,32,47 * * * *"},
        "h": {"type": "hourly", "minuteUTC": 7},
        "d": {"type": "daily", "hourUTC": 23, "minuteUTC": 30},
        "w": {"type": "weekly", "dayOfWeek": "sunday", "hourUTC": 3, "minuteUTC": 0},
        "m": {"type": "monthly", "day": 1, "hourUTC": 16, "minuteUTC": 0},
    }
    assert crons.jobs["i"].args == {"tag": "i"} and crons.jobs["c"].args == {}
    assert cron_jobs is cronJobs


@pytest.mark.parametrize("register, message", [
    (lambda c: c.cron("bad", "61 * * * *", "ticks:tick"), 'Cron job "bad": "61 * * * *" is not a valid cron expression'),
    (lambda c: c.cron("short", "* * * *", "ticks:tick"), 'Cron job "short": "* * * *" is not a valid cron expression'),
    (lambda c: c.cron("seconds", "0 0 * * * *", "ticks:tick"), '"0 0 * * * *" is not a valid cron expression'),
    (lambda c: c.interval("none", {}, "ticks:tick"), 'Cron job "none": an interval needs exactly one of'),
    (lambda c: c.interval("two", {"minutes": 1, "seconds": 5}, "ticks:tick"), "exactly one of seconds"),
    (lambda c: c.interval("neg", {"hours": 0}, "ticks:tick"), 'Cron job "neg": the interval must be a positive number'),
    (lambda c: c.hourly("h", {"minuteUTC": 60}, "ticks:tick"), 'Cron job "h": minuteUTC must be an integer from 0 to 59'),
    (lambda c: c.daily("d", {"hourUTC": 24, "minuteUTC": 0}, "ticks:tick"), "hourUTC must be an integer from 0 to 23"),
    (lambda c: c.daily("d", {"hourUTC": 1}, "ticks:tick"), "missing schedule field(s) minuteUTC"),
    (lambda c: c.weekly("w", {"dayOfWeek": "funday", "hourUTC": 3, "minuteUTC": 0}, "ticks:tick"),
     'Cron job "w": dayOfWeek must be one of sunday'),
    (lambda c: c.monthly("m", {"day": 0, "hourUTC": 3, "minuteUTC": 0}, "ticks:tick"), "day must be an integer from 1 to 31"),
    (lambda c: c.cron("args", "* * * * *", "ticks:tick", ["not", "an", "object"]), 'Cron job "args": args must be an object'),
])
def test_bad_registrations_name_the_job(register: Any, message: str) -> None:
    with pytest.raises(EngineError) as info:
        register(cron_jobs())
    assert message in info.value.message


def test_a_duplicate_name_is_an_error_naming_it() -> None:
    crons = cron_jobs()
    crons.daily("standup", {"hourUTC": 9, "minuteUTC": 0}, "ticks:tick")
    with pytest.raises(EngineError, match='Cron job "standup" is registered twice'):
        crons.hourly("standup", {"minuteUTC": 0}, "ticks:tick")


def test_schedules_compute_utc_times() -> None:
    daily = CronSchedule.from_spec({"type": "daily", "hourUTC": 23, "minuteUTC": 30})
    assert daily.first_run(ms(SATURDAY)) == ms(SATURDAY.replace(hour=23, minute=30))
    weekly = CronSchedule.from_spec({"type": "weekly", "dayOfWeek": "sunday", "hourUTC": 3, "minuteUTC": 0})
    assert weekly.first_run(ms(SATURDAY)) == ms(datetime(2026, 3, 8, 3, 0, tzinfo=UTC))
    monthly = CronSchedule.from_spec({"type": "monthly", "day": 31, "hourUTC": 0, "minuteUTC": 0})
    assert monthly.next_after(ms(datetime(2026, 3, 31, tzinfo=UTC))) == ms(datetime(2026, 5, 31, tzinfo=UTC))
    interval = CronSchedule.from_spec({"type": "interval", "seconds": 60.0})
    assert interval.advance(0.0, 150_000.0) == (180_000.0, 2)  # 60 s and 120 s passed over
    assert interval.advance(0.0, 60_000.0) == (60_000.0, 0)


# -- load errors ---------------------------------------------------------------------------------
@pytest.mark.parametrize("body, message", [
    ('crons.daily("twice", {"hourUTC": 1, "minuteUTC": 0}, "ticks:tick", {"tag": "a"})\n'
     'crons.daily("twice", {"hourUTC": 2, "minuteUTC": 0}, "ticks:tick", {"tag": "b"})\n',
     'Cron job "twice" is registered twice'),
    ('crons.cron("broken", "*/90 * * * * *", "ticks:tick", {"tag": "a"})\n',
     'Cron job "broken": "*/90 * * * * *" is not a valid cron expression'),
    ('crons.cron("ghost", "* * * * *", "ticks:nope", {"tag": "a"})\n',
     'Cron job "ghost" runs ticks:nope, which does not exist'),
    ('crons.cron("reader", "* * * * *", "jobs:events")\n',
     'Cron job "reader" runs jobs:events, which is a query'),
])
async def test_bad_crons_fail_the_load_naming_the_job(tmp_path: Path, body: str, message: str) -> None:
    app = app_with_crons(tmp_path, body)
    with pytest.raises(EngineError) as info:
        await Deployment.open(app, tmp_path / "db.sqlite3", clock=ManualClock(SATURDAY))
    assert message in info.value.message


# -- firing at the right times -------------------------------------------------------------------
STAGGERED = {"a": {0, 15, 30, 45}, "b": {2, 17, 32, 47}, "c": {4, 19, 34, 49}, "d": {6, 21, 36, 51}}


async def test_staggered_minute_lists_fire_on_their_minutes(tmp_path: Path) -> None:
    app = app_with_crons(tmp_path, """
        crons.cron("sync a", "0,15,30,45 * * * *", internal.ticks.tick, {"tag": "a"})
        crons.cron("sync b", "2,17,32,47 * * * *", internal.ticks.tick, {"tag": "b"})
        crons.cron("sync c", "4,19,34,49 * * * *", internal.ticks.tick, {"tag": "c"})
        crons.cron("sync d", "6,21,36,51 * * * *", internal.ticks.tick, {"tag": "d"})
    """)
    start = SATURDAY.replace(hour=11, minute=59, second=30)
    run = await Run.open(app, tmp_path / "db.sqlite3", start)
    try:
        assert await run.at(start) == []
        for minute in range(0, 61):
            moment = SATURDAY.replace(hour=12) + timedelta(minutes=minute)
            assert await run.at(moment - timedelta(milliseconds=1)) == [], moment
            fired = await run.at(moment)
            expected = sorted(tag for tag, minutes in STAGGERED.items() if minute % 60 in minutes)
            assert sorted(fired) == expected, moment
        docs = await cron_docs(run.dep)
        assert docs["sync a"]["lastRun"]["scheduledTime"] == ms(SATURDAY.replace(hour=13))
        assert docs["sync a"]["nextRun"] == ms(SATURDAY.replace(hour=13, minute=15))
        assert docs["sync d"]["nextRun"] == ms(SATURDAY.replace(hour=13, minute=6))
        assert all(doc["skippedRuns"] == 0 for doc in docs.values())
    finally:
        await run.dep.close()


async def test_daily_and_weekly_jobs_fire_at_their_utc_times(tmp_path: Path) -> None:
    app = app_with_crons(tmp_path, """
        crons.daily("standup", {"hourUTC": 23, "minuteUTC": 30}, internal.ticks.tick, {"tag": "daily"})
        crons.weekly("digest", {"dayOfWeek": "sunday", "hourUTC": 3, "minuteUTC": 0}, internal.ticks.tick,
                     {"tag": "weekly"})
    """)
    run = await Run.open(app, tmp_path / "db.sqlite3", SATURDAY.replace(hour=10))
    try:
        docs = await cron_docs(run.dep)
        assert docs["standup"]["nextRun"] == ms(datetime(2026, 3, 7, 23, 30, tzinfo=UTC))
        assert docs["digest"]["nextRun"] == ms(datetime(2026, 3, 8, 3, 0, tzinfo=UTC))
        ms1 = timedelta(milliseconds=1)
        timeline = [
            (datetime(2026, 3, 7, 23, 30, tzinfo=UTC), ["daily"]),
            (datetime(2026, 3, 8, 3, 0, tzinfo=UTC), ["weekly"]),
            (datetime(2026, 3, 8, 23, 30, tzinfo=UTC), ["daily"]),
            (datetime(2026, 3, 14, 23, 30, tzinfo=UTC), ["daily"]),  # days in between: see below
            (datetime(2026, 3, 15, 3, 0, tzinfo=UTC), ["weekly"]),
        ]
        for moment, expected in timeline:
            if moment.day == 14:
                for day in range(9, 14):  # every day at 23:30, never the weekly job
                    assert await run.at(datetime(2026, 3, day, 23, 30, tzinfo=UTC)) == ["daily"]
            assert await run.at(moment - ms1) == [], moment
            assert await run.at(moment) == expected, moment
            assert await run.at(moment + timedelta(minutes=1)) == [], moment
        docs = await cron_docs(run.dep)
        assert docs["digest"]["nextRun"] == ms(datetime(2026, 3, 22, 3, 0, tzinfo=UTC))
        assert docs["digest"]["lastRun"] == {"ts": ms(datetime(2026, 3, 15, 3, 0, tzinfo=UTC)),
                                             "scheduledTime": ms(datetime(2026, 3, 15, 3, 0, tzinfo=UTC)),
                                             "outcome": "success"}
    finally:
        await run.dep.close()


async def test_an_interval_runs_at_deploy_then_every_interval(tmp_path: Path) -> None:
    app = app_with_crons(tmp_path, 'crons.interval("beat", {"minutes": 10}, internal.ticks.tick, {"tag": "beat"})\n')
    start = SATURDAY.replace(hour=9)
    run = await Run.open(app, tmp_path / "db.sqlite3", start)
    try:
        assert await run.at(start) == ["beat"]
        assert await run.at(start + timedelta(minutes=9, seconds=59)) == []
        assert await run.at(start + timedelta(minutes=10)) == ["beat"]
        assert await run.at(start + timedelta(minutes=20)) == ["beat"]
    finally:
        await run.dep.close()


# -- outcomes, overlap, restarts -----------------------------------------------------------------
async def test_a_failing_run_is_recorded_and_the_job_goes_on(tmp_path: Path) -> None:
    app = app_with_crons(tmp_path, 'crons.hourly("flaky", {"minuteUTC": 5}, internal.ticks.fail, {"tag": "f"})\n')
    run = await Run.open(app, tmp_path / "db.sqlite3", SATURDAY.replace(hour=9))
    try:
        assert await run.at(SATURDAY.replace(hour=9, minute=5)) == []  # its insert was rolled back
        doc = (await cron_docs(run.dep))["flaky"]
        assert doc["lastRun"]["outcome"] == "failed"
        assert doc["lastRun"]["error"].startswith("Uncaught ValueError: cron f failed\n    at ")
        assert doc["nextRun"] == ms(SATURDAY.replace(hour=10, minute=5))
        assert doc["state"] == {"kind": "pending"}
    finally:
        await run.dep.close()


async def test_a_run_that_overlaps_the_next_skips_it(tmp_path: Path) -> None:
    app = app_with_crons(tmp_path, 'crons.interval("slow", {"minutes": 1}, internal.ticks.slow, {"tag": "s"})\n')
    start = SATURDAY.replace(hour=9)
    run = await Run.open(app, tmp_path / "db.sqlite3", start)
    dep = run.dep
    try:
        await dep.crons.poll()
        await gates(dep).started("s").wait()
        assert (await cron_docs(dep))["slow"]["state"] == {"kind": "inProgress"}
        run.clock.set(start + timedelta(minutes=5, seconds=30))
        await dep.crons.poll()  # five planned runs have passed; none starts while one is running
        assert await events(dep) == ["s:started"]
        gates(dep).gate("s").set()
        await dep.crons.drain()
        assert await events(dep) == ["s:started", "s:done"]
        doc = (await cron_docs(dep))["slow"]
        assert doc["skippedRuns"] == 5
        assert doc["nextRun"] == ms(start + timedelta(minutes=6))
        assert doc["lastRun"]["outcome"] == "success"
        assert doc["lastRun"]["ts"] == ms(start)
        run.seen = 2
        assert await run.at(start + timedelta(minutes=6)) == ["s:started", "s:done"]
    finally:
        await dep.close()


async def test_runs_missed_while_down_are_skipped_not_piled_up(tmp_path: Path) -> None:
    app = app_with_crons(tmp_path, 'crons.cron("q", "0,15,30,45 * * * *", internal.ticks.tick, {"tag": "q"})\n')
    db = tmp_path / "db.sqlite3"
    run = await Run.open(app, db, SATURDAY.replace(hour=11, minute=50))
    await run.dep.close()

    # Down from 11:50 to 13:20: six planned runs (12:00 ... 13:15) passed. Like Convex, the job runs
    # once when the server is back (for the first of them) and the other five are skipped.
    run = await Run.open(app, db, SATURDAY.replace(hour=13, minute=20))
    try:
        assert await run.at(SATURDAY.replace(hour=13, minute=20)) == ["q"]
        doc = (await cron_docs(run.dep))["q"]
        assert doc["skippedRuns"] == 5
        assert doc["lastRun"]["scheduledTime"] == ms(SATURDAY.replace(hour=12))
        assert doc["nextRun"] == ms(SATURDAY.replace(hour=13, minute=30))
        assert await run.at(SATURDAY.replace(hour=13, minute=29)) == []
        assert await run.at(SATURDAY.replace(hour=13, minute=30)) == ["q"]
    finally:
        await run.dep.close()


async def test_an_action_run_cut_off_by_a_restart_is_recorded_failed(tmp_path: Path) -> None:
    app = app_with_crons(tmp_path, 'crons.interval("slow", {"minutes": 1}, internal.ticks.slow, {"tag": "s"})\n')
    db = tmp_path / "db.sqlite3"
    start = SATURDAY.replace(hour=9)
    run = await Run.open(app, db, start)
    await run.dep.crons.poll()
    await gates(run.dep).started("s").wait()
    await run.dep.close()

    run = await Run.open(app, db, start + timedelta(seconds=30))
    try:
        doc = (await cron_docs(run.dep))["slow"]
        assert doc["lastRun"] == {"ts": ms(start), "scheduledTime": ms(start), "outcome": "failed",
                                  "error": INTERRUPTED}
        assert doc["state"] == {"kind": "pending"}
        assert doc["nextRun"] == ms(start + timedelta(minutes=1))
        run.seen = 1
        assert await run.at(start + timedelta(seconds=59)) == []
        assert await events(run.dep) == ["s:started"]  # never re-run
    finally:
        await run.dep.close()


async def test_a_changed_crons_file_is_synced_on_open(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    start = SATURDAY.replace(hour=9)
    app = app_with_crons(tmp_path, """
        crons.daily("keep", {"hourUTC": 23, "minuteUTC": 30}, internal.ticks.tick, {"tag": "k"})
        crons.hourly("change", {"minuteUTC": 10}, internal.ticks.tick, {"tag": "c"})
        crons.hourly("drop", {"minuteUTC": 20}, internal.ticks.tick, {"tag": "d"})
    """)
    run = await Run.open(app, db, start)
    before = await cron_docs(run.dep)
    await run.dep.close()

    app = app_with_crons(tmp_path, """
        crons.daily("keep", {"hourUTC": 23, "minuteUTC": 30}, internal.ticks.tick, {"tag": "k"})
        crons.hourly("change", {"minuteUTC": 40}, internal.ticks.tick, {"tag": "c2"})
    """)
    run = await Run.open(app, db, start + timedelta(minutes=1))
    try:
        after = await cron_docs(run.dep)
        assert set(after) == {"keep", "change"}
        assert after["keep"]["_id"] == before["keep"]["_id"]
        assert after["keep"]["nextRun"] == before["keep"]["nextRun"]
        assert after["change"]["nextRun"] == ms(start.replace(minute=40))
        assert after["change"]["args"] == {"tag": "c2"}
        assert await run.at(start.replace(minute=40)) == ["c2"]
    finally:
        await run.dep.close()
