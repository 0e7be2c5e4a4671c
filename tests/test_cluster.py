"""Several engine nodes serving one deployment from one PostgreSQL database (engine.cluster).

Real things throughout: a real PostgreSQL server (tests/pg_harness.py), three real
`python -m engine serve --db postgresql://...` processes on loopback, the official npm clients.
The cron test runs three deployments in one process instead (each with its own pool, committer,
LISTEN connection and node id: they share nothing but the database), because crons need an
injected clock and a server process has none.
"""

from __future__ import annotations

import asyncio
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from textwrap import dedent
from typing import Iterator

import httpx
import pytest

from conftest import TEST_ADMIN_KEY, ServerProcess, _live_servers, app_path
from engine.deployment import Auth, Deployment
from engine.scheduler import ManualClock

APP = Path(__file__).resolve().parent / "apps" / "sync"

pytestmark = pytest.mark.slow


class Cluster:
    def __init__(self, url: str, base: Path) -> None:
        self.db_url = url
        self.base = base
        self.nodes: list[ServerProcess] = []

    def start_node(self) -> ServerProcess:
        n = len(self.nodes)
        workdir = self.base / f"node{n}"
        workdir.mkdir(parents=True, exist_ok=True)
        node = ServerProcess(app_path(APP), self.db_url, workdir / "server.log",  # type: ignore[arg-type]
                             admin_key=TEST_ADMIN_KEY)
        self.nodes.append(node)
        return node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            if node in _live_servers:
                _live_servers.remove(node)


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(pg_url, tmp_path)
    with ThreadPoolExecutor(3) as pool:  # three nodes starting at once take turns on the catalog
        list(pool.map(lambda _: c.start_node(), range(3)))
    try:
        yield c
    finally:
        c.stop()


def query(node: ServerProcess, path: str, args: dict) -> object:
    r = httpx.post(f"{node.url}/api/query", json={"path": path, "args": args, "format": "json"}, timeout=30)
    body = r.json()
    assert body["status"] == "success", body
    return body["value"]


def mutation(node: ServerProcess, path: str, args: dict) -> object:
    r = httpx.post(f"{node.url}/api/mutation", json={"path": path, "args": args, "format": "json"}, timeout=30)
    body = r.json()
    assert body["status"] == "success", body
    return body["value"]


def test_a_subscriber_on_node_b_sees_mutations_made_through_node_a(cluster: Cluster, run_node) -> None:
    a, b, c = cluster.nodes
    name = f"x-{uuid.uuid4().hex[:8]}"
    out = run_node("cluster_watch", f'{{"write": "{a.url}", "watch": ["{b.url}", "{c.url}"], '
                                    f'"name": "{name}", "rounds": 5}}', timeout=60)
    assert out["seen"] == [None, 0, 1, 2, 3, 4, 5] or out["seen"] == [0, 1, 2, 3, 4, 5], out["seen"]
    # And one timeline: a reader on any node sees the latest value at once.
    assert [query(n, "counters:get", {"name": name}) for n in (a, b, c)] == [5.0, 5.0, 5.0]


def test_fifty_clients_per_node_on_three_nodes_increment_one_counter_exactly(cluster: Cluster, run_node) -> None:
    name = f"hot-{uuid.uuid4().hex[:8]}"

    def load(node: ServerProcess) -> dict:
        return run_node("contention", f'{{"url": "{node.url}", "transport": "ws", "clients": 50, '
                                      f'"perClient": 100, "fn": "counters:increment", "name": "{name}"}}',
                        timeout=300)

    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(load, cluster.nodes))
    assert [o["failed"] for o in outs] == [0, 0, 0], [o["errors"] for o in outs]
    assert sum(o["ok"] for o in outs) == 15_000
    assert [query(n, "counters:get", {"name": name}) for n in cluster.nodes] == [15_000.0] * 3


async def test_a_mutation_replayed_on_another_node_runs_once(cluster: Cluster) -> None:
    from test_sync_protocol import Conn

    a, b, _ = cluster.nodes
    name = f"r-{uuid.uuid4().hex[:8]}"
    session = str(uuid.uuid4())
    first = await Conn.open(a, session_id=session)
    response, _ = await first.call_mutation("counters:increment", {"name": name}, request_id=0)
    assert response["result"] == 1.0
    await first.close()
    # The client reconnects to another node and re-sends request 0 (it never saw the response).
    second = await Conn.open(b, session_id=session, connection_count=1, max_observed=response["ts"])
    try:
        replay, _ = await second.call_mutation("counters:increment", {"name": name}, request_id=0)
        assert replay["success"] and replay["result"] == 1.0 and replay["ts"] == response["ts"]
        fresh, _ = await second.call_mutation("counters:increment", {"name": name}, request_id=1)
        assert fresh["result"] == 2.0
    finally:
        await second.close()
    assert query(a, "counters:get", {"name": name}) == 2.0


async def test_a_replay_racing_the_original_on_another_node_still_runs_once(cluster: Cluster) -> None:
    from test_sync_protocol import Conn

    a, b, c = cluster.nodes
    name = f"rr-{uuid.uuid4().hex[:8]}"
    session = str(uuid.uuid4())
    old = await Conn.open(a, session_id=session)
    new = await Conn.open(b, session_id=session, connection_count=1)
    try:
        await old.mutation("counters:increment", {"name": name, "delayMs": 300.0}, request_id=0)
        replay, _ = await new.call_mutation("counters:increment", {"name": name, "delayMs": 300.0}, request_id=0)
        original, _ = await old.until(lambda m: m["type"] == "MutationResponse")
        assert replay["result"] == original["result"] == 1.0
    finally:
        await old.close()
        await new.close()
    assert query(c, "counters:get", {"name": name}) == 1.0


def test_kill_9_of_a_node_under_load_loses_no_acknowledged_write(cluster: Cluster, run_node) -> None:
    a, b, victim = cluster.nodes
    name = f"k-{uuid.uuid4().hex[:8]}"
    clients = 10

    def load(node: ServerProcess) -> dict:
        return run_node("contention", f'{{"url": "{node.url}", "transport": "http", "clients": {clients}, '
                                      f'"perClient": 60, "fn": "counters:increment", "name": "{name}", '
                                      f'"readFrom": "{a.url}"}}', timeout=300)

    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(load, node) for node in cluster.nodes]
        # Kill once the load is well under way (observed through a survivor, not guessed).
        with httpx.Client(timeout=10) as http:
            while True:
                r = http.post(f"{a.url}/api/query", json={"path": "counters:get", "args": {"name": name},
                                                          "format": "json"}).json()
                if (r.get("value") or 0) >= 300:
                    break
        victim.kill()
        outs = [f.result() for f in futures]
    survivors, dead = outs[:2], outs[2]
    assert [o["failed"] for o in survivors] == [0, 0], [o["errors"] for o in survivors]
    acknowledged = sum(o["ok"] for o in outs)
    final = query(b, "counters:get", {"name": name})
    assert isinstance(final, float)
    # Every acknowledged increment is there; at most one unacknowledged one per client of the
    # killed node (in flight when it died) may have committed too.
    assert acknowledged <= final <= acknowledged + clients, (acknowledged, final, dead)
    assert dead["ok"] < clients * 60  # it really died mid-load
    assert query(a, "counters:get", {"name": name}) == final
    mutation(b, "counters:increment", {"name": name})  # and the survivors keep serving
    assert query(a, "counters:get", {"name": name}) == final + 1


# -- crons across the cluster (three deployments in this process, one database) ---------------------

CRON_APP = {
    "schema.py": """
        from engine import define_schema, define_table, v

        schema = define_schema({"ticks": define_table({"at": v.float64()})})
    """,
    "functions/ticks.py": """
        from engine import internal_mutation, query

        @internal_mutation
        async def tick(ctx, args):
            await ctx.db.insert("ticks", {"at": 0.0})

        @query
        async def count(ctx, args):
            return len([t async for t in ctx.db.query("ticks")])
    """,
    "crons.py": """
        from engine import cron_jobs, internal

        crons = cron_jobs()
        crons.cron("every minute", "* * * * *", internal.ticks.tick)
    """,
}


async def test_a_cron_fires_once_per_minute_across_the_cluster(pg_url: str, tmp_path: Path) -> None:
    app = tmp_path / "app"
    for rel, text in CRON_APP.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(dedent(text))
    start = datetime(2026, 3, 2, 12, 0, 30, tzinfo=timezone.utc)
    clocks = [ManualClock(start) for _ in range(3)]
    nodes = [await Deployment.open(app, pg_url, clock=clock) for clock in clocks]
    try:
        for minute in range(1, 6):
            moment = start + timedelta(minutes=minute)
            for clock in clocks:  # every node's clock reaches the due time together
                clock.set(moment)
            # All three find the job due at once and race to run it; one run commits.
            await asyncio.gather(*(dep.crons.drain() for dep in nodes))
            counts = [(await dep.call("ticks:count", {}, kind="query", auth=Auth())).value for dep in nodes]
            assert counts == [minute] * 3, (minute, counts)
    finally:
        for dep in nodes:
            await dep.close()


def test_a_postgres_restart_under_load_is_survived(cluster: Cluster, pg_server, run_node) -> None:
    """The database goes away (a fast shutdown cuts every connection) and comes back while clients
    on two nodes write: they may see errors during the window, the nodes reconnect (pool, writer,
    LISTEN), nothing acknowledged is lost, and a subscriber on another node sees writes again."""
    a, b, c = cluster.nodes
    name = f"pg-{uuid.uuid4().hex[:8]}"
    clients = 5

    def load(node: ServerProcess, per_client: int = 150) -> dict:
        return run_node("contention", f'{{"url": "{node.url}", "transport": "http", "clients": {clients}, '
                                      f'"perClient": {per_client}, "fn": "counters:increment", "name": "{name}"}}',
                        timeout=300)

    with ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(load, node) for node in (a, b)]
        with httpx.Client(timeout=10) as http:
            while (http.post(f"{a.url}/api/query", json={"path": "counters:get", "args": {"name": name},
                                                        "format": "json"}).json().get("value") or 0) < 200:
                pass
        pg_server.restart()
        outs = [f.result() for f in futures]
        # The clients above fail fast while the database is down, so they may have used up their
        # calls inside the window; a second load, after the restart, shows both nodes serve again.
        after = list(pool.map(lambda node: load(node, 20), (a, b)))
    assert all(o["ok"] >= 50 for o in after), after  # 100 calls a node; the first may meet a dead connection
    outs += after
    acknowledged = sum(o["ok"] for o in outs)
    final = query(c, "counters:get", {"name": name})
    assert isinstance(final, float)
    assert acknowledged <= final <= acknowledged + 2 * clients, (acknowledged, final, outs)
    # What clients saw during the window: the database was unavailable (503), nothing else.
    for o in outs:
        for message in o["errors"]:
            assert "The database is unavailable right now" in message or "fetch failed" in message, message
    # Reactivity across nodes works again (every node's LISTEN connection is back).
    out = run_node("cluster_watch", f'{{"write": "{c.url}", "watch": ["{a.url}", "{b.url}"], '
                                    f'"name": "{name}-w", "rounds": 3}}', timeout=60)
    assert out["seen"][-3:] == [1, 2, 3]


NOTES_APP = {
    "functions/notes.py": """
        from engine import mutation, query, v

        @mutation(args={"text": v.string()})
        async def add(ctx, args):
            return await ctx.db.insert(args["table"] if "table" in args else "notes", {"text": args["text"]})

        @mutation(args={"text": v.string()})
        async def addOther(ctx, args):
            return await ctx.db.insert("others", {"text": args["text"]})

        @query
        async def texts(ctx, args):
            return sorted([n["text"] async for n in ctx.db.query("notes")])
    """,
}


async def test_tables_created_at_run_time_on_two_nodes_are_one_table(pg_url: str, tmp_path: Path) -> None:
    """No schema: the first insert creates the table. A node creating a table learns the tables the
    other nodes created first, so both use one table number (and never collide on numbers)."""
    app = tmp_path / "notes"
    for rel, text in NOTES_APP.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(dedent(text))
    a = await Deployment.open(app, pg_url)
    b = await Deployment.open(app, pg_url)
    try:
        assert (await a.call("notes:add", {"text": "from a"}, kind="mutation", auth=Auth())).success
        assert (await b.call("notes:addOther", {"text": "other"}, kind="mutation", auth=Auth())).success
        assert (await b.call("notes:add", {"text": "from b"}, kind="mutation", auth=Auth())).success
        assert a.catalog.by_name["notes"].number == b.catalog.by_name["notes"].number
        assert b.catalog.by_name["others"].number != b.catalog.by_name["notes"].number
        for dep in (a, b):
            assert (await dep.call("notes:texts", {}, kind="query", auth=Auth())).value == ["from a", "from b"]
    finally:
        await a.close()
        await b.close()


async def test_a_transaction_refused_at_commit_for_another_nodes_write_settles(pg_url: str) -> None:
    """B validates against A's commit only under the clock lock (it may not have read it yet): the
    refused transaction gets Conflict, and everything B sequenced settles (B can stop)."""
    from engine.committer import Conflict
    from engine.transaction import Transaction
    from test_core_support import CORE_APP

    a = await Deployment.open(CORE_APP, pg_url)
    b = await Deployment.open(CORE_APP, pg_url)
    try:
        assert (await a.call("counters:increment", {"name": "c"}, kind="mutation", auth=Auth())).success
        (await b.persistence.snapshot()).close()  # B has read A's first commit
        txn = Transaction(b.catalog, await b.persistence.snapshot(), writable=True)
        try:
            counters = b.catalog.table("counters")
            row = [doc async for _, doc in txn.scan(counters, counters.indexes["by_name"], b"", b"\xff", False)][0]
            await txn.patch(row["_id"], {"value": 100.0})
            assert (await a.call("counters:increment", {"name": "c"}, kind="mutation", auth=Auth())).success
            with pytest.raises(Conflict):
                _, durable = b.committer.sequence(txn)  # refused here if B already read A's commit,
                await durable  # else when B commits
        finally:
            txn.close()
        await asyncio.wait_for(b.committer.wait_settled(b.committer.sequenced_ts), 10)
        assert (await b.call("counters:get", {"name": "c"}, kind="query", auth=Auth())).value == 2.0
    finally:
        await a.close()
        await asyncio.wait_for(b.close(), 10)


async def test_a_file_stored_through_one_node_is_served_by_another(pg_url: str) -> None:
    """On PostgreSQL a file's bytes live in the database (PostgresBlobStore): node B reads what
    node A stored, a delete on B frees it for both, and a node starting up never takes another
    node's fresh upload (bytes stored, row not committed yet) for an orphan."""
    from engine.storage.postgres import PostgresBlobStore
    from test_core_support import CORE_APP

    a = await Deployment.open(CORE_APP, pg_url)
    b = await Deployment.open(CORE_APP, pg_url)
    try:
        assert isinstance(a.file_storage.blobs, PostgresBlobStore)
        data = bytes(range(256)) * 4096  # 1 MiB
        storage_id = await a.file_storage.store(data, "application/octet-stream")
        assert await b.file_storage.read(storage_id) == data
        in_flight = str(uuid.uuid4())
        await a.file_storage.blobs.put(in_flight, b"an upload between its put and its commit")
        c = await Deployment.open(CORE_APP, pg_url)  # its start-up removes orphans
        try:
            assert await c.file_storage.read(storage_id) == data
            assert await c.file_storage.blobs.get(in_flight) is not None
        finally:
            await c.close()
        assert await b.file_storage.blobs.delete(in_flight) is True
        assert await a.file_storage.blobs.get(in_flight) is None
    finally:
        await a.close()
        await b.close()
