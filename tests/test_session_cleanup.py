"""Stored mutation results (the sync protocol's idempotency records) expire after Convex's window:
two weeks by default, `MAX_SESSION_CLEANUP_DURATION_HOURS` (0 keeps them), deleted in chunks by a
background pass (engine.session_cleanup). On SQLite and on PostgreSQL; time is injected."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from engine import session_cleanup
from engine.deployment import Deployment
from engine.runner import Idempotency
from engine.session_cleanup import SessionCleanup, retention_from_env
from engine.storage import CommitRecord
from test_core_support import CORE_APP, NOBODY

DAY_NS = 86_400 * 10**9


@pytest.fixture(params=["sqlite", "postgres"])
def db(request, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "db.sqlite3")
    return request.getfixturevalue("pg_url")


async def _stored(dep: Deployment, keys: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Which of `keys` have a stored result."""
    snap = await dep.persistence.snapshot()
    try:
        return [k for k in keys if await snap.mutation_result(*k) is not None]
    finally:
        snap.close()


async def test_a_replay_gets_the_stored_result_until_the_window_is_over_then_runs_again(db: str) -> None:
    """The default window is Convex's two weeks: a replay a day later answers the stored result
    (nothing inserted twice); once a pass finds the record older than two weeks it is gone and the
    re-sent mutation runs again, as in Convex."""
    dep = await Deployment.open(CORE_APP, db)
    try:
        assert dep.session_cleanup.retention_s == 14 * 24 * 3600.0
        key = Idempotency("sync", 7)
        first = await dep.call("items:add", {"group": "g", "rank": 1.0}, kind="mutation", auth=NOBODY, idempotency=key)
        assert first.success, first.error_message
        now = time.time_ns()
        assert await dep.session_cleanup.run_once(now_ns=now + DAY_NS) == 0
        again = await dep.call("items:add", {"group": "g", "rank": 1.0}, kind="mutation", auth=NOBODY, idempotency=key)
        assert again.value == first.value
        assert await dep.session_cleanup.run_once(now_ns=now + 13 * DAY_NS) == 0
        assert await dep.session_cleanup.run_once(now_ns=now + 15 * DAY_NS) == 1
        assert await _stored(dep, [("sync", 7)]) == []
        late = await dep.call("items:add", {"group": "g", "rank": 1.0}, kind="mutation", auth=NOBODY, idempotency=key)
        assert late.success and late.value != first.value
        rows = (await dep.call("items:byRank", {"group": "g"}, kind="query", auth=NOBODY)).value
        assert sorted(d["_id"] for d in rows) == sorted([first.value, late.value])
    finally:
        await dep.close()


async def test_a_pass_deletes_every_record_older_than_the_window_in_chunks_and_keeps_the_rest(
        db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """2 500 records older than the window and 300 younger, committed in ts order: one pass with
    chunks of 1 000 deletes exactly the old ones (three writes), and a second finds nothing."""
    dep = await Deployment.open(CORE_APP, db)
    try:
        base = dep.latest_ts() + 1
        old = [CommitRecord(base + i, mutation_results=[("old", i, b"1")]) for i in range(2500)]
        young = [CommitRecord(base + 5000 + i, mutation_results=[("young", i, b"1")]) for i in range(300)]
        for i in range(0, len(old), 500):
            await dep.persistence.write(old[i:i + 500])
        await dep.persistence.write(young)
        chunks: list[int] = []
        expire = dep.persistence.expire_mutation_results

        async def counted(before_ts: int, limit: int) -> int:
            n = await expire(before_ts, limit)
            chunks.append(n)
            return n

        monkeypatch.setattr(dep.persistence, "expire_mutation_results", counted)
        cleanup = SessionCleanup(dep.persistence, 3600.0)
        now = base + 2500 + 3600 * 10**9  # the window ends right after the last old record
        assert await cleanup.run_once(now_ns=now) == 2500
        assert chunks == [1000, 1000, 500]
        keys = [("old", i) for i in range(2500)] + [("young", i) for i in range(300)]
        assert await _stored(dep, keys) == [("young", i) for i in range(300)]
        assert await cleanup.run_once(now_ns=now) == 0
    finally:
        await dep.close()


async def test_zero_hours_keeps_every_record(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(session_cleanup.RETENTION_ENV, "0")
    dep = await Deployment.open(CORE_APP, db)
    try:
        assert dep.session_cleanup.retention_s is None
        key = Idempotency("sync", 1)
        first = await dep.call("items:add", {"group": "g", "rank": 1.0}, kind="mutation", auth=NOBODY, idempotency=key)
        assert await dep.session_cleanup.run_once(now_ns=time.time_ns() + 10_000 * DAY_NS) == 0
        again = await dep.call("items:add", {"group": "g", "rank": 1.0}, kind="mutation", auth=NOBODY, idempotency=key)
        assert again.value == first.value
    finally:
        await dep.close()


def test_the_window_is_read_as_convex_reads_it(caplog: pytest.LogCaptureFixture) -> None:
    assert retention_from_env({}) == 336 * 3600.0
    assert retention_from_env({"MAX_SESSION_CLEANUP_DURATION_HOURS": "1"}) == 3600.0
    assert retention_from_env({"MAX_SESSION_CLEANUP_DURATION_HOURS": "0"}) is None
    for bad in ("x", "-1", "inf", "nan"):
        assert retention_from_env({"MAX_SESSION_CLEANUP_DURATION_HOURS": bad}) == 336 * 3600.0
    assert "MAX_SESSION_CLEANUP_DURATION_HOURS='x' is not a number of hours" in caplog.text
