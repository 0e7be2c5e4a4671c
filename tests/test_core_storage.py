"""Storage and catalog: what survives a close/reopen, snapshot isolation, index backfill on open."""

from __future__ import annotations

import time
from pathlib import Path
from textwrap import dedent

import pytest

import engine.committer
from engine.deployment import Deployment
from engine.storage import SqlitePersistence

from test_core_support import CORE_APP, NOBODY, dep, db_path, ok  # noqa: F401  (fixtures)


async def test_reopen_keeps_documents_tables_and_the_timestamp(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite3"
    first = await Deployment.open(CORE_APP, db)
    item = await ok(first, "items:add", {"group": "g", "rank": 1.0, "tags": ["x"]})
    await ok(first, "counters:increment", {"name": "c"})
    numbers = {name: info.number for name, info in first.catalog.by_name.items()}
    ts = first.latest_ts()
    await first.close()

    again = await Deployment.open(CORE_APP, db)
    try:
        assert {name: info.number for name, info in again.catalog.by_name.items()} == numbers
        assert again.latest_ts() == ts
        doc = await ok(again, "misc:get", {"id": item})
        assert {k: doc[k] for k in ("group", "rank", "tags")} == {"group": "g", "rank": 1.0, "tags": ["x"]}
        assert await ok(again, "counters:get", {"name": "c"}) == 1.0
        outcome = await again.call("counters:increment", {"name": "c"}, kind="mutation", auth=NOBODY)
        assert outcome.success and outcome.ts > ts
    finally:
        await again.close()


class _ClockAhead:
    """A wall clock one hour ahead: the commits it stamps must bound every later timestamp."""

    @staticmethod
    def time_ns() -> int:
        return time.time_ns() + 3600 * 10**9

    monotonic = staticmethod(time.monotonic)


async def test_timestamps_never_go_backwards_across_a_reopen(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "db.sqlite3"
    monkeypatch.setattr(engine.committer, "time", _ClockAhead)
    first = await Deployment.open(CORE_APP, db)
    await ok(first, "items:add", {"group": "g", "rank": 1.0})
    ahead = first.latest_ts()
    assert ahead > time.time_ns() + 3000 * 10**9
    await first.close()
    monkeypatch.undo()  # the wall clock is now an hour behind the persisted high-water mark

    again = await Deployment.open(CORE_APP, db)
    try:
        assert again.latest_ts() == ahead
        outcome = await again.call("items:add", {"group": "g", "rank": 2.0}, kind="mutation",
                                   auth=NOBODY)
        assert outcome.success and outcome.ts > ahead
        query = await again.call("items:byRank", {"group": "g"}, kind="query", auth=NOBODY)
        assert query.ts == outcome.ts and [d["rank"] for d in query.value] == [1.0, 2.0]
    finally:
        await again.close()


async def test_timestamps_never_go_backwards_across_nodes_and_a_reopen_on_postgres(
        pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """One timeline on PostgreSQL: commit timestamps come from the database's clock row, so a
    node whose clock is an hour behind another's still commits after it (and a reopened node
    continues from the stored clock)."""
    import engine.cluster

    a = await Deployment.open(CORE_APP, pg_url)
    b = await Deployment.open(CORE_APP, pg_url)
    try:
        monkeypatch.setattr(engine.cluster, "time", _ClockAhead)  # node A's commit: an hour ahead
        await ok(a, "items:add", {"group": "g", "rank": 1.0})
        ahead = a.latest_ts()
        assert ahead > time.time_ns() + 3000 * 10**9
        monkeypatch.undo()
        outcome = await b.call("items:add", {"group": "g", "rank": 2.0}, kind="mutation", auth=NOBODY)
        assert outcome.success and outcome.ts > ahead
        query = await a.call("items:byRank", {"group": "g"}, kind="query", auth=NOBODY)
        assert query.ts >= outcome.ts and [d["rank"] for d in query.value] == [1.0, 2.0]
    finally:
        await a.close()
        await b.close()
    again = await Deployment.open(CORE_APP, pg_url)
    try:
        assert again.latest_ts() >= outcome.ts
        later = await again.call("items:add", {"group": "g", "rank": 3.0}, kind="mutation", auth=NOBODY)
        assert later.success and later.ts > outcome.ts
    finally:
        await again.close()


async def test_a_snapshot_keeps_its_view_while_commits_land(dep: Deployment) -> None:
    item = await ok(dep, "items:add", {"group": "g", "rank": 1.0})
    before = await dep.persistence.snapshot()
    try:
        await ok(dep, "items:remove", {"id": item})
        await ok(dep, "items:add", {"group": "g", "rank": 2.0})
        assert await before.get(item) is not None
        assert before.ts < dep.latest_ts()
        after = await dep.persistence.snapshot()
        try:
            assert await after.get(item) is None and after.ts == dep.latest_ts()
        finally:
            after.close()
    finally:
        before.close()


async def test_memory_store_is_a_private_file_removed_on_close() -> None:
    store = SqlitePersistence(":memory:")
    await store.open()
    path = store.path
    assert path.exists()
    await store.close()
    assert not path.exists() and not path.parent.exists()


# -- catalog -------------------------------------------------------------------------------------

def _write_notes_app(root: Path, index: str) -> Path:
    (root / "functions").mkdir(parents=True, exist_ok=True)
    (root / "schema.py").write_text(dedent(f"""
        from engine import define_schema, define_table, v

        schema = define_schema({{
            "notes": define_table({{"topic": v.string(), "n": v.float64()}}){index},
        }})
    """))
    (root / "functions" / "notes.py").write_text(dedent("""
        from engine import mutation, query, v

        @mutation(args={"topic": v.string(), "n": v.float64()})
        async def add(ctx, args):
            return await ctx.db.insert("notes", dict(args))

        @query(args={"index": v.string(), "field": v.string(), "value": v.any()})
        async def lookup(ctx, args):
            q = ctx.db.query("notes").with_index(args["index"], lambda q: q.eq(args["field"], args["value"]))
            return [d["n"] for d in await q.collect()]
    """))
    return root


async def test_an_index_added_to_the_schema_later_is_backfilled_on_open(tmp_path: Path) -> None:
    app = _write_notes_app(tmp_path / "app", index="")
    db = tmp_path / "db.sqlite3"
    first = await Deployment.open(app, db)
    for topic, n in [("b", 1.0), ("a", 2.0), ("b", 3.0), ("a", 4.0), ("b", 5.0)]:
        await ok(first, "notes:add", {"topic": topic, "n": n})
    missing = await first.call("notes:lookup", {"index": "by_topic", "field": "topic", "value": "b"},
                               kind="query", auth=NOBODY)
    assert not missing.success and 'Uncaught Error: Index "notes.by_topic" not found.' in missing.error_message
    await first.close()

    _write_notes_app(app, index='.index("by_topic", ["topic"])')
    second = await Deployment.open(app, db)
    try:
        assert await ok(second, "notes:lookup", {"index": "by_topic", "field": "topic", "value": "b"}) == [1.0, 3.0, 5.0]
        # Writes after the backfill keep the index current.
        await ok(second, "notes:add", {"topic": "b", "n": 6.0})
        assert await ok(second, "notes:lookup", {"index": "by_topic", "field": "topic", "value": "b"}) == [1.0, 3.0, 5.0, 6.0]
    finally:
        await second.close()

    # Same index name, different fields: the old entries are dropped and the index rebuilt.
    _write_notes_app(app, index='.index("by_topic", ["n"])')
    third = await Deployment.open(app, db)
    try:
        assert await ok(third, "notes:lookup", {"index": "by_topic", "field": "n", "value": 4.0}) == [4.0]
        assert await ok(third, "notes:lookup", {"index": "by_topic", "field": "n", "value": "b"}) == []
    finally:
        await third.close()


async def test_an_index_registered_but_never_filled_is_filled_on_open(tmp_path: Path) -> None:
    """The state a crash leaves between registering an index and its fill commit (start-up backfill,
    or a dev-mode reload adding an index): the catalog has the index, the index has no entries."""
    app = _write_notes_app(tmp_path / "app", index='.index("by_topic", ["topic"])')
    db = tmp_path / "db.sqlite3"
    first = await Deployment.open(app, db)
    for topic, n in [("b", 1.0), ("a", 2.0), ("b", 3.0)]:
        await ok(first, "notes:add", {"topic": topic, "n": n})
    index_id = first.catalog.table("notes").indexes["by_topic"].id
    await first.close()

    store = SqlitePersistence(db)
    await store.open()
    assert not await store.index_is_empty(index_id)
    await store._writer.execute(store._stmts["index_clear"], (index_id,))  # the interrupted build
    assert await store.index_is_empty(index_id) and not await store.table_is_empty(first.catalog.table("notes").number)
    await store.close()

    second = await Deployment.open(app, db)
    try:
        assert await ok(second, "notes:lookup", {"index": "by_topic", "field": "topic", "value": "b"}) == [1.0, 3.0]
        await ok(second, "notes:add", {"topic": "b", "n": 4.0})
        assert await ok(second, "notes:lookup", {"index": "by_topic", "field": "topic", "value": "b"}) == [1.0, 3.0, 4.0]
    finally:
        await second.close()


async def test_a_scan_left_open_does_not_pin_the_next_snapshot_to_an_old_view(dep: Deployment) -> None:
    """A query that stops part-way (take, first, `async for` + break) leaves its SQLite statement
    unfinished. Closing the snapshot must end that statement too: otherwise the pooled connection
    keeps the old read transaction and the next snapshot on it silently sees stale data."""
    await ok(dep, "items:fill", {"group": "g", "start": 0.0, "count": 100.0})
    ix = dep.catalog.table("items").indexes["by_creation_time"]
    first = await dep.persistence.snapshot()
    rows = first.scan(ix.id, b"", b"\xff", False, first_page=10)
    await rows.__anext__()  # the walk stays alive past close(), as an abandoned scan can
    first.close()
    await ok(dep, "items:add", {"group": "g", "rank": 1000.0})
    fresh = await dep.persistence.snapshot()
    try:
        assert fresh.ts == dep.latest_ts()
        assert len([row async for row in fresh.scan(ix.id, b"", b"\xff", False)]) == 101
    finally:
        fresh.close()
    del rows


async def test_the_wal_stays_bounded_under_steady_writes_with_readers_between_them(tmp_path: Path) -> None:
    """Serving keeps a read transaction open between writes (the shared snapshot). SQLite's own
    checkpoint, run inside each commit, could then never copy the whole log, so the log never
    restarted: the WAL grew by every page ever written (550 MB in two minutes of a soak). The
    store's own checkpoint after writes lets it restart."""
    from engine.storage import CommitRecord

    store = SqlitePersistence(tmp_path / "db.sqlite3")
    await store.open()
    wal = tmp_path / "db.sqlite3-wal"
    try:
        payload = b'{"n":' + b"1" * 2000 + b"}"  # each write dirties fresh pages
        for i in range(3000):
            ts = 1_000 + i
            await store.write([CommitRecord(ts, doc_puts=[(f"doc{i}", 1, payload)],
                                            mutation_results=[("session", i, b"null")])])
            snap = await store.snapshot()  # a reader between writes, as serving has
            assert (await snap.get(f"doc{i}")) is not None
            snap.close()
        # ~3 pages per write: 3 000 writes put ~36 MB through the log; a restarted log holds a few.
        assert wal.stat().st_size < 16 << 20, wal.stat().st_size
    finally:
        await store.close()


def _wal_frames(db: Path) -> tuple[int, int]:
    """(frames in the log, frames copied into the database) from the wal-index's header in
    `<db>-shm` (SQLite's WAL format: mxFrame at byte 16, nBackfill at byte 96, native order)."""
    import struct

    head = (db.parent / (db.name + "-shm")).read_bytes()[:100]
    return struct.unpack_from("=I", head, 16)[0], struct.unpack_from("=I", head, 96)[0]


async def test_commits_never_checkpoint_on_the_event_loop_the_store_does_after_enough_of_them(
        tmp_path: Path) -> None:
    """SQLite's automatic checkpoint would run inside the COMMIT of a small group commit, on the
    event loop (a sync of the log and the file, a copy of the pages). It is off: below the store's
    threshold nothing is copied, however large the log; the store's own checkpoint (on the
    writer's thread) copies the whole log once the log has grown by CHECKPOINT_EVERY_FRAMES
    frames, however many group commits carried them (a few large ones or many small ones)."""
    import engine.storage.sqlite as sqlite_store
    from engine.storage import CommitRecord

    db = tmp_path / "db.sqlite3"
    store = SqlitePersistence(db)
    await store.open()
    threshold = sqlite_store.CHECKPOINT_EVERY_FRAMES
    try:
        payload = b'{"n":' + b"1" * 3000 + b"}"  # a page or more per document
        ts, writes, frames, copied = 1_000, 0, 0, 0
        while True:  # small group commits until one takes the log past the threshold
            ts += 1
            await store.write([CommitRecord(ts, doc_puts=[(f"d{ts}.{j}", 1, payload) for j in range(20)])])
            writes += 1
            before = frames
            frames, copied = _wal_frames(db)
            if copied:
                break
            assert frames < threshold  # past SQLite's own 1 000-page threshold, not checkpointed
        assert before < threshold <= frames and copied == frames  # the store's checkpoint copied all of it
        assert writes > sqlite_store.FALLBACK_CHECKPOINT_WRITES  # frames decide, not the number of commits

        for n in range(2):  # the next write restarts the log; one write of that many pages checkpoints at once
            ts += 1
            docs = 8 if n == 0 else threshold
            await store.write([CommitRecord(ts, doc_puts=[(f"bulk{n}.{i}", 1, payload) for i in range(docs)])])
            frames, copied = _wal_frames(db)
            assert (frames < threshold and copied == 0) if n == 0 else (frames >= threshold and copied == frames)
        snap = await store.snapshot()
        try:
            assert await snap.get("bulk1.7") == (1, payload) and await snap.get(f"d{ts - 2}.3") == (1, payload)
        finally:
            snap.close()

        # Without a readable wal-index (never seen on Linux; a guard): every FALLBACK_CHECKPOINT_WRITES writes.
        store._log_frames = lambda: -1  # type: ignore[method-assign]
        for i in range(sqlite_store.FALLBACK_CHECKPOINT_WRITES):
            ts += 1
            await store.write([CommitRecord(ts, doc_puts=[(f"f{i}", 1, payload)])])
            assert (_wal_frames(db)[1] == 0) == (i < sqlite_store.FALLBACK_CHECKPOINT_WRITES - 1), i
    finally:
        await store.close()


def test_the_document_cache_evicts_its_oldest_entries_down_to_three_quarters() -> None:
    from engine.storage import DocCache

    cache = DocCache(100 * (DocCache.ENTRY_OVERHEAD + 10))
    for i in range(100):
        cache.put(f"d{i}", (1, b"x" * 10))
    assert len(cache.rows) == 100
    cache.put("d3", (1, b"y" * 10))  # a rewrite moves a document to the newest end
    cache.put("new", (1, b"z" * 10))  # over the bound: the oldest go until 3/4 of it is left
    assert cache.size <= cache.max_bytes * 3 // 4
    assert cache.size == sum(len(v) + DocCache.ENTRY_OVERHEAD for _, v in cache.rows.values())
    kept = list(cache.rows)
    assert kept[-2:] == ["d3", "new"] and "d0" not in kept and "d99" in kept
    assert kept[:-2] == [f"d{i}" for i in range(100 - len(kept) + 2, 100)]
