"""Search and vector indexes added, changed and dropped by a schema: backfilled in the background in
chunks (progress in the log) while writes go on, resumed after a restart, reactive when they become
ready, rebuilt after an offline snapshot import. On SQLite and on PostgreSQL (`db` fixture); the
cluster's side (one backfill per cluster, a node taking over) is in tests/test_cluster.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from engine.deployment import Auth, Deployment
from engine.errors import EngineError
from engine.search import manager
from engine.search.text import READY_KEY

from test_core_support import read, read_error

ADMIN = Auth(admin=True)

SCHEMA_PLAIN = '''
from engine import define_schema, define_table, v

schema = define_schema({"notes": define_table({"text": v.string(), "tag": v.string(),
                                               "vec": v.optional(v.array(v.float64()))})})
'''

SCHEMA_SEARCH = '''
from engine import define_schema, define_table, v

schema = define_schema({"notes": define_table({"text": v.string(), "tag": v.string(),
                                               "vec": v.optional(v.array(v.float64()))})
                        .search_index("search_text", search_field="text", filter_fields=[FILTERS])
                        .vector_index("by_vec", vector_field="vec", dimensions=2, filter_fields=["tag"])})
'''

NOTES = '''
from engine import mutation, query, v


@mutation(args={"count": v.number(), "start": v.number()})
async def fill(ctx, args):
    for i in range(int(args["start"]), int(args["start"] + args["count"])):
        await ctx.db.insert("notes", {"text": f"note {i} " + ("even" if i % 2 == 0 else "odd"),
                                      "tag": "t" + str(i % 3), "vec": [float(i), 1.0]})


@mutation(args={"id": v.id("notes"), "text": v.string()})
async def edit(ctx, args):
    await ctx.db.patch(args["id"], {"text": args["text"]})


@mutation(args={"id": v.id("notes")})
async def remove(ctx, args):
    await ctx.db.delete(args["id"])


@query(args={})
async def ids(ctx, args):
    return [d["_id"] for d in await ctx.db.query("notes").collect()]
'''


def make_app(root: Path, schema: str, filters: str = '"tag"') -> Path:
    (root / "functions").mkdir(parents=True, exist_ok=True)
    (root / "schema.py").write_text(schema.replace("FILTERS", filters))
    (root / "functions" / "notes.py").write_text(NOTES)
    return root


async def call(dep: Deployment, path: str, args: dict[str, Any], kind: str) -> Any:
    out = await dep.call(path, args, kind=kind, auth=ADMIN)
    assert out.success, out.error_message
    return out.value


def texts(dep: Deployment, words: str, **eqs: Any):
    async def body(db):
        def build(q):
            q = q.search("text", words)
            for f, value in eqs.items():
                q = q.eq(f, value)
            return q
        return sorted(d["text"] for d in await db.query("notes").with_search_index("search_text", build).take(1024))
    return read(dep, body)


@pytest.fixture(params=["sqlite", "postgres"])
def db(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """Where the deployment keeps its data: a SQLite file, or a fresh PostgreSQL database."""
    return request.getfixturevalue("pg_url") if request.param == "postgres" else tmp_path / "db.sqlite3"


async def snapshot_of(dep: Deployment) -> Any:
    persistence: Any = dep.persistence
    return persistence.snapshot_now() if hasattr(persistence, "snapshot_now") else await persistence.snapshot()


async def until(predicate: Any) -> None:
    """Yield to the event loop (no timed sleeps) until `predicate()` holds."""
    for _ in range(1_000_000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_an_added_index_backfills_in_the_background_while_writes_go_on(
        tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(manager, "CHUNK", 50)
    monkeypatch.setattr(manager, "PROGRESS_EVERY_S", 0.0)
    app = make_app(tmp_path / "app", SCHEMA_PLAIN)
    dep = await Deployment.open(app, db, admin_key="k")
    try:
        await call(dep, "notes:fill", {"count": 600.0, "start": 0.0}, "mutation")
        ids = await call(dep, "notes:ids", {}, "query")
        make_app(app, SCHEMA_SEARCH)
        caplog.set_level(logging.INFO, logger="engine.search")
        await dep.reload()
        info = dep.catalog.table("notes").search["search_text"]
        assert not info.ready
        err = await read_error(dep, lambda db: db.query("notes").with_search_index(
            "search_text", lambda q: q.search("text", "note")).take(1))
        assert (err.code, err.message) == ("IndexBackfillingError", "Index notes.search_text is currently backfilling "
                                           "and not available to query yet.")
        # Writes while it fills: before and after the backfill's cursor.
        await call(dep, "notes:edit", {"id": ids[0], "text": "rewritten first"}, "mutation")
        await call(dep, "notes:remove", {"id": ids[1]}, "mutation")
        await until(lambda: info.progress[0] >= 300)
        await call(dep, "notes:edit", {"id": ids[10], "text": "rewritten early"}, "mutation")
        await call(dep, "notes:edit", {"id": ids[590], "text": "rewritten late"}, "mutation")
        await call(dep, "notes:remove", {"id": ids[595]}, "mutation")
        await call(dep, "notes:fill", {"count": 5.0, "start": 1000.0}, "mutation")
        before = dep.committer.sequenced_ts
        await dep.search_indexes.wait_ready()
        assert info.ready
        written = [k for _, keys in dep.committer.write_log.since(before) for k in keys]
        assert (info.id, READY_KEY) in written  # what a query that failed while backfilling re-runs on
        assert await texts(dep, "rewritten") == ["rewritten early", "rewritten first", "rewritten late"]
        stored = await read(dep, lambda db: db.query("notes").collect())
        assert len(stored) == 600 - 2 + 5
        for word in ("even", "odd", "note"):
            assert await texts(dep, word) == sorted(d["text"] for d in stored if word in d["text"].split())
        assert await texts(dep, "note", tag="t0") == sorted(d["text"] for d in stored
                                                            if "note" in d["text"].split() and d["tag"] == "t0")
        progress = [r.getMessage() for r in caplog.records if "Backfilling search index" in r.getMessage()]
        assert progress[0] == 'Backfilling search index "notes.search_text": 600 documents.'
        assert any("of 600 documents" in line for line in progress)
        assert any('Search index "notes.search_text" is ready' in r.getMessage() for r in caplog.records)
    finally:
        await dep.close()


async def _filled_then_indexed(tmp_path: Path, db: Any, count: int) -> tuple[Path, Deployment]:
    """`count` notes written without a search index, then the deployment reopened on the schema
    that adds one (its backfill starting): (app dir, deployment)."""
    app = make_app(tmp_path / "app", SCHEMA_PLAIN)
    dep = await Deployment.open(app, db, admin_key="k")
    await call(dep, "notes:fill", {"count": float(count), "start": 0.0}, "mutation")
    await dep.close()
    make_app(app, SCHEMA_SEARCH)
    return app, await Deployment.open(app, db, admin_key="k")


async def test_a_backfill_resumes_after_a_restart(tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(manager, "CHUNK", 40)
    app, dep = await _filled_then_indexed(tmp_path, db, 400)
    info = dep.catalog.table("notes").search["search_text"]
    await until(lambda: info.progress[0] >= 120)
    await dep.close()  # stopped part-way: the cursor is stored with each chunk
    caplog.set_level(logging.INFO, logger="engine.search")
    dep = await Deployment.open(app, db, admin_key="k")
    try:
        info = dep.catalog.table("notes").search["search_text"]
        assert not info.ready
        await dep.search_indexes.wait_ready()
        assert info.progress[0] <= 400 - 120  # resumed, not restarted
        assert any("(resuming)" in r.getMessage() for r in caplog.records)
        assert len(await texts(dep, "note")) == 400
    finally:
        await dep.close()


async def test_changed_and_dropped_indexes(tmp_path: Path, db: Any) -> None:
    app = make_app(tmp_path / "app", SCHEMA_SEARCH)
    dep = await Deployment.open(app, db, admin_key="k")
    try:
        await dep.search_indexes.wait_ready()
        await call(dep, "notes:fill", {"count": 30.0, "start": 0.0}, "mutation")
        old = dep.catalog.table("notes").search["search_text"]
        make_app(app, SCHEMA_SEARCH, filters='"tag", "text"')  # a new definition: a new index
        await dep.reload()
        new = dep.catalog.table("notes").search["search_text"]
        assert new.id != old.id and new.filter_fields == ("tag", "text")
        await dep.search_indexes.wait_ready()
        assert len(await texts(dep, "note", text="note 3 odd")) == 1
        make_app(app, SCHEMA_PLAIN)
        await dep.reload()
        assert dep.catalog.table("notes").search == {}
        err = await read_error(dep, lambda db: db.query("notes").with_search_index(
            "search_text", lambda q: q.search("text", "note")).take(1))
        assert err.code == "IndexNotFoundError"
        snap = await snapshot_of(dep)
        try:
            if hasattr(snap, "fetch"):  # PostgreSQL
                tables = {r[0] for r in await snap.fetch("SELECT tablename FROM pg_tables")}
                registered = await snap.fetchval("SELECT count(*) FROM search_indexes_")
            else:
                tables = {r[0] for r in snap._conn.execute("SELECT name FROM sqlite_master")}  # type: ignore[attr-defined]
                registered = snap._conn.execute("SELECT count(*) FROM search_indexes_").fetchone()[0]  # type: ignore[attr-defined]
        finally:
            snap.close()
        assert registered == 0
        assert not any(t.startswith(("search_fts_", "vectors_", "search_text_", "search_terms_", "search_vec_"))
                       for t in tables), tables
    finally:
        await dep.close()


async def test_an_offline_snapshot_import_rebuilds_the_indexes(tmp_path: Path) -> None:
    """(SQLite: the offline `import` writes SQLite files only.)"""
    from engine.snapshot_zip import export_snapshot, import_snapshot

    app = make_app(tmp_path / "app", SCHEMA_SEARCH)
    fresh, db = tmp_path / "fresh.sqlite3", tmp_path / "db.sqlite3"
    dep = await Deployment.open(app, db, admin_key="k")
    await dep.search_indexes.wait_ready()
    await call(dep, "notes:fill", {"count": 25.0, "start": 0.0}, "mutation")
    await dep.close()
    await export_snapshot(db, tmp_path / "snap.zip")
    dep = await Deployment.open(app, fresh, admin_key="k")
    await call(dep, "notes:fill", {"count": 3.0, "start": 500.0}, "mutation")  # replaced by the import
    await dep.search_indexes.wait_ready()
    await dep.close()
    await import_snapshot(app, fresh, tmp_path / "snap.zip", replace=True)
    dep = await Deployment.open(app, fresh, admin_key="k")
    try:
        await dep.search_indexes.wait_ready()
        assert len(await texts(dep, "note")) == 25
        from engine.runner import ActionCtx

        found = await ActionCtx(dep.runner, ADMIN).vector_search("notes", "by_vec", {"vector": [24.0, 1.0], "limit": 1})
        assert len(found) == 1
    finally:
        await dep.close()


async def test_a_query_on_a_backfilling_index_fails_with_the_ready_key_in_its_read_set(
        tmp_path: Path, db: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(manager, "CHUNK", 10)
    app = make_app(tmp_path / "app", SCHEMA_PLAIN)
    dep = await Deployment.open(app, db, admin_key="k")
    try:
        await call(dep, "notes:fill", {"count": 100.0, "start": 0.0}, "mutation")
        (app / "functions" / "find.py").write_text('''
from engine import query, v


@query(args={"text": v.string()})
async def find(ctx, args):
    docs = await ctx.db.query("notes").with_search_index("search_text", lambda q: q.search("text", args["text"])).take(5)
    return len(docs)
''')
        make_app(app, SCHEMA_SEARCH)
        await dep.reload()
        from engine.reads import point

        fn = dep.app.functions["find:find"]
        snap = await snapshot_of(dep)
        try:
            ev = await dep.runner.evaluate_query(fn, {"text": "note"}, ADMIN, snap, None)
        finally:
            snap.close()
        info = dep.catalog.table("notes").search["search_text"]
        assert not ev.ok and "IndexBackfillingError" in str(ev.error)
        assert ev.reads.contains(info.id, point(READY_KEY)[0])
        await dep.search_indexes.wait_ready()
        assert (await call(dep, "find:find", {"text": "note"}, "query")) == 5
    finally:
        await dep.close()


def test_engine_error_status_for_backfilling_is_4xx() -> None:
    assert EngineError("IndexBackfillingError", "x").status == 400


async def test_a_backfill_on_postgres_outlives_a_database_restart(tmp_path: Path, pg_server: Any,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    """PostgreSQL goes away in the middle of a backfill (a fast shutdown cuts every connection,
    the lease's with them) and comes back: the backfill waits for it and goes on from the stored
    cursor, and the index ends up complete."""
    monkeypatch.setattr(manager, "CHUNK", 50)
    url = pg_server.create_database()
    app, dep = await _filled_then_indexed(tmp_path, url, 2000)
    try:
        info = dep.catalog.table("notes").search["search_text"]
        await until(lambda: info.progress[0] >= 200)
        caplog.set_level(logging.WARNING, logger="engine.search")
        pg_server.restart()  # (blocks this event loop: the backfill meets the restarted server)
        await dep.search_indexes.wait_ready()
        assert info.ready
        assert any("the database is unavailable" in r.getMessage() for r in caplog.records)
        assert not any("stays unavailable" in r.getMessage() for r in caplog.records)
        assert len(await texts(dep, "odd")) == 1000
        assert len(await texts(dep, "even", tag="t0")) == len([i for i in range(0, 2000, 2) if i % 3 == 0])
    finally:
        await dep.close()
