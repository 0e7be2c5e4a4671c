"""Several engine nodes serving one deployment from one PostgreSQL database (engine.cluster).

Real things throughout: a real PostgreSQL server (tests/pg_harness.py), three real
`python -m engine serve --db postgresql://...` processes on loopback, the official npm clients.
The minute-by-minute cron test runs three deployments in one process (each with its own pool,
committer, LISTEN connection and node id: they share nothing but the database), because a
five-field cron needs an injected clock and a server process has none; on three server processes
the same property is shown with an every-second cron, in real time.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
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
from engine.errors import EngineError
from engine.scheduler import ManualClock
from engine.values import decode_json

APP = Path(__file__).resolve().parent / "apps" / "sync"
JOBS_APP = Path(__file__).resolve().parent / "apps" / "cluster"
HOUR_MS = 3_600_000.0
NODE_TIMEOUT_S = 1.0  # `serve --node-timeout` of the job tests: a killed node's runs settle in ~2 s

pytestmark = pytest.mark.slow


class Cluster:
    def __init__(self, url: str, base: Path, app: Path = APP, extra_args: tuple[str, ...] = ()) -> None:
        self.db_url = url
        self.base = base
        self.app = app
        self.extra_args = extra_args
        self.nodes: list[ServerProcess] = []
        self._lock = threading.Lock()  # nodes start from several threads: each gets its own number

    def start_node(self) -> ServerProcess:
        with self._lock:
            n = len(self.nodes)
            workdir = self.base / f"node{n}"
            workdir.mkdir(parents=True, exist_ok=True)
            # Each node has an env file of its own, as on machines of their own.
            node = ServerProcess(app_path(self.app), self.db_url, workdir / "server.log",  # type: ignore[arg-type]
                                 admin_key=TEST_ADMIN_KEY,
                                 extra_args=(*self.extra_args, "--env-file", str(workdir / "env.json")),
                                 extra_env={"NODE_NAME": f"node{n}"})
            self.nodes.append(node)
        return node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
            if node in _live_servers:
                _live_servers.remove(node)


def _start(c: Cluster) -> Cluster:
    with ThreadPoolExecutor(3) as pool:  # three nodes starting at once take turns on the catalog
        list(pool.map(lambda _: c.start_node(), range(3)))
    return c


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    c = _start(Cluster(pg_url, tmp_path))
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def job_cluster(pg_url: str, tmp_path: Path) -> Iterator[Cluster]:
    """Three nodes of tests/apps/cluster (each run records $NODE_NAME: node0, node1, node2)."""
    c = _start(Cluster(pg_url, tmp_path, JOBS_APP, ("--node-timeout", str(NODE_TIMEOUT_S))))
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


# -- scheduled functions and crons on three server processes ------------------------------------------

async def watch(node: ServerProcess, path: str, args: dict, done, timeout: float = 30.0):
    """Subscribe to a query on `node` and wait (on its Transitions, not a timer) until
    `done(value)`; returns that value."""
    from test_sync_protocol import Conn

    conn = await Conn.open(node)
    try:
        (qid,) = await conn.add((path, args))
        async with asyncio.timeout(timeout):
            while True:
                await conn.until(lambda m: m["type"] == "Transition")
                result = conn.results.get(qid)
                if result is not None:
                    assert result["type"] == "QueryUpdated", result
                    if done(result["value"]):
                        return result["value"]
    finally:
        await conn.close()


async def test_scheduled_functions_and_a_cron_run_once_per_due_time_across_three_serve_processes(
        job_cluster: Cluster) -> None:
    """Every node finds every due job (a job scheduled through node A wakes the schedulers of B
    and C too): 60 mutations and 30 actions scheduled at once each run exactly once, and an
    every-second cron's planned runs each run once, whichever nodes win them."""
    a, b, c = job_cluster.nodes
    tag = f"s-{uuid.uuid4().hex[:8]}"
    ids = mutation(a, "jobs:scheduleMany", {"tag": tag, "n": 60, "kind": "mutation"})
    ids += mutation(b, "jobs:scheduleMany", {"tag": tag, "n": 30, "kind": "action"})
    assert isinstance(ids, list) and len(ids) == 90
    states = await watch(c, "jobs:states", {"ids": ids}, lambda v: all(s["kind"] == "success" for s in v))
    assert len(states) == 90
    runs = query(a, "jobs:runs", {"tag": tag})
    assert isinstance(runs, list) and len(runs) == 90, len(runs)  # none ran twice
    mutation(c, "jobs:setFlag", {"name": "tick", "on": True})
    ticks = await watch(b, "jobs:runs", {"tag": "tick"}, lambda v: len(v) >= 6)
    mutation(c, "jobs:setFlag", {"name": "tick", "on": False})
    ticks = query(a, "jobs:runs", {"tag": "tick"})
    assert isinstance(ticks, list)
    planned = sorted(t["planned"] for t in ticks)
    assert len(set(planned)) == len(planned), planned  # no planned run ran twice
    assert all((later - earlier) % 1000 == 0 and later > earlier
               for earlier, later in zip(planned, planned[1:])), planned  # planned times of one job
    print("scheduled runs per node:", {n: sum(r["node"] == n for r in runs) for n in ("node0", "node1", "node2")},
          "ticks per node:", {n: sum(t["node"] == n for t in ticks) for n in ("node0", "node1", "node2")})


def test_environment_variables_set_through_one_node_are_seen_by_every_node(job_cluster: Cluster,
                                                                           tmp_path: Path) -> None:
    """`npx convex env set` through node A reaches functions on B and C (the variables live in the
    database; each node's own env file stays unused), `npx convex env list` through C lists it,
    and `python -m engine env remove --db postgresql://...` (no node involved) removes it for all."""
    import subprocess

    from test_convex_cli import _project, npx

    a, b, c = job_cluster.nodes
    project = _project(tmp_path)

    def seen_everywhere(expected: object) -> None:
        for node in (a, b, c):  # each node re-reads them when notified: poll until it has
            deadline = time.monotonic() + 10
            while query(node, "jobs:envValue", {"name": "GREETING"}) != expected:
                assert time.monotonic() < deadline, (node, expected)

    done = npx(a, project, "env", "set", "GREETING", "hello from a")
    assert done.returncode == 0, done.stderr
    seen_everywhere("hello from a")
    listed = npx(c, project, "env", "list")
    assert listed.returncode == 0 and "GREETING=hello from a" in listed.stdout, (listed.stdout, listed.stderr)
    removed = subprocess.run([sys.executable, "-m", "engine", "env", "remove", "GREETING", "--app", str(JOBS_APP),
                              "--db", job_cluster.db_url], capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0 and "Removed GREETING from the database" in removed.stdout, removed
    assert "engine-test-pw" not in removed.stdout + removed.stderr  # the password is never shown
    seen_everywhere(None)
    assert not any((job_cluster.base / f"node{i}" / "env.json").exists() for i in range(3))


def test_the_cli_verbs_work_against_any_node_of_a_postgres_deployment(job_cluster: Cluster, tmp_path: Path) -> None:
    """`python -m engine run / data / export / import --url` and `npx convex run / data / import`
    through different nodes of one PostgreSQL deployment see one database."""
    import json
    import subprocess
    import zipfile

    from test_convex_cli import _project, npx

    a, b, c = job_cluster.nodes
    project = _project(tmp_path)

    def engine(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([sys.executable, "-m", "engine", *args, "--app", str(JOBS_APP)],
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "CONVEX_ADMIN_KEY": TEST_ADMIN_KEY})
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    engine("run", "jobs:setFlag", '{"name": "from-run", "on": true}', "--url", a.url)
    ran = npx(b, project, "run", "jobs:setFlag", '{"name": "from-npx", "on": false}')
    assert ran.returncode == 0, ran.stderr
    rows = [json.loads(line) for line in engine("data", "flags", "--url", c.url).stdout.splitlines()]
    assert sorted((r["name"], r["on"]) for r in rows) == [("from-npx", False), ("from-run", True)]
    listed = npx(a, project, "data", "flags")
    assert listed.returncode == 0 and "from-npx" in listed.stdout and "from-run" in listed.stdout, listed.stdout
    snapshot = tmp_path / "snap.zip"
    engine("export", "--url", b.url, "--path", str(snapshot))
    assert len(zipfile.ZipFile(snapshot).read("flags/documents.jsonl").splitlines()) == 2
    engine("run", "jobs:setFlag", '{"name": "later", "on": true}', "--url", c.url)
    engine("import", "--url", c.url, "--path", str(snapshot), "--replace")  # back to the snapshot's flags
    names = sorted(r["name"] for r in (json.loads(line) for line in
                                       engine("data", "flags", "--url", a.url).stdout.splitlines()))
    assert names == ["from-npx", "from-run"]
    imported = npx(b, project, "import", "--table", "flags", "--append", "-y", str(_jsonl(tmp_path)))
    assert imported.returncode == 0, (imported.stdout, imported.stderr)
    assert sorted(query(c, "jobs:flagNames", {})) == ["appended", "from-npx", "from-run"]  # type: ignore[arg-type]


def _jsonl(tmp_path: Path) -> Path:
    path = tmp_path / "more.jsonl"
    path.write_text('{"name": "appended", "on": true}\n')
    return path


async def test_a_killed_nodes_actions_in_progress_are_settled_by_the_survivors(job_cluster: Cluster) -> None:
    """A scheduled action hangs on some node; while that node lives, nobody touches its run (for
    several node timeouts); once it is killed (-9), a survivor records the run failed within about
    twice `--node-timeout`, and it never runs again. Then a cron's action hangs on a survivor,
    that one is killed too, and the last node records that run failed and runs the cron again."""
    from engine.scheduler import NODE_LOST

    by_name = {f"node{i}": node for i, node in enumerate(job_cluster.nodes)}
    tag = f"h-{uuid.uuid4().hex[:8]}"
    (job,) = mutation(job_cluster.nodes[0], "jobs:scheduleMany", {"tag": tag, "n": 1, "kind": "hang"})  # type: ignore[misc]
    (run,) = await watch(job_cluster.nodes[0], "jobs:runs", {"tag": tag}, lambda v: len(v) == 1)
    victim = by_name.pop(run["node"])
    observer = next(iter(by_name.values()))
    # Alive: its run stays in progress through several timeouts (heartbeats keep claiming it).
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await watch(observer, "jobs:states", {"ids": [job]}, lambda v: v[0]["kind"] != "inProgress",
                    timeout=4 * NODE_TIMEOUT_S)
    assert time.monotonic() - started >= 4 * NODE_TIMEOUT_S
    victim.kill()
    killed = time.monotonic()
    (state,) = await watch(observer, "jobs:states", {"ids": [job]}, lambda v: v[0]["kind"] != "inProgress")
    settled_in = time.monotonic() - killed
    assert state == {"kind": "failed", "error": NODE_LOST}, state
    assert query(observer, "jobs:runs", {"tag": tag}) == [run]  # at most once: never run again
    print(f"a killed node's action settled {settled_in:.2f} s after the kill (node timeout {NODE_TIMEOUT_S} s)")

    # A cron's action: the cron is planned again once its lost run is recorded.
    mutation(observer, "jobs:setFlag", {"name": "hang", "on": True})
    (hung,) = await watch(observer, "jobs:runs", {"tag": "work-hang"}, lambda v: len(v) == 1)
    mutation(observer, "jobs:setFlag", {"name": "hang", "on": False})
    victim = by_name.pop(hung["node"])
    (last,) = by_name.values()
    victim.kill()
    jobs = await watch(last, "jobs:cronJobs", {},
                       lambda v: (v["work"]["lastRun"] or {}).get("scheduledTime") == hung["planned"])
    assert jobs["work"]["lastRun"]["outcome"] == "failed" and jobs["work"]["lastRun"]["error"] == NODE_LOST
    later = await watch(last, "jobs:runs", {"tag": "work"},
                        lambda v: any(r["planned"] > hung["planned"] for r in v))
    assert {r["node"] for r in later if r["planned"] > hung["planned"]} == {next(iter(
        name for name, node in (("node0", job_cluster.nodes[0]), ("node1", job_cluster.nodes[1]),
                                ("node2", job_cluster.nodes[2])) if node is last))}
    assert query(last, "jobs:runs", {"tag": "work-hang"}) == [hung]


async def test_a_stopped_nodes_action_is_settled_after_the_grace_and_a_live_nodes_never(
        pg_url: str) -> None:
    """NodeLiveness, in process with its time injected: a run claimed by a live node's heartbeat is
    never taken however long it runs; once that node stops (gracefully: its heartbeat row goes and
    the action it cut off stays inProgress), another node records the run failed only after the
    grace period, and a run recorded meanwhile by a racing node is not recorded twice."""
    from engine.scheduler import NODE_LOST

    clock = ManualClock(datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc))
    # A long timeout (heartbeat rows stay fresh), and the rounds driven here, not in the background.
    # B's and C's clocks are an hour behind: the job is not due there, so only A tries to run it
    # (a node trying to claim a job lists it among its runs meanwhile).
    a = await Deployment.open(JOBS_APP, pg_url, clock=clock, node_timeout=1000)
    b = await Deployment.open(JOBS_APP, pg_url, clock=ManualClock(clock.now_ms() - HOUR_MS), node_timeout=1000)
    c = await Deployment.open(JOBS_APP, pg_url, clock=ManualClock(clock.now_ms() - HOUR_MS), node_timeout=1000)
    open_deps = [a, b, c]
    try:
        assert a.liveness is not None and b.liveness is not None and c.liveness is not None
        for dep in open_deps:
            await dep.liveness.pause()
        grace = b.liveness.grace_s
        for dep in open_deps:  # the crons' first runs (due at start) are over
            await dep.crons.drain()
        scheduled = await a.call("jobs:scheduleMany", {"tag": "t", "n": 1.0, "kind": "hang"}, kind="mutation",
                                 auth=Auth())
        assert scheduled.success, scheduled.error_message
        (job,) = scheduled.value
        await a.scheduler.poll()  # A launches the action: inProgress, then it hangs
        await asyncio.wait_for(sys.modules[f"{a.app.package}.functions._gates"].started("t").wait(), 30)
        await a.liveness.check()  # A's heartbeat claims it
        # B's and C's rounds run at these instants only: an origin of 0 keeps every difference exact (from
        # time.monotonic(), t0 + 201 * grace - (t0 + 200 * grace) can round to just under grace)
        t0 = 0.0
        assert await b.liveness.check(now=t0) == [] and await c.liveness.check(now=t0) == []
        assert await b.liveness.check(now=t0 + 100 * grace) == []  # claimed by a live node: never taken
        states = (await b.call("jobs:states", {"ids": [job]}, kind="query", auth=Auth())).value
        assert states[0]["kind"] == "inProgress"
        open_deps.remove(a)
        await a.close()  # cuts the action off; its heartbeat row goes
        assert await b.liveness.check(now=t0 + 200 * grace) == []  # unclaimed from now: suspected
        assert await c.liveness.check(now=t0 + 200 * grace) == []
        assert await b.liveness.check(now=t0 + 200 * grace + grace / 2) == []  # not for long enough
        assert await b.liveness.check(now=t0 + 201 * grace) == [job]
        assert await c.liveness.check(now=t0 + 201 * grace) == []  # B recorded it first
        states = (await c.call("jobs:states", {"ids": [job]}, kind="query", auth=Auth())).value
        assert states == [{"kind": "failed", "error": NODE_LOST}]
    finally:
        for dep in open_deps:
            await dep.close()


async def test_nodes_syncing_their_crons_at_once_register_each_job_once(pg_url: str, tmp_path: Path) -> None:
    """Three nodes registering a new cron job at the same moment (a deploy reaching them all) make
    one `_cron_jobs` document of it, not one per node: the registration reads the jobs' range in
    its read set, so the late ones conflict, re-run and find the job there."""
    app = tmp_path / "app"
    for rel, text in CRON_APP.items():
        (app / rel).parent.mkdir(parents=True, exist_ok=True)
        (app / rel).write_text(dedent(text))
    start = datetime(2026, 3, 2, 12, 0, 30, tzinfo=timezone.utc)
    nodes = [await Deployment.open(app, pg_url, clock=ManualClock(start)) for _ in range(3)]
    try:
        for dep in nodes:
            assert dep.app.crons is not None
            dep.app.crons.interval("extra", {"minutes": 5}, "ticks:tick")
        await asyncio.gather(*(dep.crons.sync() for dep in nodes))
        for dep in nodes:
            snapshot = await dep.persistence.snapshot()
            try:
                table = dep.catalog.by_name["_cron_jobs"]
                names = sorted([decode_json(raw)["name"] async for _, _, raw in
                                snapshot.scan(table.indexes["by_name"].id, b"", b"\xff", False)])
            finally:
                snapshot.close()
            assert names == ["every minute", "extra"], names
    finally:
        for dep in nodes:
            await dep.close()


async def test_a_postgres_restart_does_not_make_a_node_take_a_live_nodes_run(pg_server) -> None:
    """The database restarts, for longer than the node timeout (A's last heartbeat is made older
    than the timeout by hand: the outage's length is not up to the test): every heartbeat is stale
    when it is back, but the node running the action heartbeats again before the grace is over,
    so the other node never records its run failed (rounds driven here; the restart is real)."""
    url = pg_server.create_database(vector=False)
    timeout = 1000.0
    clock = ManualClock(datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc))
    a = await Deployment.open(JOBS_APP, url, clock=clock, node_timeout=timeout)
    # B's clock is an hour behind: the job is not due there, so B never tries to run it (a node
    # trying to claim a job lists it among its runs meanwhile).
    b = await Deployment.open(JOBS_APP, url, clock=ManualClock(clock.now_ms() - HOUR_MS), node_timeout=timeout)
    try:
        for dep in (a, b):
            await dep.crons.drain()
            await dep.liveness.pause()
        scheduled = await a.call("jobs:scheduleMany", {"tag": "r", "n": 1.0, "kind": "hang"}, kind="mutation",
                                 auth=Auth())
        assert scheduled.success, scheduled.error_message
        (job,) = scheduled.value
        await a.scheduler.poll()
        await asyncio.wait_for(sys.modules[f"{a.app.package}.functions._gates"].started("r").wait(), 30)
        await a.liveness.check()
        pg_server.restart()
        pg_server.psql(f"UPDATE nodes SET seen = seen - interval '{2 * timeout} seconds' "
                       f"WHERE node = '{a.persistence.node_id}'", db=url.rsplit("/", 1)[1])

        async def round(dep: Deployment, now: float | None = None) -> list[str]:
            for _ in range(20):  # the first statements after a restart may meet dead pooled connections
                try:
                    return await dep.liveness.check(now=now)
                except EngineError:
                    continue
            raise AssertionError("the database did not come back")

        t0 = time.monotonic()
        assert await round(b, t0) == [] and b.liveness.suspected() == [job]  # A's run is unclaimed now
        assert await round(a) == []  # A is back and claims it
        assert await round(b, t0 + 100 * b.liveness.grace_s) == []  # claimed again: never taken
        assert b.liveness.suspected() == []
        states = (await b.call("jobs:states", {"ids": [job]}, kind="query", auth=Auth())).value
        assert states[0]["kind"] == "inProgress"
    finally:
        await a.close()
        await b.close()


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


# -- search and vector indexes across the cluster -----------------------------------------------------

SEARCH_APP = Path(__file__).resolve().parent / "apps" / "search"


async def test_a_search_subscription_on_node_b_sees_matching_writes_through_node_a(pg_url: str, tmp_path: Path) -> None:
    """Two `serve` processes of the search app start together on one database (the indexes are
    registered once), a client subscribed to a search on node B gets node A's matching writes in
    relevance order (search reads are in the read set; B ingests A's written keys), never a
    non-matching one, and a vector search on B finds what A wrote."""
    import asyncpg

    from test_sync_protocol import Conn

    nodes = [ServerProcess(app_path(SEARCH_APP), pg_url, tmp_path / f"node{i}.log",  # type: ignore[arg-type]
                           admin_key=TEST_ADMIN_KEY) for i in range(2)]
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(lambda n: n.start(), nodes))
    a, b = nodes
    try:
        conn = await asyncpg.connect(pg_url)
        try:
            registered = sorted((r[0], r[1]) for r in await conn.fetch("SELECT table_name, name FROM search_indexes_"))
        finally:
            await conn.close()
        assert registered == [("foods", "by_embedding"), ("messages", "search_body")]

        watcher = await Conn.open(b)
        try:
            (q,) = await watcher.add(("messages:search", {"text": "hello", "channel": "ops"}))

            seen_value = False

            def update_of(msg: dict) -> list | None:
                nonlocal seen_value
                for mod in msg.get("modifications", []) if msg["type"] == "Transition" else []:
                    if mod["queryId"] == q:
                        # B may answer before it learns that the indexes (of empty tables) are ready:
                        # that query fails and re-runs once they are (engine.search.manager)
                        if (not seen_value and mod["type"] == "QueryFailed"
                                and "backfilling and not available to query yet" in mod["errorMessage"]):
                            return None
                        assert mod["type"] == "QueryUpdated", mod
                        seen_value = True
                        return mod["value"]
                return None

            first, _ = await watcher.until(lambda m: update_of(m) is not None)
            assert update_of(first) == []
            mutation(a, "messages:send", {"body": "goodbye everyone", "channel": "ops"})  # no term
            mutation(a, "messages:send", {"body": "hello there", "channel": "random"})  # another channel
            mutation(a, "messages:send", {"body": "hello world", "channel": "ops"})
            msg, before = await watcher.until(lambda m: update_of(m) is not None)
            assert update_of(msg) == ["hello world"]
            assert all(update_of(m) is None for m in before)  # the two unrelated writes re-ran nothing visible
            mutation(a, "messages:send", {"body": "hello hello", "channel": "ops"})
            msg, _ = await watcher.until(lambda m: update_of(m) is not None)
            assert update_of(msg) == ["hello hello", "hello world"]  # BM25: two occurrences rank first
        finally:
            await watcher.close()

        mutation(a, "foods:add", {"description": "pho", "cuisine": "Vietnamese", "embedding": [1.0, 0.0, 0.0, 0.0]})
        mutation(a, "foods:add", {"description": "tom yum", "cuisine": "Thai", "embedding": [0.0, 1.0, 0.0, 0.0]})
        r = httpx.post(f"{b.url}/api/action", json={"path": "foods:similar", "args": {"vector": [0.9, 0.1, 0.0, 0.0]},
                                                     "format": "json"}, timeout=30).json()
        assert r["status"] == "success", r
        assert [f["description"] for f in r["value"]] == ["pho", "tom yum"]
    finally:
        for node in nodes:
            node.stop()
            if node in _live_servers:
                _live_servers.remove(node)


async def _two_nodes_adding_a_search_index(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           caplog: pytest.LogCaptureFixture, *, lease_poll_s: float):
    """2 000 notes written without a search index, then two nodes (in this process) starting on a
    schema that adds one: (app, node a, node b). Backfill chunks of 50; b's lease looks again every
    `lease_poll_s`."""
    import logging

    from engine.search import manager, pg_store
    from test_search_backfill import SCHEMA_PLAIN, SCHEMA_SEARCH, make_app

    monkeypatch.setattr(manager, "CHUNK", 50)
    monkeypatch.setattr(pg_store, "LEASE_POLL_S", lease_poll_s)
    seed = await Deployment.open(make_app(tmp_path / "plain", SCHEMA_PLAIN), pg_url)
    try:
        assert (await seed.call("notes:fill", {"count": 2000.0, "start": 0.0}, kind="mutation", auth=Auth())).success
    finally:
        await seed.close()
    app = make_app(tmp_path / "app", SCHEMA_SEARCH)
    caplog.set_level(logging.INFO, logger="engine.search")
    a = await Deployment.open(app, pg_url)
    try:
        b = await Deployment.open(app, pg_url)
    except BaseException:
        await a.close()
        raise
    return app, a, b


async def test_one_node_backfills_an_added_index_and_another_takes_over_when_it_stops(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """An index added to the schema of a cluster: the first node to start registers it and
    backfills it, the second attaches the same index and waits (one backfill per cluster); when the
    first stops part-way, the second takes over from the stored cursor."""
    from test_search_backfill import texts, until

    app, a, b = await _two_nodes_adding_a_search_index(pg_url, tmp_path, monkeypatch, caplog, lease_poll_s=0.02)
    a_open = True
    try:
        info_a = a.catalog.table("notes").search["search_text"]
        info_b = b.catalog.table("notes").search["search_text"]
        assert info_a.id == info_b.id and not info_b.ready
        await until(lambda: any("Another node is backfilling" in r.getMessage() for r in caplog.records))
        await until(lambda: info_a.progress[0] >= 200)
        assert info_b.progress[0] == 0  # b waits
        a_open = False
        await a.close()  # part-way: its lease goes with its connection
        await b.search_indexes.wait_ready()
        assert info_b.ready and 0 < info_b.progress[0] <= 2000 - 200  # resumed from a's cursor
        assert len(await texts(b, "note")) == 1024  # (the take(1024) of the helper: all 2 000 match)
        assert len(await texts(b, "even")) == 1000

        # A third node starting now finds the index ready; the vector index too.
        c = await Deployment.open(app, pg_url)
        try:
            await c.search_indexes.wait_ready()
            assert c.catalog.table("notes").search["search_text"].ready
            assert c.catalog.table("notes").search["by_vec"].ready
        finally:
            await c.close()
    finally:
        await b.close()
        if a_open:
            await a.close()


async def test_a_node_learns_that_another_nodes_backfill_finished_before_its_subscriptions_re_run(
        pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Node B waits while A backfills. The commit that finishes it writes the index's READY key (what
    a query that failed with IndexBackfillingError re-runs on) and its "ready" state; B, ingesting
    that commit, makes its own copy of the index ready before it tells its listeners (the
    subscriptions) about the commit, so the re-run succeeds. (B's lease never looks again here.)"""
    from test_search_backfill import texts, until

    _, a, b = await _two_nodes_adding_a_search_index(pg_url, tmp_path, monkeypatch, caplog, lease_poll_s=3600.0)
    try:
        info_b = b.catalog.table("notes").search["search_text"]
        seen: list[tuple[int, bool]] = []
        b.committer.listeners.insert(0, lambda ts: seen.append((ts, info_b.ready)))
        await until(lambda: any("Another node is backfilling" in r.getMessage() for r in caplog.records))
        await a.search_indexes.wait_ready()
        finished = a.committer.durable_ts  # the commit of the last chunks (text and vector)
        await until(lambda: any(ts >= finished for ts, _ in seen))  # B ingests it (NOTIFY)
        assert False in [ready for ts, ready in seen if ts < finished]  # B saw the chunks before it
        assert [ready for ts, ready in seen if ts >= finished][0] is True
        assert len(await texts(b, "odd")) == 1000
    finally:
        await b.close()
        await a.close()
