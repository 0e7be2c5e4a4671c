"""Snapshot import and export through a running deployment (`Deployment.import_snapshot` /
`export_snapshot`, `python -m engine import|export --url`): one transaction through the committer,
so live subscribers see an import at once; table numbers kept (empty tables renumbered); modes."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest
import websockets

from engine.deployment import Auth, Deployment
from engine.errors import EngineError

from conftest import REPO_ROOT

ADMIN = Auth(admin=True)

APP_A = """
from engine import define_schema, define_table, v
schema = define_schema({
    "notes": define_table({"text": v.string(), "tag": v.optional(v.id("tags"))}).index("by_text", ["text"]),
    "tags": define_table({"name": v.string()}),
})
"""
# The same tables listed the other way round: a fresh deployment numbers them differently.
APP_B = """
from engine import define_schema, define_table, v
schema = define_schema({
    "tags": define_table({"name": v.string()}),
    "notes": define_table({"text": v.string(), "tag": v.optional(v.id("tags"))}).index("by_text", ["text"]),
})
"""
FUNCTIONS = """
from engine import mutation, query, v

@mutation(args={"name": v.string(), "texts": v.array(v.string())})
async def fill(ctx, args):
    tag = await ctx.db.insert("tags", {"name": args["name"]})
    return [await ctx.db.insert("notes", {"text": t, "tag": tag}) for t in args["texts"]]

@query
async def all(ctx, args):
    return {"notes": await ctx.db.query("notes").collect(), "tags": await ctx.db.query("tags").collect()}

@query(args={"text": v.string()})
async def byText(ctx, args):
    return await ctx.db.query("notes").with_index("by_text", lambda q: q.eq("text", args["text"])).collect()
"""


def _app(root: Path, schema: str) -> Path:
    (root / "functions").mkdir(parents=True)
    (root / "schema.py").write_text(schema)
    (root / "functions" / "notes.py").write_text(FUNCTIONS)
    return root


async def _call(dep: Deployment, path: str, args: dict | None = None):
    outcome = await dep.call(path, args or {}, kind=None, auth=ADMIN)
    assert outcome.success, outcome.error_message
    return outcome.value


async def test_import_keeps_ids_renumbering_the_empty_tables_of_a_fresh_deployment(tmp_path: Path) -> None:
    source = await Deployment.open(_app(tmp_path / "a", APP_A), tmp_path / "a.sqlite3", admin_key="k")
    target = await Deployment.open(_app(tmp_path / "b", APP_B), tmp_path / "b.sqlite3", admin_key="k")
    try:
        assert source.catalog.table("notes").number != target.catalog.table("notes").number
        await _call(source, "notes:fill", {"name": "red", "texts": ["x", "y"]})
        state = await source.export_snapshot(tmp_path / "snap.zip")
        assert state["counts"]["notes"] == 2 and state["start_ts"] == source.latest_ts()
        counts = await target.import_snapshot(tmp_path / "snap.zip")
        assert counts["notes"] == 2 and counts["tags"] == 1
        assert await _call(target, "notes:all") == await _call(source, "notes:all")
        # The ids stay valid ids of their tables (v.id checks them), and indexes were maintained.
        assert [n["text"] for n in await _call(target, "notes:byText", {"text": "y"})] == ["y"]
        assert target.catalog.table("notes").number == source.catalog.table("notes").number
        # New writes after the import get fresh ids in the renumbered tables.
        await _call(target, "notes:fill", {"name": "blue", "texts": ["z"]})
        assert len((await _call(target, "notes:all"))["notes"]) == 3
    finally:
        await source.close()
        await target.close()
    # ... and the renumbering is stored: the target reopens with the same numbers and documents.
    again = await Deployment.open(tmp_path / "b", tmp_path / "b.sqlite3", admin_key="k")
    try:
        assert len((await _call(again, "notes:all"))["notes"]) == 3
    finally:
        await again.close()


async def test_modes_and_refusals(tmp_path: Path) -> None:
    source = await Deployment.open(_app(tmp_path / "a", APP_A), tmp_path / "a.sqlite3", admin_key="k")
    target = await Deployment.open(_app(tmp_path / "b", APP_A), tmp_path / "b.sqlite3", admin_key="k")
    try:
        await _call(source, "notes:fill", {"name": "red", "texts": ["x", "y"]})
        await source.export_snapshot(tmp_path / "snap.zip")
        await _call(target, "notes:fill", {"name": "mine", "texts": ["m"]})
        before = target.latest_ts()
        with pytest.raises(EngineError) as refused:
            await target.import_snapshot(tmp_path / "snap.zip")
        assert refused.value.code == "ImportTableNotEmpty" and 'Table "notes"' in refused.value.message
        assert target.latest_ts() == before  # nothing written

        await target.import_snapshot(tmp_path / "snap.zip", mode="append")
        assert sorted(n["text"] for n in (await _call(target, "notes:all"))["notes"]) == ["m", "x", "y"]
        with pytest.raises(EngineError) as twice:
            await target.import_snapshot(tmp_path / "snap.zip", mode="append")
        assert twice.value.code == "ImportDuplicateId"

        await target.import_snapshot(tmp_path / "snap.zip", mode="replace")
        assert await _call(target, "notes:all") == await _call(source, "notes:all")

        lines = tmp_path / "more.jsonl"
        lines.write_text('{"text": "from jsonl"}\n{"text": "second"}\n')
        await target.import_snapshot(lines, fmt="jsonLines", table="notes", mode="append")
        assert sorted(n["text"] for n in (await _call(target, "notes:all"))["notes"]) == [
            "from jsonl", "second", "x", "y"]
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"text": 3}\n')
        with pytest.raises(EngineError) as schema:
            await target.import_snapshot(bad, fmt="jsonLines", table="notes", mode="append")
        assert schema.value.code == "SnapshotDoesNotMatchSchema" and "Expected string" in schema.value.message
    finally:
        await source.close()
        await target.close()


async def test_a_table_with_documents_under_another_number_is_refused(tmp_path: Path) -> None:
    source = await Deployment.open(_app(tmp_path / "a", APP_A), tmp_path / "a.sqlite3", admin_key="k")
    target = await Deployment.open(_app(tmp_path / "b", APP_B), tmp_path / "b.sqlite3", admin_key="k")
    try:
        await _call(source, "notes:fill", {"name": "red", "texts": ["x"]})
        await source.export_snapshot(tmp_path / "snap.zip")
        await _call(target, "notes:fill", {"name": "held", "texts": ["h"]})
        with pytest.raises(EngineError) as refused:
            await target.import_snapshot(tmp_path / "snap.zip", mode="append")
        assert refused.value.code == "ImportTableNumbers"
        assert "could not be kept" in refused.value.message
        assert [n["text"] for n in (await _call(target, "notes:all"))["notes"]] == ["h"]
    finally:
        await source.close()
        await target.close()


def _engine(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.slow
def test_cli_export_and_import_through_running_servers_reach_live_subscribers(server_factory, tmp_path):
    source = server_factory("basic")
    for i in range(3):
        r = httpx.post(f"{source.url}/api/mutation", json={"path": "messages:send",
                                                           "args": {"author": "live", "body": f"b{i}"}})
        assert r.json()["status"] == "success"
    snapshot = tmp_path / "live.zip"
    done = _engine("export", "--url", source.url, "--admin-key", source.admin_key, "--path", str(snapshot))
    assert done.returncode == 0, done.stderr
    assert "Exported 3 documents" in done.stdout
    with zipfile.ZipFile(snapshot) as zf:
        assert len(zf.read("messages/documents.jsonl").splitlines()) == 3

    target = server_factory("basic")

    async def scenario() -> list[list[str]]:
        seen: list[list[str]] = []
        async with websockets.connect(target.url.replace("http", "ws") + "/api/sync") as ws:
            await ws.send(json.dumps({"type": "Connect", "sessionId": "7d6b3d8e-5b1c-4d8e-9a51-0c6a1d2b3c4d",
                                      "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0}))
            await ws.send(json.dumps({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
                {"type": "Add", "queryId": 0, "udfPath": "messages:list", "args": [{"author": "live"}]}]}))

            async def next_value() -> list[str]:
                while True:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    if msg["type"] == "Transition" and msg["modifications"]:
                        return [d["body"] for d in msg["modifications"][0]["value"]]

            seen.append(await next_value())
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "engine", "import", "--url", target.url, "--admin-key", target.admin_key,
                "--path", str(snapshot), cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            seen.append(await next_value())
            out, err = await asyncio.wait_for(proc.communicate(), 120)
            assert proc.returncode == 0, err.decode()
            assert "Imported 3 documents" in out.decode()
        return seen

    assert asyncio.run(scenario()) == [[], ["b0", "b1", "b2"]]
    # A second import into the now full table is refused with the reason, nothing written.
    done = _engine("import", "--url", target.url, "--admin-key", target.admin_key, "--path", str(snapshot))
    assert done.returncode == 1 and "ImportTableNotEmpty" in done.stderr
