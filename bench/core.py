"""Engine-core benchmarks, each figure beside a baseline measured in the same run.

    python -m bench.core            # full run (the 1M-row load takes a few minutes)
    python -m bench.core --quick    # tiny sizes, seconds; what tests/test_core_bench.py runs

(a) commit throughput: `items:add` through `Deployment.call`, sequentially and from 32 concurrent
    callers, vs raw aiosqlite insert-and-commit in a loop on a file with the engine's pragmas
    (journal_mode=WAL, synchronous=NORMAL).
(b) a 10-row `with_index` query (`items:byRank`, group eq + rank gte, take 10) on a table of 1 000
    rows vs 1 000 000 rows. Both tables are loaded through `items:fill` mutations (5 000 inserts
    each, several in flight so function execution overlaps the writer thread), i.e. the normal
    Transaction/Committer path. Measurements alternate between the two deployments in small
    batches, so drift (CPU frequency, page cache) hits both alike.
(c) 200 concurrent read-modify-write increments of one counter (`counters:increment`), vs the same
    200 increments run one after another and 200 concurrent increments of 200 distinct counters.

Prints a table and writes bench/results/core.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from engine.deployment import Auth, Deployment
from engine.storage import SqlitePersistence
from engine.ids import new_id
from engine.values import encode_json

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "tests" / "apps" / "core"
RESULTS = Path(__file__).resolve().parent / "results" / "core.json"
NOBODY = Auth()
GROUPS = 50


@dataclass(frozen=True)
class Sizes:
    commits: int  # sequential commits, engine and raw
    callers: int  # concurrent callers
    per_caller: int
    small_rows: int
    big_rows: int
    load_batch: int  # inserts per loading mutation (big table)
    query_rounds: int  # queries per deployment
    increments: int


FULL = Sizes(commits=2000, callers=32, per_caller=100, small_rows=1_000, big_rows=1_000_000,
             load_batch=5000, query_rounds=3000, increments=200)
QUICK = Sizes(commits=100, callers=32, per_caller=4, small_rows=1_000, big_rows=20_000,
              load_batch=2000, query_rounds=200, increments=200)


async def ok(dep: Deployment, kind: str, path: str, args: dict[str, Any]) -> Any:
    outcome = await dep.call(path, args, kind=kind, auth=NOBODY)
    if not outcome.success:
        raise RuntimeError(f"{path} failed: {outcome.error_message}")
    return outcome.value


# -- (a) commit throughput -------------------------------------------------------------------------

async def raw_commits(path: Path, n: int) -> float:
    """Commits/s of a bare insert+commit loop: the floor any SQLite-backed engine pays per commit."""
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL"):
            await db.execute(f"PRAGMA {pragma}")
        await db.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        start = time.perf_counter()
        for i in range(n):
            doc_id = new_id(10001)
            value = encode_json({"_id": doc_id, "_creationTime": time.time() * 1000, "group": "bench",
                                 "rank": float(i)})
            await db.execute("BEGIN IMMEDIATE")
            await db.execute("INSERT INTO docs (id, value) VALUES (?, ?)", (doc_id, value))
            await db.execute("COMMIT")
        return n / (time.perf_counter() - start)
    finally:
        await db.close()


async def engine_commits_sequential(dep: Deployment, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        await ok(dep, "mutation", "items:add", {"group": "seq", "rank": float(i)})
    return n / (time.perf_counter() - start)


async def engine_commits_concurrent(dep: Deployment, callers: int, per_caller: int) -> float:
    async def caller(c: int) -> None:
        for i in range(per_caller):
            await ok(dep, "mutation", "items:add", {"group": f"conc{c}", "rank": float(i)})

    start = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    return callers * per_caller / (time.perf_counter() - start)


# -- (b) query latency vs table size ---------------------------------------------------------------

async def load(dep: Deployment, rows: int, batch: int, in_flight: int = 4) -> tuple[dict[str, list[tuple[int, int]]], float]:
    """Insert `rows` items in mutations of `batch` inserts; returns ({group: [(start, count)]}, rows/s)."""
    blocks: dict[str, list[tuple[int, int]]] = {}
    jobs = []
    for k in range(rows // batch):
        group = f"g{k % GROUPS}"
        blocks.setdefault(group, []).append((k * batch, batch))
        jobs.append({"group": group, "start": float(k * batch), "count": float(batch)})
    start = time.perf_counter()
    pending: set[asyncio.Task[Any]] = set()
    for done_rows, args in enumerate(jobs):
        if len(pending) >= in_flight:
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in finished:
                task.result()
        pending.add(asyncio.create_task(ok(dep, "mutation", "items:fill", args)))
        if rows >= 100_000 and done_rows % 20 == 19:
            elapsed = time.perf_counter() - start
            print(f"  loading: {(done_rows + 1) * batch:>9,} rows, {elapsed:6.1f} s", file=sys.stderr, flush=True)
    for task in pending:
        await task
    return blocks, rows / (time.perf_counter() - start)


def query_args(blocks: dict[str, list[tuple[int, int]]], rng: random.Random) -> dict[str, Any]:
    group = rng.choice(sorted(blocks))
    start, count = rng.choice(blocks[group])
    return {"group": group, "min": float(start + rng.randrange(count - 10)), "limit": 10.0}


async def query_latencies(deps: list[tuple[Deployment, dict[str, list[tuple[int, int]]]]],
                          rounds: int, batch: int = 20) -> list[list[float]]:
    """Per-deployment latencies (seconds) of the 10-row query, alternating deployments per batch."""
    rng = random.Random(7)
    out: list[list[float]] = [[] for _ in deps]
    for dep, blocks in deps:  # warm-up: caches, first-use code paths
        for _ in range(50):
            await ok(dep, "query", "items:byRank", query_args(blocks, rng))
    for _ in range(0, rounds, batch):
        for i, (dep, blocks) in enumerate(deps):
            for _ in range(batch):
                args = query_args(blocks, rng)
                t = time.perf_counter()
                docs = await ok(dep, "query", "items:byRank", args)
                out[i].append(time.perf_counter() - t)
                assert len(docs) == 10 and docs[0]["rank"] == args["min"], (args, docs[:1])
    return out


# -- (c) contended read-modify-write ----------------------------------------------------------------

async def increments(dep: Deployment, names: list[str], concurrent: bool) -> float:
    start = time.perf_counter()
    if concurrent:
        results = await asyncio.gather(*(dep.call("counters:increment", {"name": n}, kind="mutation", auth=NOBODY)
                                         for n in names))
        failed = [r.error_message for r in results if not r.success]
        if failed:
            raise RuntimeError(f"{len(failed)} increments failed: {failed[0]}")
    else:
        for n in names:
            await ok(dep, "mutation", "counters:increment", {"name": n})
    elapsed = time.perf_counter() - start
    for n in set(names):
        expected = float(names.count(n))
        value = await ok(dep, "query", "counters:get", {"name": n})
        if value != expected:
            raise RuntimeError(f"counter {n!r} is {value}, expected {expected}: an increment was lost")
    return len(names) / elapsed


# -- driver ------------------------------------------------------------------------------------------

def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def summarize(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)
    return {"median_ms": ms(statistics.median(ordered)), "p95_ms": ms(ordered[int(len(ordered) * 0.95) - 1]),
            "mean_ms": ms(statistics.fmean(ordered)), "n": len(ordered)}


async def run(sizes: Sizes, workdir: Path, mmap_bytes: int = 0) -> dict[str, Any]:
    results: dict[str, Any] = {}

    def store(name: str) -> SqlitePersistence:  # the engine's store, with the readers' mmap setting
        return SqlitePersistence(workdir / name, mmap_bytes=mmap_bytes)

    # (a)
    raw = await raw_commits(workdir / "raw.sqlite3", sizes.commits)
    dep = await Deployment.open(APP, workdir / "commits.sqlite3")
    try:
        seq = await engine_commits_sequential(dep, sizes.commits)
        conc = await engine_commits_concurrent(dep, sizes.callers, sizes.per_caller)
    finally:
        await dep.close()
    results["commits"] = {
        "raw_aiosqlite_per_s": round(raw), "engine_sequential_per_s": round(seq),
        f"engine_{sizes.callers}_callers_per_s": round(conc),
        "sequential_vs_raw": round(seq / raw, 3), "concurrent_vs_raw": round(conc / raw, 3),
        "commits": sizes.commits, "concurrent_commits": sizes.callers * sizes.per_caller,
    }

    # (b)
    small = await Deployment.open(APP, workdir / "small.sqlite3", persistence=store("small.sqlite3"))
    big = await Deployment.open(APP, workdir / "big.sqlite3", persistence=store("big.sqlite3"))
    try:
        small_blocks, _ = await load(small, sizes.small_rows, sizes.small_rows // GROUPS)
        t = time.perf_counter()
        big_blocks, big_rate = await load(big, sizes.big_rows, sizes.load_batch)
        big_load_s = time.perf_counter() - t
        lat_small, lat_big = await query_latencies([(small, small_blocks), (big, big_blocks)], sizes.query_rounds)
    finally:
        await small.close()
        await big.close()
    s_small, s_big = summarize(lat_small), summarize(lat_big)
    results["query_10_rows"] = {
        "small_rows": sizes.small_rows, "big_rows": sizes.big_rows,
        "small": s_small, "big": s_big,
        "median_ratio_big_vs_small": round(s_big["median_ms"] / s_small["median_ms"], 3),
        "p95_ratio_big_vs_small": round(s_big["p95_ms"] / s_small["p95_ms"], 3),
        "target_ratio": 1.5,
        "reader_mmap_bytes": mmap_bytes,
        "big_load": {"seconds": round(big_load_s, 1), "rows_per_s": round(big_rate),
                     "path": f"items:fill mutations of {sizes.load_batch} inserts via Deployment.call, 4 in flight"},
        "big_db_bytes": sum(f.stat().st_size for f in workdir.glob("big.sqlite3*")),
    }

    # (c)
    dep = await Deployment.open(APP, workdir / "counter.sqlite3")
    try:
        n = sizes.increments
        hot = await increments(dep, ["hot"] * n, concurrent=True)
        sequential = await increments(dep, ["seq"] * n, concurrent=False)
        distinct = await increments(dep, [f"c{i}" for i in range(n)], concurrent=True)
    finally:
        await dep.close()
    results["hot_counter"] = {
        "increments": n, "all_applied": True,
        "concurrent_one_doc_per_s": round(hot), "sequential_one_doc_per_s": round(sequential),
        "concurrent_distinct_docs_per_s": round(distinct),
        "hot_vs_sequential": round(hot / sequential, 3),
    }
    return results


def table(results: dict[str, Any], callers: int) -> str:
    c, q, h = results["commits"], results["query_10_rows"], results["hot_counter"]
    rows = [
        ("(a) commits/s, engine sequential", f"{c['engine_sequential_per_s']:,}",
         f"raw aiosqlite {c['raw_aiosqlite_per_s']:,}", f"{c['sequential_vs_raw']:.2f}x"),
        (f"(a) commits/s, engine {callers} callers", f"{c[f'engine_{callers}_callers_per_s']:,}",
         f"raw aiosqlite {c['raw_aiosqlite_per_s']:,}", f"{c['concurrent_vs_raw']:.2f}x"),
        (f"(b) 10-row query median, {q['big_rows']:,} rows", f"{q['big']['median_ms']:.3f} ms",
         f"{q['small_rows']:,} rows {q['small']['median_ms']:.3f} ms", f"{q['median_ratio_big_vs_small']:.2f}x"),
        (f"(b) 10-row query p95, {q['big_rows']:,} rows", f"{q['big']['p95_ms']:.3f} ms",
         f"{q['small_rows']:,} rows {q['small']['p95_ms']:.3f} ms", f"{q['p95_ratio_big_vs_small']:.2f}x"),
        (f"(b) load {q['big_rows']:,} rows", f"{q['big_load']['seconds']} s",
         f"{q['big_load']['rows_per_s']:,} rows/s", ""),
        (f"(c) {h['increments']} concurrent RMW, one doc", f"{h['concurrent_one_doc_per_s']:,}/s",
         f"sequential {h['sequential_one_doc_per_s']:,}/s", f"{h['hot_vs_sequential']:.2f}x"),
        (f"(c) {h['increments']} concurrent RMW, distinct docs", f"{h['concurrent_distinct_docs_per_s']:,}/s",
         "", ""),
    ]
    header = ("benchmark", "engine", "baseline (same run)", "ratio")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds); for smoke tests")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON results path (default {RESULTS}; core.quick.json with --quick)")
    parser.add_argument("--dir", type=Path, default=None, help="where to put the databases (default: a temp dir)")
    parser.add_argument("--mmap-bytes", type=int, default=0,
                        help="snapshot readers map this much of the file in (b) (SqlitePersistence(mmap_bytes=); default 0)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="bench-core-", dir=args.dir) as tmp:
        started = time.time()
        results = asyncio.run(run(sizes, Path(tmp), args.mmap_bytes))
    report = {
        "benchmark": "core", "quick": args.quick, "sizes": sizes.__dict__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
                    "platform": platform.platform(), "cpus": os.cpu_count()},
        **results,
    }
    if args.out is None:  # a quick (smoke) run never overwrites the published full figures
        args.out = RESULTS.with_name('core.quick.json') if args.quick else RESULTS
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results, sizes.callers))
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
