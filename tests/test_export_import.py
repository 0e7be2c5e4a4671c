"""Snapshot export and import (`python -m engine export` / `import`) on real SQLite files.

The round trip is checked by comparing complete dumps of both databases (table numbers, every
document's stored JSON, every index's entries). A refused import must leave the target database
byte-for-byte as it was (compared through SQLite's own `iterdump`).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import REPO_ROOT
from engine.deployment import Auth, Deployment
from engine.errors import EngineError
from engine.ids import decode_id
from engine.snapshot_zip import export_snapshot, import_snapshot
from engine.storage import SqlitePersistence

SCHEMA = '''
from engine import define_schema, define_table, v

TABLES = {
    "users": define_table({"name": v.string(), "avatar": v.optional(v.bytes())}).index("by_name", ["name"]),
    "tasks": define_table({"title": v.string(), "owner": v.id("users"), "points": v.int64(),
                           "tags": v.array(v.string()), "meta": v.optional(v.any())})
             .index("by_owner", ["owner", "title"]),
}
schema = define_schema(dict(sorted(TABLES.items(), reverse=REVERSED)))
'''

FUNCTIONS = '''
from engine import internal, internal_mutation, mutation, query, v


@mutation(args={"name": v.string()})
async def add_user(ctx, args):
    return await ctx.db.insert("users", {"name": args["name"], "avatar": bytes([0, 255, 7])})


@mutation(args={"owner": v.id("users"), "title": v.string(), "points": v.int64()})
async def add_task(ctx, args):
    task = await ctx.db.insert("tasks", {**args, "tags": ["a", "b"], "meta": {"nan": float("nan"), "n": -0.0}})
    await ctx.scheduler.run_after(3_600_000, internal.data.remind, {"task": task})
    return task


@internal_mutation
async def remind(ctx, args):
    return None


@query(args={"owner": v.id("users")})
async def titles(ctx, args):
    rows = await ctx.db.query("tasks").with_index("by_owner", lambda q: q.eq("owner", args["owner"])).collect()
    return [row["title"] for row in rows]


@query(args={"id": v.id("users")})
async def user(ctx, args):
    doc = await ctx.db.get(args["id"])
    return None if doc is None else doc["name"]
'''

CRONS = '''
from engine import cron_jobs, internal

crons = cron_jobs()
crons.daily("nightly", {"hourUTC": 3, "minuteUTC": 0}, internal.data.remind, {})
'''


def _app(root: Path, *, reversed_tables: bool) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "schema.py").write_text(f"REVERSED = {reversed_tables}\n" + SCHEMA)
    (root / "functions" / "data.py").write_text(FUNCTIONS)
    (root / "crons.py").write_text(CRONS)
    return root


@pytest.fixture
def apps(tmp_path: Path) -> tuple[Path, Path]:
    """Two copies of one app whose schemas declare the tables in opposite orders, so a fresh
    deployment of each numbers them differently (users/tasks = 10001/10002 vs 10002/10001)."""
    return _app(tmp_path / "source_app", reversed_tables=True), _app(tmp_path / "target_app", reversed_tables=False)


async def _call(dep: Deployment, path: str, args: dict[str, Any], kind: str) -> Any:
    outcome = await dep.call(path, args, kind=kind, auth=Auth())
    assert outcome.success, outcome.error_message
    return outcome.value


async def _populate(app: Path, db: Path) -> dict[str, Any]:
    dep = await Deployment.open(app, db)
    try:
        ada = await _call(dep, "data:add_user", {"name": "ada"}, "mutation")
        bob = await _call(dep, "data:add_user", {"name": "bob"}, "mutation")
        for i, owner in enumerate([ada, bob, ada, ada]):
            await _call(dep, "data:add_task", {"owner": owner, "title": f"t{i}", "points": 2**40 + i}, "mutation")
    finally:
        await dep.close()
    return {"ada": ada, "bob": bob}


async def _fresh(app: Path, db: Path) -> None:
    """Open and close a deployment: its catalog (and cron table) exist, no documents."""
    dep = await Deployment.open(app, db)
    await dep.close()


async def full_dump(db: Path) -> dict[str, Any]:
    """Table numbers, every document's stored JSON, and every index's (key, id) entries by name."""
    store = SqlitePersistence(db)
    await store.open()
    try:
        _, tables, indexes = await store.load_catalog()
        snapshot = await store.snapshot()
        try:
            entries = {
                f"{table}.{name}": (fields, [(key, doc_id) async for key, doc_id, _ in
                                             snapshot.scan(ix, b"", b"\xff", False)])
                for (table, name), (ix, fields) in indexes.items() if name != "by_id"
            }
        finally:
            snapshot.close()
        docs = {name: sorted([row async for row in store.table_documents(number)]) for name, number in tables.items()}
        return {"tables": tables, "documents": docs, "indexes": entries}
    finally:
        await store.close()


def sql_dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def engine_cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


# -- round trip ----------------------------------------------------------------------------------
@pytest.mark.slow
async def test_export_then_import_gives_identical_data_with_the_same_ids(apps, tmp_path):
    source_app, target_app = apps
    source_db, target_db = tmp_path / "source.sqlite3", tmp_path / "target.sqlite3"
    people = await _populate(source_app, source_db)
    await _fresh(target_app, target_db)  # numbers users/tasks the other way round
    assert (await full_dump(target_db))["tables"]["users"] != (await full_dump(source_db))["tables"]["users"]

    snapshot = tmp_path / "snapshot.zip"
    done = engine_cli("export", "--path", str(snapshot), "--db", str(source_db), "--app", str(source_app))
    assert done.returncode == 0, done.stderr
    assert "Exported 11 documents from 4 tables" in done.stdout  # 2 users, 4 tasks, 4 jobs, 1 cron job

    members = zip_members(snapshot)
    listing = [json.loads(line) for line in members["_tables/documents.jsonl"].decode().splitlines()]
    assert {t["name"] for t in listing} == {"users", "tasks", "_scheduled_functions", "_cron_jobs"}
    for table in listing:
        for line in members[f'{table["name"]}/documents.jsonl'].decode().splitlines():
            assert decode_id(json.loads(line)["_id"]) == table["id"]
    first_task = json.loads(members["tasks/documents.jsonl"].decode().splitlines()[0])
    assert first_task["points"] == {"$integer": "AAAAAAABAAA="}  # int64 2**40, Convex encoded JSON

    done = engine_cli("import", "--path", str(snapshot), "--db", str(target_db), "--app", str(target_app))
    assert done.returncode == 0, done.stderr
    assert await full_dump(target_db) == await full_dump(source_db)

    # Exporting the restored database gives the same snapshot, byte for byte.
    again = tmp_path / "again.zip"
    await export_snapshot(target_db, again)
    assert zip_members(again) == members

    # The restored deployment serves: indexes answer, ids resolve, new documents get new ids.
    dep = await Deployment.open(target_app, target_db)
    try:
        assert await _call(dep, "data:titles", {"owner": people["ada"]}, "query") == ["t0", "t2", "t3"]
        assert await _call(dep, "data:user", {"id": people["bob"]}, "query") == "bob"
        carol = await _call(dep, "data:add_user", {"name": "carol"}, "mutation")
        assert decode_id(carol) == decode_id(people["ada"]) and carol not in people.values()
    finally:
        await dep.close()


async def test_an_empty_deployment_round_trips_and_a_full_one_needs_replace(apps, tmp_path):
    source_app, target_app = apps
    source_db, target_db = tmp_path / "source.sqlite3", tmp_path / "target.sqlite3"
    await _populate(source_app, source_db)
    snapshot = tmp_path / "snapshot.zip"
    await export_snapshot(source_db, snapshot)

    await _populate(target_app, target_db)
    before = sql_dump(target_db)
    with pytest.raises(EngineError) as refused:
        await import_snapshot(target_app, target_db, snapshot)
    assert refused.value.code == "DeploymentNotEmpty" and "users: 2" in refused.value.message
    assert sql_dump(target_db) == before

    counts = await import_snapshot(target_app, target_db, snapshot, replace=True)
    assert counts["tasks"] == 4 and counts["users"] == 2
    assert await full_dump(target_db) == await full_dump(source_db)


async def test_export_refuses_an_occupied_path(apps, tmp_path):
    source_app, _ = apps
    db = tmp_path / "db.sqlite3"
    await _fresh(source_app, db)
    taken = tmp_path / "taken.zip"
    taken.write_bytes(b"keep me")
    with pytest.raises(EngineError, match="already exists"):
        await export_snapshot(db, taken)
    assert taken.read_bytes() == b"keep me"


# -- corrupted snapshots -------------------------------------------------------------------------
def _edit_line(members: dict[str, bytes], member: str, index: int, edit) -> str:
    lines = members[member].decode().splitlines()
    doc = json.loads(lines[index])
    lines[index] = edit(doc)
    members[member] = ("\n".join(lines) + "\n").encode()
    return doc.get("_id", "")


def _bad_json(members: dict[str, bytes]) -> list[str]:
    _edit_line(members, "tasks/documents.jsonl", 1, lambda doc: json.dumps(doc)[:-5])
    return ['table "tasks", line 2', "not a valid document"]


def _schema_violation(members: dict[str, bytes]) -> list[str]:
    doc_id = _edit_line(members, "tasks/documents.jsonl", 2, lambda doc: json.dumps({**doc, "points": "many"}))
    return [f'Document "{doc_id}" in table "tasks" (line 3)', "points"]


def _id_of_the_wrong_table_in_a_field(members: dict[str, bytes]) -> list[str]:
    # A task id where v.id("users") belongs: checked by the snapshot's own table numbers.
    task_id = json.loads(members["tasks/documents.jsonl"].decode().splitlines()[0])["_id"]
    doc_id = _edit_line(members, "tasks/documents.jsonl", 3, lambda doc: json.dumps({**doc, "owner": task_id}))
    return [f'Document "{doc_id}" in table "tasks" (line 4)', "owner"]


def _unknown_table(members: dict[str, bytes]) -> list[str]:
    listing = members["_tables/documents.jsonl"].decode()
    members["_tables/documents.jsonl"] = (listing + json.dumps({"name": "ghosts", "id": 10009}) + "\n").encode()
    users = members["users/documents.jsonl"].decode().splitlines()
    # A well-formed id of table 10009: re-use one of the users' documents under the new table.
    from engine.ids import new_id

    ghost = json.loads(users[0]) | {"_id": new_id(10009)}
    members["ghosts/documents.jsonl"] = (json.dumps(ghost) + "\n").encode()
    return ['Table "ghosts" is not in the schema', ghost["_id"]]


def _unlisted_table(members: dict[str, bytes]) -> list[str]:
    members["strays/documents.jsonl"] = members["users/documents.jsonl"]
    return ['table "strays"', "does not list"]


def _id_of_another_table(members: dict[str, bytes]) -> list[str]:
    members["users/documents.jsonl"] += members["tasks/documents.jsonl"].splitlines(keepends=True)[0]
    return ['table "users", line 3', "belongs to table number"]


def _duplicate_id(members: dict[str, bytes]) -> list[str]:
    members["users/documents.jsonl"] += members["users/documents.jsonl"].splitlines(keepends=True)[0]
    return ['table "users", line 3', "appears twice"]


def _no_listing(members: dict[str, bytes]) -> list[str]:
    del members["_tables/documents.jsonl"]
    return ["_tables/documents.jsonl"]


CORRUPTIONS = [_bad_json, _schema_violation, _id_of_the_wrong_table_in_a_field, _unknown_table, _unlisted_table,
               _id_of_another_table, _duplicate_id, _no_listing]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=[c.__name__.strip("_") for c in CORRUPTIONS])
async def test_a_corrupted_snapshot_is_refused_and_nothing_is_written(apps, tmp_path, corrupt):
    source_app, target_app = apps
    source_db, target_db = tmp_path / "source.sqlite3", tmp_path / "target.sqlite3"
    await _populate(source_app, source_db)
    snapshot = tmp_path / "snapshot.zip"
    await export_snapshot(source_db, snapshot)
    members = zip_members(snapshot)
    expected = corrupt(members)
    bad = write_zip(tmp_path / "bad.zip", members)

    await _fresh(target_app, target_db)
    before = sql_dump(target_db)
    with pytest.raises(EngineError) as refused:
        await import_snapshot(target_app, target_db, bad, replace=True)
    for text in expected:
        assert text in refused.value.message
    assert sql_dump(target_db) == before


@pytest.mark.slow
def test_the_import_command_reports_a_refusal(apps, tmp_path):
    _, target_app = apps
    db = tmp_path / "db.sqlite3"
    bad = write_zip(tmp_path / "bad.zip", {"_tables/documents.jsonl": b'{"name": "users", "id": 10001}\n',
                                           "users/documents.jsonl": b'{"_id": "nope"}\n'})
    done = engine_cli("import", "--path", str(bad), "--db", str(db), "--app", str(target_app))
    assert done.returncode == 1
    assert "import refused, nothing was written" in done.stderr and 'table "users", line 1' in done.stderr
    assert done.stdout == ""


@pytest.mark.slow
def test_a_running_servers_database_is_exported_through_its_url_not_behind_its_back(server_factory, tmp_path):
    """One process owns a database: the offline `--db` form refuses it and names the holder; the
    `--url` form asks the server itself."""
    server = server_factory("basic")
    for i in range(3):
        response = httpx.post(f"{server.url}/api/mutation", json={"path": "counters:increment",
                                                                  "args": {"name": f"c{i}"}, "format": "json"})
        assert response.json()["status"] == "success"
    snapshot = tmp_path / "live.zip"
    refused = engine_cli("export", "--path", str(snapshot), "--db", str(server.db_path))
    assert refused.returncode == 1 and not snapshot.exists()
    assert "is in use by another engine process" in refused.stderr and f"serving {server.url}" in refused.stderr
    done = engine_cli("export", "--path", str(snapshot), "--url", server.url, "--admin-key", server.admin_key)
    assert done.returncode == 0, done.stderr
    refused = engine_cli("import", "--path", str(snapshot), "--db", str(server.db_path), "--replace")
    assert refused.returncode == 1 and "is in use by another engine process" in refused.stderr
    counters = zip_members(snapshot)["counters/documents.jsonl"].decode().splitlines()
    assert sorted(json.loads(line)["name"] for line in counters) == ["c0", "c1", "c2"]
    # The server keeps serving after the export.
    response = httpx.post(f"{server.url}/api/query", json={"path": "counters:get", "args": {"name": "c1"},
                                                           "format": "json"})
    assert response.json()["value"] == 1.0
