"""Observability: one execution-log entry per function execution, Prometheus metrics, /health.

In-process tests check the log entries and the OCC counter exactly; a real server process checks
/health and /metrics (admin key, text format) after a burst of HTTP and WebSocket calls.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from engine import metrics
from engine.deployment import Auth, Deployment
from engine.executions import executions

from conftest import write_app
from test_core_support import CORE_APP, call, ok

ADMIN = Auth(admin=True)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_every_execution_is_one_log_entry_with_outcome_duration_and_request_id(tmp_path: Path) -> None:
    dep = await Deployment.open(CORE_APP, tmp_path / "db.sqlite3", admin_key="k")
    try:
        start = executions.last_cursor
        await ok(dep, "counters:increment", {"name": "a"})
        await ok(dep, "counters:get", {"name": "a"})
        failed = await call(dep, "items:failAfterWrite", {"group": "x"})
        assert not failed.success
        entries, cursor = executions.since(start)
        assert cursor == entries[-1].cursor
        assert [(e.kind, e.path, e.success) for e in entries] == [
            ("mutation", "counters:increment", True), ("query", "counters:get", True),
            ("mutation", "items:failAfterWrite", False)]
        assert all(e.duration > 0 and len(e.request_id) == 16 for e in entries)
        # The text clients get (frames included), minus the request-id line.
        assert entries[2].error.startswith('Uncaught ConvexError: {"code":"NOPE","group":"x"}\n    at failAfterWrite (')
        # The request id of the log entry is the one the caller's error names.
        assert f"[Request ID: {entries[2].request_id}]" in failed.error_message
        as_convex = entries[2].to_convex_json()
        assert (as_convex["kind"], as_convex["udfType"], as_convex["identifier"], as_convex["error"]) == (
            "Completion", "Mutation", "items:failAfterWrite", entries[2].error)
        mine = entries[0].to_json()
        assert {k: mine[k] for k in ("type", "function", "status", "error")} == {
            "type": "Mutation", "function": "counters:increment", "status": "success", "error": None}
        # A long poll after the last cursor waits, and answers with the next execution.
        waiter = asyncio.ensure_future(executions.wait_since(cursor, timeout=30))
        await asyncio.sleep(0)
        assert not waiter.done()
        await ok(dep, "counters:get", {"name": "a"})
        later, _ = await asyncio.wait_for(waiter, 30)
        assert [(e.path, e.success) for e in later] == [("counters:get", True)]
    finally:
        await dep.close()


GATED_APP = {
    "schema.py": """
from engine import define_schema, define_table, v
schema = define_schema({"counters": define_table({"value": v.float64()})})
""",
    "functions/hot.py": """
from engine import mutation, query
gate = {"event": None}

@mutation
async def seed(ctx, args):
    return await ctx.db.insert("counters", {"value": 0.0})

@mutation
async def bump(ctx, args):
    doc = await ctx.db.query("counters").first()
    event = gate["event"]
    if event is not None:
        await event.wait()  # both calls have read the counter before either commits
    await ctx.db.patch(doc["_id"], {"value": doc["value"] + 1})
    return doc["value"] + 1
""",
}


async def test_a_conflicting_mutation_counts_its_occ_retry(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", GATED_APP)
    dep = await Deployment.open(app, tmp_path / "db.sqlite3", admin_key="k")
    try:
        await ok(dep, "hot:seed")
        gate = dep.app.functions["hot:bump"].handler.__globals__["gate"]
        before = _value(_samples(metrics.render().decode()), "convex_occ_retries_total", function="hot:bump")
        start = executions.last_cursor
        gate["event"] = event = asyncio.Event()
        first = asyncio.ensure_future(call(dep, "hot:bump"))
        second = asyncio.ensure_future(call(dep, "hot:bump"))
        for _ in range(20):  # let both reach the gate
            await asyncio.sleep(0)
        event.set()
        results = sorted([(await first).value, (await second).value])
        assert results == [1.0, 2.0]  # both applied, one after a retry
        after = _value(_samples(metrics.render().decode()), "convex_occ_retries_total", function="hot:bump")
        assert after - before == 1
        entries, _ = executions.since(start)
        assert sorted(e.occ_retries for e in entries if e.path == "hot:bump") == [0, 1]
    finally:
        await dep.close()


@pytest.mark.slow
def test_health_and_metrics_after_a_burst_of_calls(server_factory) -> None:
    server = server_factory("basic")
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "ok" and health.json()["ready"] is True
    assert httpx.get(f"{server.url}/metrics").status_code == 401
    assert httpx.get(f"{server.url}/metrics", headers={"Authorization": "Convex nope"}).status_code == 401

    with httpx.Client(base_url=server.url) as client:
        for i in range(25):
            r = client.post("/api/mutation", json={"path": "counters:increment", "args": {"name": "burst"}})
            assert r.json()["status"] == "success"
        for i in range(10):
            assert client.post("/api/query", json={"path": "counters:get", "args": {"name": "burst"}}).json()[
                "value"] == 25.0
        for i in range(3):
            assert client.post("/api/mutation", json={"path": "errors:convexMutation", "args": {}}).json()[
                "status"] == "error"

    async def with_a_live_subscription() -> str:
        async with websockets.connect(server.url.replace("http", "ws") + "/api/sync") as ws:
            await ws.send(json.dumps({"type": "Connect", "sessionId": "3f0c2e3a-2a55-4a4e-9d0f-1b2f0c9d1e01",
                                      "connectionCount": 0, "lastCloseReason": "InitialConnect", "clientTs": 0}))
            await ws.send(json.dumps({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
                {"type": "Add", "queryId": 0, "udfPath": "counters:get", "args": [{"name": "burst"}]}]}))
            while json.loads(await ws.recv())["type"] != "Transition":
                pass
            async with httpx.AsyncClient() as client:
                r = await client.get(f"{server.url}/metrics", headers={"Authorization": f"Convex {server.admin_key}"})
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
            return r.text

    samples = _samples(asyncio.run(with_a_live_subscription()))
    assert _value(samples, "convex_function_executions_total", function="counters:increment", type="mutation",
                  status="success") == 25
    assert _value(samples, "convex_function_executions_total", function="counters:get", type="query",
                  status="success") >= 11  # 10 HTTP calls and the subscription's first run
    assert _value(samples, "convex_function_errors_total", function="errors:convexMutation", type="mutation") == 3
    assert _value(samples, "convex_function_duration_seconds_count", function="counters:increment",
                  type="mutation") == 25
    assert _value(samples, "convex_commits_total") >= 25
    assert _value(samples, "convex_commit_latency_seconds_count") >= 25
    assert _value(samples, "convex_websocket_connections") == 1
    assert _value(samples, "convex_live_subscriptions") == 1
    assert _value(samples, "convex_live_queries") == 1
    assert ("convex_occ_retries_total", ()) not in samples  # labelled by function, present once one happens
    for gauge in ("convex_committer_queue_depth", "convex_sync_mutation_queue_depth", "convex_sync_outbox_depth",
                  "convex_scheduled_functions_running"):
        assert (gauge, ()) in samples, gauge

    # The log stream has one entry per execution: the 25 increments, with their outcome and duration.
    answer = httpx.get(f"{server.url}/api/stream_function_logs", params={"cursor": 0, "format": "engine"},
                       headers={"Authorization": f"Convex {server.admin_key}"}).json()
    increments = [e for e in answer["entries"] if e["function"] == "counters:increment"]
    assert len(increments) == 25
    assert all(e["status"] == "success" and e["type"] == "Mutation" and e["durationMs"] > 0 for e in increments)
    failures = [e for e in answer["entries"] if e["function"] == "errors:convexMutation"]
    assert len(failures) == 3 and all(e["status"] == "failure" and "ConvexError" in e["error"] for e in failures)
    assert len({e["requestId"] for e in answer["entries"]}) == len(answer["entries"])


# Two concurrent `bump`s: each reads the counter, then waits until both have read it, so the first
# to commit makes the other conflict and re-run (its re-run finds the gate open). No timing involved.
PAIRED_APP = {
    "schema.py": GATED_APP["schema.py"],
    "functions/hot.py": """
import asyncio
from engine import mutation

arrived = {"n": 0}
both_read = asyncio.Event()

@mutation
async def seed(ctx, args):
    return await ctx.db.insert("counters", {"value": 0.0})

@mutation
async def bump(ctx, args):
    doc = await ctx.db.query("counters").first()
    arrived["n"] += 1
    if arrived["n"] == 2:
        both_read.set()
    await asyncio.wait_for(both_read.wait(), 30)
    await ctx.db.patch(doc["_id"], {"value": doc["value"] + 1})
    return doc["value"] + 1
""",
}


@pytest.mark.slow
def test_a_servers_metrics_count_the_occ_retry_of_a_conflict(server_factory, tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", PAIRED_APP)
    server = server_factory(app)
    headers = {"Authorization": f"Convex {server.admin_key}"}

    async def burst() -> list[float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            assert (await client.post("/api/mutation", json={"path": "hot:seed", "args": {}})).json()["status"] == \
                "success"
            answers = await asyncio.gather(*(client.post("/api/mutation", json={"path": "hot:bump", "args": {}})
                                             for _ in range(2)))
            return sorted(r.json()["value"] for r in answers)

    assert asyncio.run(burst()) == [1.0, 2.0]  # both applied, one of them after a re-run
    samples = _samples(httpx.get(f"{server.url}/metrics", headers=headers).text)
    assert _value(samples, "convex_occ_retries_total", function="hot:bump") == 1
    assert _value(samples, "convex_function_executions_total", function="hot:bump", type="mutation",
                  status="success") == 2
    answer = httpx.get(f"{server.url}/api/stream_function_logs", params={"cursor": 0, "format": "engine"},
                       headers=headers).json()
    assert sorted(e["occRetries"] for e in answer["entries"] if e["function"] == "hot:bump") == [0, 1]


async def test_health_says_unavailable_once_the_committer_stopped(tmp_path: Path) -> None:
    dep = await Deployment.open(CORE_APP, tmp_path / "db.sqlite3", admin_key="k")
    closed = False
    try:
        await ok(dep, "counters:increment", {"name": "a"})
        serving = await metrics._health(dep, None)
        body = json.loads(serving.body)
        assert (serving.status, body["status"], body["ready"]) == (200, "ok", True)
        assert int(body["latestTs"]) == dep.latest_ts() and body["functions"] == len(dep.app.functions)
        await dep.close()
        closed = True
        stopped = await metrics._health(dep, None)
        assert (stopped.status, json.loads(stopped.body)["ready"]) == (503, False)
    finally:
        if not closed:
            await dep.close()


NESTED_APP = {
    "schema.py": GATED_APP["schema.py"],
    "functions/tree.py": """
from engine import action, internal_mutation, internal_query, mutation

@internal_query
async def read(ctx, args):
    print("reading")
    return await ctx.db.query("counters").collect()

@internal_mutation
async def write(ctx, args):
    print("writing")
    return await ctx.db.insert("counters", {"value": 1.0})

@action
async def both(ctx, args):
    await ctx.run_mutation("tree:write", {})
    return len(await ctx.run_query("tree:read", {}))

@mutation
async def alone(ctx, args):
    return await ctx.db.insert("counters", {"value": 2.0})
""",
}


async def test_a_call_tree_shares_one_request_id_and_each_execution_has_its_entry(tmp_path: Path) -> None:
    app = write_app(tmp_path / "app", NESTED_APP)
    dep = await Deployment.open(app, tmp_path / "db.sqlite3", admin_key="k")
    try:
        start = executions.last_cursor
        assert (await ok(dep, "tree:both")) == 1
        await ok(dep, "tree:alone")
        await ok(dep, "tree:alone")
        entries, _ = executions.since(start)
        assert [(e.kind, e.path) for e in entries] == [("mutation", "tree:write"), ("query", "tree:read"),
                                                      ("action", "tree:both"), ("mutation", "tree:alone"),
                                                      ("mutation", "tree:alone")]
        tree = entries[:3]
        assert len({e.request_id for e in tree}) == 1  # the dashboard and `logs` group a request by it
        assert len({e.request_id for e in entries}) == 3  # separate calls, separate ids
        assert [e.log_lines for e in tree] == [("[LOG] 'writing'",), ("[LOG] 'reading'",),
                                               ("[LOG] 'writing'", "[LOG] 'reading'")]
    finally:
        await dep.close()
