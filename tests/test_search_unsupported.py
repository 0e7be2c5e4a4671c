"""Stores that cannot build search indexes, or some of them.

- A storage backend without search (engine.search.backend.UnsupportedSearchStore, every
  Persistence's default): the deployment opens and serves an app whose schema declares search and
  vector indexes, writes to those tables commit, and a search or vector query fails with the engine
  error `SearchIndexesUnavailable` saying why, while the next call works. The documents live in a
  real SQLite store whose search storage is replaced by the unsupported one, which is exactly what
  a store without a search implementation offers the engine.
- PostgreSQL without pgvector (engine.search.pg_store): full-text indexes work, vector indexes are
  not built and a vector search fails with `SearchIndexesUnavailable` naming the missing extension;
  on a real server where the engine's role may not create the extension, and on Debian's
  PostgreSQL, which has no pgvector at all."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_harness import PostgresServer, debian_bin_dir

from engine.deployment import Auth, Deployment
from engine.errors import EngineError
from engine.search.backend import UNSUPPORTED, SearchStore, UnsupportedSearchStore
from engine.storage import Persistence, SqlitePersistence

APP = Path(__file__).resolve().parent / "apps" / "search"
ADMIN = Auth(admin=True)
WHY = "search and vector indexes are not available on ExampleDB yet; they work on the embedded SQLite store."


def test_a_persistence_without_search_gets_the_unsupported_store(tmp_path: Path) -> None:
    assert Persistence.search is UNSUPPORTED and UNSUPPORTED.unavailable is not None
    assert isinstance(UNSUPPORTED, SearchStore)
    assert SqlitePersistence(tmp_path / "db.sqlite3").search.unavailable is None


async def test_search_on_a_store_without_search_is_a_clear_error(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="engine.search")
    store = SqlitePersistence(tmp_path / "nosearch.sqlite3")
    store.search = UnsupportedSearchStore("ExampleDB")  # type: ignore[assignment]
    dep = await Deployment.open(APP, tmp_path / "nosearch.sqlite3", admin_key="k", persistence=store)
    try:
        await dep.search_indexes.wait_ready()
        assert all(not t.search for t in dep.catalog.by_name.values())  # nothing registered or maintained
        warned = [r.getMessage() for r in caplog.records if "declared but not built" in r.getMessage()]
        assert warned and "messages.search_body" in warned[0] and "foods.by_embedding" in warned[0]

        sent = await dep.call("messages:send", {"body": "hello world", "channel": "c"}, kind="mutation", auth=ADMIN)
        assert sent.success, sent.error_message
        food = await dep.call("foods:add", {"description": "d", "cuisine": "Thai", "embedding": [1.0, 0.0, 0.0, 0.0]},
                              kind="mutation", auth=ADMIN)
        assert food.success, food.error_message

        for path, args, kind, printable in [
            ("messages:search", {"text": "hello"}, "query", "messages.search_body"),
            ("messages:searchPage", {"text": "hello", "paginationOpts": {"numItems": 2, "cursor": None}}, "query",
             "messages.search_body"),
            ("messages:sendThenSearch", {"text": "hello", "body": "hello again", "channel": "c"}, "mutation",
             "messages.search_body"),
            ("foods:similar", {"vector": [1.0, 0.0, 0.0, 0.0]}, "action", "foods.by_embedding"),
        ]:
            out = await dep.call(path, args, kind=kind, auth=ADMIN)
            assert not out.success, path
            assert f"Index {printable} cannot be queried: {WHY}" in (out.error_message or ""), out.error_message

        # Nothing was lost or left half-done, and the deployment keeps serving.
        rows = await dep.call("messages:searchAll", {"text": "x"}, kind="query", auth=ADMIN)
        assert not rows.success
        listed = await dep.call("foods:fetch", {"ids": [food.value]}, kind="query", auth=ADMIN)
        assert listed.success and listed.value[0]["cuisine"] == "Thai"
    finally:
        await dep.close()


async def test_the_error_is_an_engine_error_with_a_stable_code() -> None:
    from engine.search.backend import unavailable_error

    err = unavailable_error(UnsupportedSearchStore("ExampleDB"), "messages.search_body")
    assert isinstance(err, EngineError) and err.code == "SearchIndexesUnavailable"
    assert err.message == f"Index messages.search_body cannot be queried: {WHY}"


async def check_without_pgvector(url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Full-text search works, the vector index is not built, and a vector search says why."""
    caplog.set_level(logging.WARNING, logger="engine.search")
    dep = await Deployment.open(APP, url, admin_key="k")
    try:
        await dep.search_indexes.wait_ready()
        assert "search_body" in dep.catalog.table("messages").search
        assert "by_embedding" not in dep.catalog.table("foods").search  # not registered, not maintained
        warned = [r.getMessage() for r in caplog.records if "is not built" in r.getMessage()]
        assert warned and "foods.by_embedding" in warned[0] and "pgvector" in warned[0]

        sent = await dep.call("messages:send", {"body": "hello world", "channel": "c"}, kind="mutation", auth=ADMIN)
        assert sent.success, sent.error_message
        out = await dep.call("messages:search", {"text": "hello"}, kind="query", auth=ADMIN)
        assert out.success and out.value == ["hello world"], out.error_message
        food = await dep.call("foods:add", {"description": "d", "cuisine": "Thai", "embedding": [1.0, 0.0, 0.0, 0.0]},
                              kind="mutation", auth=ADMIN)
        assert food.success, food.error_message
        out = await dep.call("foods:similar", {"vector": [1.0, 0.0, 0.0, 0.0]}, kind="action", auth=ADMIN)
        assert not out.success
        message = out.error_message or ""
        assert "Index foods.by_embedding cannot be queried: vector indexes on PostgreSQL need the pgvector " \
               "extension" in message, message
        assert "CREATE EXTENSION vector failed" in message and "full-text search works without it" in message
        again = await dep.call("foods:fetch", {"ids": [food.value]}, kind="query", auth=ADMIN)
        assert again.success and again.value[0]["cuisine"] == "Thai"
    finally:
        await dep.close()


async def test_postgres_without_the_right_to_create_pgvector_keeps_full_text_search(
        pg_server: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    """pgvector is installed on the server but not created in this database, and the engine's role
    (not a superuser) may not create it: a managed database where nobody ran CREATE EXTENSION."""
    assert pg_server.has_pgvector
    await check_without_pgvector(pg_server.create_database(vector=False), caplog)


@pytest.fixture(scope="module")
def debian_pg() -> Iterator[PostgresServer]:
    """Debian's PostgreSQL (bookworm has no pgvector package; tests/run installs the server)."""
    bin_dir = debian_bin_dir()
    assert bin_dir is not None, "Debian's postgresql package is not installed (tests/run installs it)"
    server = PostgresServer(bin_dir).start()
    try:
        yield server
    finally:
        server.close()


async def test_postgres_without_pgvector_installed_keeps_full_text_search(
        debian_pg: PostgresServer, caplog: pytest.LogCaptureFixture) -> None:
    """A server without the extension at all (Debian's PostgreSQL)."""
    assert not debian_pg.has_pgvector
    await check_without_pgvector(debian_pg.create_database(), caplog)
