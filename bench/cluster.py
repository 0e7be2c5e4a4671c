"""PostgreSQL and several nodes: the engine on Postgres beside raw asyncpg (and beside SQLite), in one run.

    python -m bench.cluster            # full run (~2 min)
    python -m bench.cluster --quick    # seconds

Starts its own PostgreSQL (tests/pg_harness.py: initdb in a temp folder, loopback, fsync on; a fresh
database per figure). Figures, each beside its baseline measured in the same run:
(a) commit throughput: `items:add` mutations, sequential and 32 concurrent callers, on one node
    over PostgreSQL — beside raw asyncpg INSERT + COMMIT of the same document bytes (one connection
    sequential; 32 connections concurrent) and beside the engine on SQLite with raw aiosqlite
    (bench.core's functions);
(b) contended read-modify-write: N concurrent increments of ONE counter through one node (every
    increment applied) — beside raw asyncpg `SELECT ... FOR UPDATE` + `UPDATE` + COMMIT of one row
    with 8 connections;
(c) cross-node invalidation: an npm ConvexClient sets a counter through node A; the latency until
    a ConvexClient subscribed on node B sees the new value (p50/p99) — beside the same with the
    subscriber on node A itself, and on a single SQLite node;
(d) 1 000 subscribers spread over 3 nodes (334 each): mutation on A -> the last subscriber updated;
(e) contended counter across nodes: 50 npm ConvexClients per node on 3 nodes incrementing ONE
    counter (every increment applied) — beside the same 50 clients on one SQLite node.
Writes bench/results/cluster.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from bench.core import APP as CORE_APP, engine_commits_concurrent, engine_commits_sequential, raw_commits  # noqa: E402
from engine.deployment import Auth, Deployment  # noqa: E402
from engine.ids import new_id  # noqa: E402
from engine.values import encode_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "cluster.json"
SYNC_APP = ROOT / "tests" / "apps" / "sync"
JS = ROOT / "tests" / "js"
ADMIN_KEY = "bench-cluster|0123456789abcdef"
NOBODY = Auth()

FULL = {"commits": 2000, "callers": 32, "per_caller": 60, "increments": 1000, "rounds": 200, "fan_rounds": 20,
        "subscribers": 1000, "cluster_clients": 50, "cluster_per_client": 40}
QUICK = {"commits": 100, "callers": 8, "per_caller": 10, "increments": 100, "rounds": 10, "fan_rounds": 3,
         "subscribers": 30, "cluster_clients": 5, "cluster_per_client": 5}


def _doc(i: int) -> tuple[str, bytes]:
    doc_id = new_id(10001)
    return doc_id, encode_json({"_id": doc_id, "_creationTime": time.time() * 1000, "group": "bench", "rank": float(i)})


async def raw_pg_commits(url: str, n: int, connections: int) -> float:
    """INSERT + COMMIT per document: the floor a Postgres-backed engine pays per commit."""
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    try:
        await conns[0].execute("CREATE TABLE IF NOT EXISTS raw_docs (id TEXT PRIMARY KEY, value BYTEA NOT NULL)")
        per = n // connections

        async def worker(conn: Any) -> None:
            for i in range(per):
                doc_id, value = _doc(i)
                async with conn.transaction():
                    await conn.execute("INSERT INTO raw_docs (id, value) VALUES ($1, $2)", doc_id, value)

        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        return per * connections / (time.perf_counter() - start)
    finally:
        for c in conns:
            await c.close()


async def raw_pg_counter(url: str, n: int, connections: int = 8) -> float:
    conns = [await asyncpg.connect(url) for _ in range(connections)]
    try:
        await conns[0].execute("CREATE TABLE IF NOT EXISTS raw_counter (id INT PRIMARY KEY, v BIGINT NOT NULL)")
        await conns[0].execute("INSERT INTO raw_counter VALUES (1, 0) ON CONFLICT (id) DO UPDATE SET v = 0")
        per = n // connections

        async def worker(conn: Any) -> None:
            for _ in range(per):
                async with conn.transaction():
                    v = await conn.fetchval("SELECT v FROM raw_counter WHERE id = 1 FOR UPDATE")
                    await conn.execute("UPDATE raw_counter SET v = $1 WHERE id = 1", v + 1)

        start = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in conns))
        rate = per * connections / (time.perf_counter() - start)
        assert await conns[0].fetchval("SELECT v FROM raw_counter WHERE id = 1") == per * connections
        return rate
    finally:
        for c in conns:
            await c.close()


async def engine_counter(dep: Deployment, n: int) -> float:
    name = f"hot-{uuid.uuid4().hex[:6]}"
    start = time.perf_counter()
    results = await asyncio.gather(*(dep.call("counters:increment", {"name": name}, kind="mutation", auth=NOBODY)
                                     for _ in range(n)))
    rate = n / (time.perf_counter() - start)
    failed = [r.error_message for r in results if not r.success]
    if failed:
        raise RuntimeError(f"{len(failed)} increments failed: {failed[0]}")
    value = (await dep.call("counters:get", {"name": name}, kind="query", auth=NOBODY)).value
    if value != float(n):
        raise RuntimeError(f"counter is {value}, expected {n}: an increment was lost")
    return rate


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))], 2)


def watch(write: str, watch_urls: list[str], rounds: int, subscribers: int = 1) -> dict[str, Any]:
    cfg = {"write": write, "watch": watch_urls, "name": f"w-{uuid.uuid4().hex[:8]}", "rounds": rounds,
           "subscribers": subscribers}
    done = subprocess.run(["node", str(JS / "cluster_watch.mjs"), json.dumps(cfg)], cwd=JS, capture_output=True,
                          text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"cluster_watch failed: {done.stderr[-2000:]}")
    out = json.loads(done.stdout)
    lat = out["latencyMs"]
    per_round = [max(lat[r * len(watch_urls) * subscribers:(r + 1) * len(watch_urls) * subscribers])
                 for r in range(rounds)]
    return {"p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99), "last_subscriber_p50_ms": pct(per_round, 0.5),
            "last_subscriber_p99_ms": pct(per_round, 0.99), "samples": len(lat)}


def contended(nodes: list[Any], single: Any, clients: int, per_client: int) -> dict[str, Any]:
    """`clients` npm ConvexClients per node incrementing ONE counter (tests/js/contention.mjs) on
    the three Postgres nodes at once, beside the same load on one SQLite node."""
    from concurrent.futures import ThreadPoolExecutor

    def load(servers: list[Any]) -> float:
        name = f"hot-{uuid.uuid4().hex[:6]}"
        cfg = lambda s: json.dumps({"url": s.url, "transport": "ws", "clients": clients, "perClient": per_client,  # noqa: E731
                                    "fn": "counters:increment", "name": name})
        start = time.perf_counter()
        with ThreadPoolExecutor(len(servers)) as pool:
            outs = list(pool.map(lambda s: subprocess.run(["node", str(JS / "contention.mjs"), cfg(s)], cwd=JS,
                                                          capture_output=True, text=True, timeout=600), servers))
        elapsed = time.perf_counter() - start
        results = [json.loads(o.stdout) for o in outs]
        total = clients * per_client * len(servers)
        if sum(r["failed"] for r in results) or max(r["final"] for r in results) != total:
            raise RuntimeError(f"contended counter: {results}")
        return total / elapsed

    cluster = load(nodes)
    one = load([single])
    return {"postgres_3_nodes_per_s": round(cluster), "sqlite_1_node_per_s": round(one),
            "clients_per_node": clients, "increments_per_client": per_client, "all_applied": True}


def start_server(db: str, workdir: Path) -> Any:
    from conftest import ServerProcess

    workdir.mkdir(parents=True, exist_ok=True)
    return ServerProcess(SYNC_APP, db, workdir / "server.log", admin_key=ADMIN_KEY).start()  # type: ignore[arg-type]


async def run_store_figures(sizes: dict[str, int], pg_db: Any, workdir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    raw_seq = await raw_pg_commits(pg_db(), sizes["commits"], 1)
    raw_conc = await raw_pg_commits(pg_db(), sizes["callers"] * sizes["per_caller"], sizes["callers"])
    dep = await Deployment.open(CORE_APP, pg_db())
    try:
        seq = await engine_commits_sequential(dep, sizes["commits"])
        conc = await engine_commits_concurrent(dep, sizes["callers"], sizes["per_caller"])
    finally:
        await dep.close()
    sqlite_raw = await raw_commits(workdir / "raw.sqlite3", sizes["commits"])
    dep = await Deployment.open(CORE_APP, workdir / "commits.sqlite3")
    try:
        sqlite_seq = await engine_commits_sequential(dep, sizes["commits"])
        sqlite_conc = await engine_commits_concurrent(dep, sizes["callers"], sizes["per_caller"])
    finally:
        await dep.close()
    out["commits"] = {
        "postgres": {"engine_sequential_per_s": round(seq), f"engine_{sizes['callers']}_callers_per_s": round(conc),
                     "raw_asyncpg_sequential_per_s": round(raw_seq),
                     f"raw_asyncpg_{sizes['callers']}_connections_per_s": round(raw_conc),
                     "sequential_vs_raw": round(seq / raw_seq, 2), "concurrent_vs_raw": round(conc / raw_conc, 2)},
        "sqlite": {"engine_sequential_per_s": round(sqlite_seq),
                   f"engine_{sizes['callers']}_callers_per_s": round(sqlite_conc),
                   "raw_aiosqlite_per_s": round(sqlite_raw)},
    }
    raw_counter = await raw_pg_counter(pg_db(), sizes["increments"])
    dep = await Deployment.open(CORE_APP, pg_db())
    try:
        counter = await engine_counter(dep, sizes["increments"])
    finally:
        await dep.close()
    out["hot_counter"] = {"engine_postgres_per_s": round(counter), "raw_asyncpg_8_connections_per_s": round(raw_counter),
                          "ratio": round(counter / raw_counter, 2), "increments": sizes["increments"],
                          "all_applied": True}
    return out


def run_cluster_figures(sizes: dict[str, int], pg_db: Any, workdir: Path) -> dict[str, Any]:
    url = pg_db()
    nodes = [start_server(url, workdir / f"node{i}") for i in range(3)]
    single = start_server(str(workdir / "single.sqlite3"), workdir / "sqlite")
    try:
        a, b, c = nodes
        out = {
            "cross_node_a_to_b": watch(a.url, [b.url], sizes["rounds"]),
            "same_node_postgres": watch(a.url, [a.url], sizes["rounds"]),
            "same_node_sqlite": watch(single.url, [single.url], sizes["rounds"]),
        }
        out["hot_counter_3_nodes"] = contended(nodes, single, sizes["cluster_clients"], sizes["cluster_per_client"])
        per = max(1, -(-sizes["subscribers"] // 3))  # at least `subscribers` in all (1 000 -> 3 x 334)
        out["fan_out_3_nodes"] = {"subscribers": per * 3,
                                  **watch(a.url, [a.url, b.url, c.url], sizes["fan_rounds"], per)}
        return out
    finally:
        for n in (*nodes, single):
            n.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.time()
    from pg_harness import PostgresServer, debian_bin_dir

    # Debian's PostgreSQL (15 on bookworm), as the published figures were measured on; the tests'
    # default (pgserver's 16, for pgvector) when it is not installed.
    server = PostgresServer(debian_bin_dir()).start()
    pg_db = server.create_database
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
            results = asyncio.run(run_store_figures(sizes, pg_db, Path(tmp)))
            results["invalidation"] = run_cluster_figures(sizes, pg_db, Path(tmp))
            version = asyncio.run(_pg_version(pg_db()))
    finally:
        server.close()
    report = {"benchmark": "cluster", "quick": args.quick, "sizes": sizes,
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
              "duration_s": round(time.time() - started, 1),
              "machine": {"python": platform.python_version(), "postgres": version, "cpus": os.cpu_count(),
                          "platform": platform.platform()},
              **results}
    out = args.out or (RESULTS.with_name("cluster.quick.json") if args.quick else RESULTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(results, indent=2))
    print(f"\nwrote {out}")
    return 0


async def _pg_version(url: str) -> str:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


if __name__ == "__main__":
    sys.exit(main())
