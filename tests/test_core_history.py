"""Reads at a past timestamp (engine.history): the latest snapshot with later commits undone.

The property: after any sequence of commits (inserts, patches that move a document within and
between index ranges, replaces, deletes, several writes per commit), reading at the timestamp of
any earlier commit gives exactly what a read at that time gave — by id, and through every index
range, in both orders. On SQLite, and on PostgreSQL: one node, and two nodes (commits through
node A, the reads then and the reads at past timestamps on node B, whose history is built from the
undo information A's commits carry in the `commits` log).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from test_core_support import CORE_APP, db_path, ok  # noqa: F401  (fixtures)
from engine.database import DatabaseReader
from engine.deployment import Deployment
from engine.errors import EngineError
from engine.transaction import Transaction

GROUPS = ["a", "b", "c"]

op = st.one_of(
    st.tuples(st.just("insert"), st.sampled_from(GROUPS), st.integers(0, 5)),
    st.tuples(st.just("patch"), st.integers(0, 50), st.sampled_from(GROUPS), st.integers(0, 5)),
    st.tuples(st.just("tag"), st.integers(0, 50), st.text("xyz", max_size=3)),
    st.tuples(st.just("delete"), st.integers(0, 50)),
)
commits = st.lists(st.lists(op, min_size=1, max_size=3), min_size=1, max_size=12)


async def state(db: DatabaseReader, ids: list[str]) -> dict[str, Any]:
    """Everything observable: each id, every group's range by rank both ways, the whole table."""
    out: dict[str, Any] = {"ids": [await db.get(i) for i in ids], "all": await db.query("items").collect()}
    for g in GROUPS:
        q = lambda r: r.eq("group", g)  # noqa: E731
        out[g] = [await db.query("items").with_index("by_group_rank", q).collect(),
                  await db.query("items").with_index("by_group_rank", q).order("desc").collect(),
                  await db.query("items").with_index("by_group_rank", lambda r: r.eq("group", g).gte("rank", 2.0))
                  .take(2)]
    return out


async def read(snapshot: Any, ids: list[str]) -> dict[str, Any]:
    txn = Transaction(dep_catalog[0], snapshot, writable=False)
    try:
        return await state(DatabaseReader(txn), ids)
    finally:
        txn.close()


dep_catalog: list[Any] = []


async def apply(dep: Deployment, batch: list[tuple], ids: list[str]) -> None:
    items = dep.catalog.table("items")
    txn = Transaction(dep.catalog, await dep.persistence.snapshot(), writable=True)
    try:
        for o in batch:
            live = [i for i in ids if await txn.get(i) is not None]
            if o[0] == "insert":
                ids.append(await txn.insert(items, {"group": o[1], "rank": float(o[2])}))
            elif live and o[0] == "patch":
                await txn.patch(live[o[1] % len(live)], {"group": o[2], "rank": float(o[3])})
            elif live and o[0] == "tag":  # changes the document, not its index keys
                await txn.patch(live[o[1] % len(live)], {"tags": [o[2]]})
            elif live and o[0] == "delete":
                await txn.delete(live[o[1] % len(live)])
        _, durable = dep.committer.sequence(txn)
        await durable
    finally:
        txn.close()


async def _property(batches: list[list[tuple]], db: str, nodes: int) -> None:
    writer = await Deployment.open(CORE_APP, db)
    reader = writer if nodes == 1 else await Deployment.open(CORE_APP, db)
    dep_catalog[:] = [reader.catalog]
    try:
        ids: list[str] = []
        seen: list[tuple[int, list[str], dict[str, Any]]] = []
        await apply(writer, [("insert", "a", 1)], ids)
        for batch in batches:
            snap = await reader.persistence.snapshot()
            seen.append((snap.ts, list(ids), await read(snap, ids)))
            await apply(writer, batch, ids)
        for ts, known, then in seen:
            assert await read(await reader.snapshot_at(ts), known) == then
    finally:
        if reader is not writer:
            await reader.close()
        await writer.close()


@settings(max_examples=60, deadline=None)
@given(batches=commits)
def test_reads_at_past_timestamps_match_what_was_read_then(batches) -> None:
    asyncio.run(_property(batches, ":memory:", 1))


@pytest.mark.parametrize("nodes", [1, 2])
@settings(max_examples=15, deadline=None)  # each example makes a database
@given(batches=commits)
def test_reads_at_past_timestamps_match_what_was_read_then_on_postgres(nodes, batches, pg_server) -> None:
    asyncio.run(_property(batches, pg_server.create_database(vector=False), nodes))


async def test_a_timestamp_older_than_the_history_is_refused(db_path) -> None:
    dep = await Deployment.open(CORE_APP, db_path)
    try:
        dep.committer.history.window_ns = 0  # keep nothing older than the newest commit
        first = dep.latest_ts()
        await ok(dep, "items:add", {"group": "a", "rank": 1.0})
        await ok(dep, "items:add", {"group": "a", "rank": 2.0})
        try:
            await dep.snapshot_at(first)
        except EngineError as e:
            assert e.code == "HistoricalReadUnavailable"
        else:
            raise AssertionError("a read before the retained history must be refused")
        latest = await dep.snapshot_at(dep.latest_ts())
        latest.close()
        try:
            await dep.snapshot_at(dep.committer.last_ts + 1)
        except EngineError as e:
            assert e.code == "InvalidTimestamp"
        else:
            raise AssertionError("a future timestamp must be refused")
    finally:
        await dep.close()


def test_retention_is_bounded_by_bytes() -> None:
    from engine.history import History

    h = History(0, max_bytes=10_000)
    for ts in range(1, 200):
        h.append(ts, [("doc", 1, b"x" * 500)], [])
    assert h.retained_bytes <= 10_000
    assert h.covers(199) and not h.covers(150)
