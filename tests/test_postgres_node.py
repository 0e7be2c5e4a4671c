"""One node on PostgreSQL: `serve --db postgresql://...` / $DATABASE_URL (and what it refuses),
snapshot export and import through the running deployment."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from engine.deployment import Auth, Deployment
from test_core_support import CORE_APP

NOBODY = Auth()


def _serve(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", "serve", "--app", str(CORE_APP), "--port", "0", *args],
                          cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CONVEX_ADMIN_KEY": "pg-test|0123456789abcdef", "PYTHONPATH": str(REPO_ROOT),
                               **(env or {})})


def test_serve_refuses_an_unreachable_postgres_url_with_the_reason_and_no_password(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--db", "postgresql://nova:s3cr3t-pw@127.0.0.1:1/nova")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Cannot use the PostgreSQL database postgresql://nova@127.0.0.1:1/nova" in done.stderr, done.stderr
    assert "s3cr3t-pw" not in done.stdout + done.stderr
    assert not any(tmp_path.iterdir())  # no "postgresql:" folder taken for a SQLite path


def test_serve_reads_database_url_and_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    done = _serve(tmp_path, env={"DATABASE_URL": "mysql://nova:s3cr3t-pw@db/nova"})
    assert done.returncode == 1
    assert "Cannot use mysql:// as a database" in done.stderr, done.stderr
    assert "s3cr3t-pw" not in done.stdout + done.stderr
    done = _serve(tmp_path, env={"DATABASE_URL": "postgresql://nova:s3cr3t-pw@127.0.0.1:1"})
    assert done.returncode == 1 and "names no database" in done.stderr, done.stderr


def test_a_wrong_password_is_refused_at_start(pg_url: str, tmp_path: Path) -> None:
    done = _serve(tmp_path, "--db", pg_url.replace(":engine-test-pw@", ":wrong-pw@"))
    assert done.returncode == 1
    assert 'password authentication failed for user "engine"' in done.stderr, done.stderr
    assert "wrong-pw" not in done.stdout + done.stderr


async def test_export_and_import_through_a_postgres_deployment(pg_server, tmp_path: Path) -> None:
    source = await Deployment.open(CORE_APP, pg_server.create_database())
    try:
        for i in range(5):
            assert (await source.call("items:add", {"group": "g", "rank": float(i)}, kind="mutation",
                                      auth=NOBODY)).success
        state = await source.export_snapshot(tmp_path / "snap.zip")
        assert state["documents"] == 5.0
        assert "items/documents.jsonl" in zipfile.ZipFile(tmp_path / "snap.zip").namelist()
    finally:
        await source.close()
    target = await Deployment.open(CORE_APP, pg_server.create_database())
    try:
        assert (await target.import_snapshot(tmp_path / "snap.zip"))["items"] == 5
        ranks = (await target.call("items:byRank", {"group": "g"}, kind="query", auth=NOBODY)).value
        assert [d["rank"] for d in ranks] == [0.0, 1.0, 2.0, 3.0, 4.0]
    finally:
        await target.close()


async def test_a_connection_lost_while_catching_up_is_database_unavailable(pg_url: str) -> None:
    """A snapshot that must first read other nodes' commits, on a connection the server drops
    meanwhile (a restart): the caller sees DatabaseUnavailable (503, retry later), not a crash."""
    import asyncpg

    from engine.errors import EngineError
    from engine.storage import CommitRecord, open_persistence

    store = open_persistence(pg_url)
    await store.open()
    killer = await asyncpg.connect(pg_url)
    try:
        await store.write([CommitRecord(10, doc_puts=[("d1", 10001, b'{"n":1}')])])

        async def catch_up(ts: int, read) -> None:
            await killer.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                                 "AND state = 'idle in transaction'")
            await read(0)

        store.catch_up, store.caught_up_ts = catch_up, 0
        with pytest.raises(EngineError) as raised:
            await store.snapshot()
        assert raised.value.code == "DatabaseUnavailable" and raised.value.status == 503
        store.catch_up = None
        snap = await store.snapshot()  # the pool hands out a live connection again
        assert snap.ts == 10 and await snap.get("d1") == (10001, b'{"n":1}')
        snap.close()
    finally:
        await killer.close()
        await store.close()


async def test_a_snapshot_on_a_connection_left_inside_an_implicit_transaction_still_begins(pg_url: str) -> None:
    """A task cancelled between a statement's Parse and its Sync (asyncpg sends them apart) leaves
    its pooled connection inside an implicit transaction the client does not know of: the pool
    hands it out as clean, and there a BEGIN with an isolation level is refused. A snapshot on it
    still begins (a liveness round failed on this in CI, after a heartbeat cut off by a pause).
    asyncpg's `prepare()` leaves the server in that state on purpose here: Parse, Describe, no Sync."""
    import asyncpg

    from engine.storage import CommitRecord, open_persistence

    store = open_persistence(pg_url, pool_size=1)  # one connection: the snapshot gets that one
    await store.open()
    try:
        await store.write([CommitRecord(10, doc_puts=[("d1", 10001, b'{"n":1}')])])
        async with store.pool.acquire() as conn:  # the state as it is: the isolation level is refused
            # (a new statement run first: then the bare Parse takes a snapshot every time; the state
            # is not reached by every Parse)
            await conn.fetchval("SELECT $1::int", 1)
            await conn.prepare("SELECT $1::int + 1")
            assert not conn.is_in_transaction()
            with pytest.raises(asyncpg.ActiveSQLTransactionError):
                await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        async with store.pool.acquire() as conn:
            await conn.fetchval("SELECT $1::int * 2", 2)
            await conn.prepare("SELECT $1::int + 2")
        snap = await store.snapshot()
        assert snap.ts == 10 and await snap.get("d1") == (10001, b'{"n":1}')
        snap.close()
        await store.write([CommitRecord(11, doc_puts=[("d1", 10001, b'{"n":2}')])])
        snap = await store.snapshot()  # the connection came back clean
        assert snap.ts == 11 and await snap.get("d1") == (10001, b'{"n":2}')
        snap.close()
    finally:
        await store.close()


def test_the_offline_verbs_refuse_a_postgres_url_instead_of_making_a_file_of_it(tmp_path: Path) -> None:
    """`import/export/data --db postgresql://...` (the offline forms) say to use --url of a running
    server; none of them creates a SQLite file named after the URL."""
    snapshot = tmp_path / "snap.zip"
    with zipfile.ZipFile(snapshot, "w") as z:
        z.writestr("items/documents.jsonl", "")
    url = "postgresql://nova:s3cr3t-pw@127.0.0.1:1/nova"
    env = {**os.environ, "CONVEX_ADMIN_KEY": "pg-test|0123456789abcdef", "PYTHONPATH": str(REPO_ROOT)}
    for verb, extra in (("import", ["--path", str(snapshot)]), ("export", ["--path", str(tmp_path / "out.zip")]),
                        ("data", [])):
        done = subprocess.run([sys.executable, "-m", "engine", verb, *extra, "--app", str(CORE_APP), "--db", url],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 1, (verb, done.stdout, done.stderr)
        assert f"`{verb} --db` works on a SQLite file" in done.stderr and "--url" in done.stderr, done.stderr
        assert "s3cr3t-pw" not in done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snap.zip"]
