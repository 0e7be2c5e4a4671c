"""Search benchmarks (issue 12), each figure beside a baseline measured in the same run.

    python -m bench.search            # full run (loads 1 000 000 searchable documents: several minutes)
    python -m bench.search --quick    # small sizes, well under a minute (tests/test_bench_smoke.py)

(a) full-text search: `docs:search` (take 10) on 1 000 000 documents vs the same query on 10 000,
    for a selective query (a word held by exactly 10 documents at both sizes), the same with a
    tenant filter, a prefix query (a rare word and a word start with 10 completions), and a common
    word (held by ~0.4% of the documents: its matches grow with the corpus; reported with their
    count, since every match is scored). Both corpora are loaded through `docs:fill` mutations (the commit path, the
    FTS5 index written in the same transactions: the load rate is reported). Queries alternate
    between the two deployments in small batches.
(b) vector search: `ctx.vector_search` (limit 10) over 100 000 vectors of 128 dimensions (the
    HNSW graph), vs NumPy brute force (normalized matrix, one matrix-vector product, argpartition)
    over the same vectors in the same process; recall@10 of the graph against that brute force;
    and a filtered search that takes the exact path (one tenant's 5 000 vectors).
(c) invalidation with S = 10 000 live search subscriptions (each a different word, filtered by
    tenant): finding the subscriptions one commit of a 10-word message touches, with the
    subscriptions' interval index (engine.subscriptions.IntervalIndex) vs S = 10, and vs checking
    every subscription's read set.
(d) the cost of keeping a search index at commit: `docs:add` vs `plain:add` (same document, a
    table without search index), sequential commits/s.
(e) PostgreSQL (`--only postgres`, or in the default run; a server is started for it from
    tests/pg_harness.py: pgserver's PostgreSQL 16 with pgvector): the queries of (a) at 10 000
    documents vs the same corpus on SQLite in this run (and whether both answer the same), vector
    search (limit 10) through pgvector's HNSW index over 20 000 x 128 vs NumPy brute force over the
    same vectors with recall@10, and the commit cost of (d).

Prints a table and writes bench/results/search.json. Nothing here asserts on time.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.deployment import Auth, Deployment
from engine.runner import ActionCtx
from engine.subscriptions import IntervalIndex, QueryEntry

ROOT = Path(__file__).resolve().parent.parent
APP = Path(__file__).resolve().parent / "search_app"
RESULTS = Path(__file__).resolve().parent / "results" / "search.json"
ADMIN = Auth(admin=True)
COMMON = "w00040"  # held by ~0.4% of the documents

_spec = importlib.util.spec_from_file_location("bench_search_corpus", APP / "functions" / "_corpus.py")
corpus = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(corpus)  # type: ignore[union-attr]


@dataclass(frozen=True)
class Sizes:
    small_docs: int
    big_docs: int
    load_batch: int
    query_rounds: int
    vectors: int
    vector_queries: int
    subscriptions: int
    lookups: int
    commits: int


FULL = Sizes(small_docs=10_000, big_docs=1_000_000, load_batch=5_000, query_rounds=600, vectors=100_000,
             vector_queries=300, subscriptions=10_000, lookups=2_000, commits=1_000)
QUICK = Sizes(small_docs=2_000, big_docs=20_000, load_batch=2_000, query_rounds=100, vectors=5_000,
              vector_queries=50, subscriptions=500, lookups=200, commits=100)


async def ok(dep: Deployment, kind: str, path: str, args: dict[str, Any]) -> Any:
    out = await dep.call(path, args, kind=kind, auth=ADMIN)
    if not out.success:
        raise RuntimeError(f"{path} failed: {out.error_message}")
    return out.value


def ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def summary(latencies: list[float]) -> dict[str, float]:
    xs = sorted(latencies)
    return {"median_ms": ms(statistics.median(xs)), "p95_ms": ms(xs[int(0.95 * (len(xs) - 1))]),
            "n": len(xs)}


async def load(dep: Deployment, docs: int, batch: int, in_flight: int = 4) -> float:
    rare = max(1, docs // 10)
    started = time.perf_counter()
    starts = list(range(0, docs, batch))
    for i in range(0, len(starts), in_flight):
        await asyncio.gather(*(ok(dep, "mutation", "docs:fill", {"start": float(s), "count": float(min(batch, docs - s)),
                                                                 "rareGroups": float(rare)})
                               for s in starts[i:i + in_flight]))
    return docs / (time.perf_counter() - started)


# -- (a) full-text search ---------------------------------------------------------------------------

def query_kinds(docs: int, rng: random.Random, ids: list[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    rare = max(1, docs // 10)
    k1, k2, k3 = rng.randrange(rare), rng.randrange(rare), rng.randrange(rare)
    return {
        "selective": ("docs:search", {"text": corpus.rare_word(k1), "limit": 10.0}),
        "selective_tenant": ("docs:search", {"text": corpus.rare_word(k2), "tenant": corpus.tenant_of(k2),
                                             "limit": 10.0}),
        # A rare word and the start of a word: the 10 completions w0xxx0..w0xxx9 count too.
        "prefix": ("docs:search", {"text": f"{corpus.rare_word(k3)} w0{rng.randrange(100, 300)}", "limit": 10.0}),
        "common": ("docs:search", {"text": COMMON, "limit": 10.0}),
        # The floor under a selective search: reading 10 random documents of the table by id.
        "get_10_random": ("docs:getMany", {"ids": rng.sample(ids, 10)}),
    }


async def text_search(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    deps = {}
    rates = {}
    for name, n in (("small", sizes.small_docs), ("big", sizes.big_docs)):
        dep = await Deployment.open(APP, workdir / f"text-{name}.sqlite3", admin_key="k")
        await dep.search_indexes.wait_ready()
        rates[name] = await load(dep, n, sizes.load_batch)
        deps[name] = (dep, n, _sample_ids(dep, 5000))
    try:
        rng = random.Random(1)
        kinds = list(query_kinds(10, rng, ["x"] * 10))
        lat: dict[str, dict[str, list[float]]] = {k: {"small": [], "big": []} for k in kinds}
        matches: dict[str, dict[str, int]] = {k: {} for k in kinds}
        for name, (dep, n, ids) in deps.items():  # warm-up, and what each query kind matches
            for kind, (path, args) in query_kinds(n, rng, ids).items():
                await ok(dep, "query", path, args)
                if kind in ("selective", "selective_tenant", "prefix"):
                    matches[kind][name] = len(await ok(dep, "query", path, dict(args, limit=1024.0)))
            matches["common"][name] = await _word_count(dep, COMMON)
            matches["get_10_random"][name] = 10
        for _ in range(0, sizes.query_rounds, 20):
            for name, (dep, n, ids) in deps.items():
                for _ in range(20):
                    for kind, (path, args) in query_kinds(n, rng, ids).items():
                        t = time.perf_counter()
                        await ok(dep, "query", path, args)
                        lat[kind][name].append(time.perf_counter() - t)
        out: dict[str, Any] = {"load_docs_per_s": {k: round(v) for k, v in rates.items()},
                               "docs": {k: n for k, (_, n, _) in deps.items()}}
        for kind, by in lat.items():
            small, big = summary(by["small"]), summary(by["big"])
            out[kind] = {"small": small, "big": big, "matches": matches[kind],
                         "ratio_median": round(big["median_ms"] / small["median_ms"], 3),
                         "ratio_p95": round(big["p95_ms"] / small["p95_ms"], 3)}
        return out
    finally:
        for dep, _, _ in deps.values():
            await dep.close()


def _sample_ids(dep: Deployment, n: int) -> list[str]:
    snap = dep.persistence.snapshot_now()
    try:
        rows = snap._conn.execute(  # type: ignore[attr-defined]
            "SELECT id FROM documents WHERE table_number = ? ORDER BY random() LIMIT ?",
            (dep.catalog.table("docs").number, n)).fetchall()
    finally:
        snap.close()
    return [r[0] for r in rows]


async def _word_count(dep: Deployment, word: str) -> int:
    info = dep.catalog.table("docs").search["search_body"]
    snap = dep.persistence.snapshot_now()
    try:
        return (await dep.persistence.search.text_reader(snap, info).doc_freqs([word]))[word]
    finally:
        snap.close()


# -- (b) vector search ------------------------------------------------------------------------------

async def vector_search(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    dep = await Deployment.open(APP, workdir / "vectors.sqlite3", admin_key="k")
    try:
        await dep.search_indexes.wait_ready()
        started = time.perf_counter()
        for s in range(0, sizes.vectors, 1000):
            await ok(dep, "mutation", "docs:fillVectors", {"start": float(s), "count": float(min(1000, sizes.vectors - s))})
        load_s = time.perf_counter() - started
        vecs = dep.persistence.search.vectors
        if sizes.vectors <= vecs.exact_max:
            vecs.exact_max = sizes.vectors // 10  # quick runs: still exercise the graph
        data = corpus.vectors(0, sizes.vectors)
        normed = data / np.linalg.norm(data, axis=1, keepdims=True)
        ids = _vector_ids(dep)
        queries = corpus.vectors(10_000_000, sizes.vector_queries)
        ctx = ActionCtx(dep.runner, ADMIN)
        engine_lat, brute_lat = [], []
        found = 0
        for q in queries:
            t = time.perf_counter()
            truth = np.argpartition(-(normed @ (q / np.linalg.norm(q))), 10)[:10]
            brute_lat.append(time.perf_counter() - t)
            ql = [float(x) for x in q]
            t = time.perf_counter()
            got = await ctx.vector_search("vecs", "by_v", {"vector": ql, "limit": 10})
            engine_lat.append(time.perf_counter() - t)
            found += len({r["_id"] for r in got} & {ids[i] for i in truth.tolist()})
        filtered = []
        for q in queries[:50]:
            ql = [float(x) for x in q]
            t = time.perf_counter()
            await ctx.vector_search("vecs", "by_v", {"vector": ql, "limit": 10, "filter": lambda f: f.eq("tenant", "t3")})
            filtered.append(time.perf_counter() - t)
        engine, brute = summary(engine_lat), summary(brute_lat)
        return {"vectors": sizes.vectors, "dimensions": corpus.DIMS, "load_vectors_per_s": round(sizes.vectors / load_s),
                "engine_hnsw": engine, "numpy_brute_force": brute,
                "ratio_median": round(engine["median_ms"] / brute["median_ms"], 3),
                "recall_at_10": round(found / (10 * len(queries)), 4),
                "filtered_exact_one_tenant": summary(filtered), "exact_max": vecs.exact_max}
    finally:
        await dep.close()


def _vector_ids(dep: Deployment) -> list[str]:
    """Document ids in insertion order (the corpus order)."""
    info = dep.catalog.table("vecs").search["by_v"]
    snap = dep.persistence.snapshot_now()
    try:
        rows = snap._conn.execute(f"SELECT doc_id FROM vectors_{info.id} ORDER BY key").fetchall()  # type: ignore[attr-defined]
    finally:
        snap.close()
    return [r[0] for r in rows]


# -- (e) the same on PostgreSQL ----------------------------------------------------------------------

PG_VECTORS = {False: 20_000, True: 2_000}  # full / quick: every vector goes through pgvector's HNSW insert


async def _pg_ids(dep: Deployment, table: str, n: int) -> list[str]:
    snap: Any = await dep.persistence.snapshot()
    try:
        rows = await snap.fetch("SELECT id FROM documents WHERE table_number = $1 ORDER BY random() LIMIT $2",
                                dep.catalog.table(table).number, n)
    finally:
        snap.close()
    return [r[0] for r in rows]


async def _pg_word_count(dep: Deployment, word: str) -> int:
    info = dep.catalog.table("docs").search["search_body"]
    snap = await dep.persistence.snapshot()
    try:
        return (await dep.persistence.search.text_reader(snap, info).doc_freqs([word]))[word]
    finally:
        snap.close()


async def _bodies(dep: Deployment, args: dict[str, Any]) -> list[str]:
    """The bodies `docs:search` finds, best first."""
    from engine.database import DatabaseReader
    from engine.transaction import Transaction

    persistence: Any = dep.persistence
    snap = persistence.snapshot_now() if hasattr(persistence, "snapshot_now") else await persistence.snapshot()
    txn = Transaction(dep.catalog, snap, writable=False)
    try:
        def build(q: Any) -> Any:
            q = q.search("body", args["text"])
            return q.eq("tenant", args["tenant"]) if "tenant" in args else q
        docs = await DatabaseReader(txn).query("docs").with_search_index("search_body", build).take(int(args["limit"]))
        return [d["body"] for d in docs]
    finally:
        txn.close()


async def postgres(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """The full-text queries of (a) on PostgreSQL (tsvector + GIN, engine.search.pg_store) against the
    same corpus on SQLite (FTS5) in this run; vector search through pgvector's HNSW index against
    NumPy brute force over the same vectors; commits/s into the search-indexed table vs the plain
    one, on PostgreSQL."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pg_harness import PostgresServer

    from engine.search.pg_store import vectors_from_send

    quick = sizes is QUICK
    n = sizes.small_docs
    server = PostgresServer().start()
    pg = sqlite = None
    try:
        version = server.psql("SHOW server_version").strip()
        extension = server.psql("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'").strip()
        pg = await Deployment.open(APP, server.create_database(), admin_key="k")
        sqlite = await Deployment.open(APP, workdir / "pg-baseline.sqlite3", admin_key="k")
        rates = {}
        for name, dep in (("postgres", pg), ("sqlite", sqlite)):
            await dep.search_indexes.wait_ready()
            rates[name] = round(await load(dep, n, sizes.load_batch))
        ids = {"postgres": await _pg_ids(pg, "docs", 5000), "sqlite": _sample_ids(sqlite, 5000)}
        rng = random.Random(2)
        kinds = list(query_kinds(10, rng, ["x"] * 10))
        deps = {"postgres": pg, "sqlite": sqlite}
        lat: dict[str, dict[str, list[float]]] = {k: {"postgres": [], "sqlite": []} for k in kinds}
        for name, dep in deps.items():  # warm-up; both answer the same
            for kind, (path, args) in query_kinds(n, random.Random(3), ids[name]).items():
                await ok(dep, "query", path, args)
        # The same matches on both (bodies: ids differ). Not the same order: the corpora were loaded
        # by concurrent mutations, so documents with equal scores (ties go to the newer) were
        # created in another order; equal rankings are what tests/test_search_reference.py checks.
        same = True
        for seed in range(4, 14):
            for kind, (_, args) in query_kinds(n, random.Random(seed), ids["sqlite"]).items():
                if kind != "get_10_random":
                    every = dict(args, limit=1024.0)
                    same = same and sorted(await _bodies(pg, every)) == sorted(await _bodies(sqlite, every))
        for _ in range(0, sizes.query_rounds, 20):
            for name, dep in deps.items():
                for _ in range(20):
                    for kind, (path, args) in query_kinds(n, rng, ids[name]).items():
                        t = time.perf_counter()
                        await ok(dep, "query", path, args)
                        lat[kind][name].append(time.perf_counter() - t)
        text: dict[str, Any] = {"docs": n, "load_docs_per_s": rates, "same_matches_as_sqlite": same,
                                "common_word_matches": await _pg_word_count(pg, COMMON)}
        for kind, by in lat.items():
            a, b = summary(by["postgres"]), summary(by["sqlite"])
            text[kind] = {"postgres": a, "sqlite": b, "ratio_median": round(a["median_ms"] / b["median_ms"], 3)}

        # Vectors: loaded through the commit path; searched on the HNSW path (exact_max lowered below
        # the count, as (b) does in quick runs).
        nv = PG_VECTORS[quick]
        started = time.perf_counter()
        for s0 in range(0, nv, 1000):
            await ok(pg, "mutation", "docs:fillVectors", {"start": float(s0), "count": float(min(1000, nv - s0))})
        load_s = time.perf_counter() - started
        store: Any = pg.persistence.search
        store.exact_max = min(store.exact_max, nv // 10)
        info = pg.catalog.table("vecs").search["by_v"]
        snap: Any = await pg.persistence.snapshot()
        try:
            rows = await snap.fetch(f"SELECT doc_id, vector_send(embedding) FROM search_vec_{info.id}")
        finally:
            snap.close()
        vids = [r[0] for r in rows]
        normed = vectors_from_send(rows, info.dimensions)
        normed = normed / np.linalg.norm(normed, axis=1, keepdims=True)
        queries = corpus.vectors(10_000_000, sizes.vector_queries)
        ctx = ActionCtx(pg.runner, ADMIN)
        engine_lat, brute_lat, found = [], [], 0
        for q in queries:
            t = time.perf_counter()
            truth = np.argpartition(-(normed @ (q / np.linalg.norm(q))), 10)[:10]
            brute_lat.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = await ctx.vector_search("vecs", "by_v", {"vector": [float(x) for x in q], "limit": 10})
            engine_lat.append(time.perf_counter() - t)
            found += len({r["_id"] for r in got} & {vids[i] for i in truth.tolist()})
        filtered = []
        for q in queries[:50]:
            t = time.perf_counter()
            await ctx.vector_search("vecs", "by_v", {"vector": [float(x) for x in q], "limit": 10,
                                                     "filter": lambda f: f.eq("tenant", "t3")})
            filtered.append(time.perf_counter() - t)
        e, b = summary(engine_lat), summary(brute_lat)
        vector = {"vectors": nv, "dimensions": corpus.DIMS, "load_vectors_per_s": round(nv / load_s),
                  "engine_hnsw": e, "numpy_brute_force": b, "ratio_median": round(e["median_ms"] / b["median_ms"], 3),
                  "recall_at_10": round(found / (10 * len(queries)), 4), "filtered_one_tenant": summary(filtered),
                  "exact_max": store.exact_max}

        bodies = [corpus.body(i, 1000) for i in range(min(sizes.commits, 500))]
        commit_rates = {}
        for _ in range(2):
            for path in ("docs:addPlain", "docs:add"):
                t = time.perf_counter()
                for body_text in bodies:
                    await ok(pg, "mutation", path, {"body": body_text})
                commit_rates[path] = len(bodies) / (time.perf_counter() - t)
        commits = {"with_search_index_commits_per_s": round(commit_rates["docs:add"]),
                   "plain_table_commits_per_s": round(commit_rates["docs:addPlain"]),
                   "ratio": round(commit_rates["docs:add"] / commit_rates["docs:addPlain"], 3)}
        return {"server_version": version, "pgvector": extension, "text": text, "vector": vector, "commits": commits}
    finally:
        for dep in (pg, sqlite):
            if dep is not None:
                await dep.close()
        server.close()


# -- (c) invalidation -----------------------------------------------------------------------------

async def invalidation(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    dep = await Deployment.open(APP, workdir / "subs.sqlite3", admin_key="k")
    try:
        await dep.search_indexes.wait_ready()
        fn = dep.app.functions["docs:search"]
        reads = []
        for i in range(sizes.subscriptions):
            run, _ = await dep.runner.run_query(fn, {"text": f"w{i}", "tenant": "t0", "limit": 10.0}, ADMIN)
            reads.append(run.reads)
        indexes = {}
        for s in (10, sizes.subscriptions):
            index = IntervalIndex()
            entries = []
            for i in range(s):
                entry = QueryEntry((i,), None, "docs:search", {}, ADMIN, None)
                index.add(entry, reads[i])
                entries.append(entry)
            indexes[s] = (index, entries)
        # Commits of 10-word messages in tenant t0, one of whose words a subscription (w5) searches.
        commits = []
        for k in range(20):
            before = dep.committer.sequenced_ts
            words = " ".join(f"x{k}y{j}" for j in range(9))
            await ok(dep, "mutation", "docs:add", {"body": f"{words} w5"})
            commits.append([key for _, keys in dep.committer.write_log.since(before) for key in keys])
        timings: dict[str, list[float]] = {"small": [], "big": [], "scan": []}
        for n in range(sizes.lookups):
            keys = commits[n % len(commits)]
            for label, s in (("small", 10), ("big", sizes.subscriptions)):
                index, entries = indexes[s]
                t = time.perf_counter()
                hit: set[QueryEntry] = set()
                for index_id, key in keys:
                    index.affected(index_id, key, hit)
                timings[label].append(time.perf_counter() - t)
                assert hit == {entries[5]}, "exactly the subscription searching w5"
            if n % 10 == 0:
                t = time.perf_counter()
                touched = [i for i, r in enumerate(reads) if r.overlaps(keys)]
                timings["scan"].append(time.perf_counter() - t)
                assert touched == [5]
        small, big, scan = (summary(timings[k]) for k in ("small", "big", "scan"))
        return {"subscriptions": sizes.subscriptions, "written_keys_per_commit": len(commits[0]),
                "s10": small, "s_big": big, "scan_every_subscription": scan,
                "ratio_big_vs_10": round(big["median_ms"] / small["median_ms"], 3),
                "speedup_vs_scan": round(scan["median_ms"] / big["median_ms"], 1)}
    finally:
        await dep.close()


# -- (d) commit cost ------------------------------------------------------------------------------

async def commit_cost(sizes: Sizes, workdir: Path) -> dict[str, Any]:
    dep = await Deployment.open(APP, workdir / "commits.sqlite3", admin_key="k")
    try:
        await dep.search_indexes.wait_ready()
        bodies = [corpus.body(i, 1000) for i in range(sizes.commits)]
        rates = {}
        for _ in range(2):  # alternate: warm both
            for path in ("docs:addPlain", "docs:add"):
                t = time.perf_counter()
                for b in bodies:
                    await ok(dep, "mutation", path, {"body": b})
                rates[path] = sizes.commits / (time.perf_counter() - t)
        return {"with_search_index_commits_per_s": round(rates["docs:add"]),
                "plain_table_commits_per_s": round(rates["docs:addPlain"]),
                "ratio": round(rates["docs:add"] / rates["docs:addPlain"], 3)}
    finally:
        await dep.close()


async def run(sizes: Sizes, workdir: Path, only: set[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    steps = {"text": text_search, "vector": vector_search, "invalidation": invalidation, "commits": commit_cost,
             "postgres": postgres}
    for name, step in steps.items():
        if name in only:
            t = time.perf_counter()
            results[name] = await step(sizes, workdir)
            results[name]["seconds"] = round(time.perf_counter() - t, 1)
            print(f"{name}: done in {results[name]['seconds']} s", file=sys.stderr, flush=True)
    return results


def table(r: dict[str, Any]) -> str:
    lines = ["| figure | engine | baseline (same run) | ratio |", "|---|---|---|---|"]
    if "text" in r:
        t = r["text"]
        big, small = t["docs"]["big"], t["docs"]["small"]
        for kind in ("selective", "selective_tenant", "prefix", "common", "get_10_random"):
            m = t[kind]
            what = "10 `db.get` of random documents" if kind == "get_10_random" else f"`{kind}` search, take 10"
            lines.append(f"| {what}, {big:,} docs ({m['matches'].get('big', '?')} matches) | "
                         f"{m['big']['median_ms']} ms | {small:,} docs ({m['matches'].get('small', '?')} matches) "
                         f"{m['small']['median_ms']} ms | {m['ratio_median']}x (p95 {m['ratio_p95']}x) |")
        lines.append(f"| load with the FTS5 index written at commit | {t['load_docs_per_s']['big']:,} docs/s | | |")
    if "vector" in r:
        v = r["vector"]
        lines.append(f"| vector search, limit 10, {v['vectors']:,} x {v['dimensions']} (HNSW), median | "
                     f"{v['engine_hnsw']['median_ms']} ms | NumPy brute force {v['numpy_brute_force']['median_ms']} ms | "
                     f"{v['ratio_median']}x |")
        lines.append(f"| recall@10 of the graph | {v['recall_at_10']} | brute force 1.0 | |")
        lines.append(f"| filtered to one tenant (exact path) | {v['filtered_exact_one_tenant']['median_ms']} ms | | |")
    if "invalidation" in r:
        i = r["invalidation"]
        lines.append(f"| invalidation: affected search subscriptions of one commit, S = {i['subscriptions']:,} | "
                     f"{i['s_big']['median_ms'] * 1000:.1f} µs | S = 10: {i['s10']['median_ms'] * 1000:.1f} µs | "
                     f"{i['ratio_big_vs_10']}x |")
        lines.append(f"| same, vs checking every subscription | {i['s_big']['median_ms'] * 1000:.1f} µs | "
                     f"{i['scan_every_subscription']['median_ms']} ms | {i['speedup_vs_scan']}x faster |")
    if "commits" in r:
        c = r["commits"]
        lines.append(f"| commits/s, a document in a search-indexed table | {c['with_search_index_commits_per_s']:,} | "
                     f"same document, no search index {c['plain_table_commits_per_s']:,} | {c['ratio']}x |")
    if "postgres" in r:
        p = r["postgres"]
        t, v, c = p["text"], p["vector"], p["commits"]
        lines.append(f"| **PostgreSQL {p['server_version']}, pgvector {p['pgvector']}** | | | |")
        for kind in ("selective", "selective_tenant", "prefix", "common", "get_10_random"):
            m = t[kind]
            what = "10 `db.get` of random documents" if kind == "get_10_random" else f"`{kind}` search, take 10"
            lines.append(f"| {what}, {t['docs']:,} docs, PostgreSQL | {m['postgres']['median_ms']} ms | "
                         f"SQLite {m['sqlite']['median_ms']} ms | {m['ratio_median']}x |")
        lines.append(f"| the same matches as SQLite (40 queries, up to 1 024 each) | {t['same_matches_as_sqlite']} | | |")
        lines.append(f"| load, PostgreSQL (tsvector/GIN written at commit) | {t['load_docs_per_s']['postgres']:,} docs/s | "
                     f"SQLite {t['load_docs_per_s']['sqlite']:,} docs/s | |")
        lines.append(f"| vector search, limit 10, {v['vectors']:,} x {v['dimensions']} (pgvector HNSW), median | "
                     f"{v['engine_hnsw']['median_ms']} ms | NumPy brute force {v['numpy_brute_force']['median_ms']} ms | "
                     f"{v['ratio_median']}x |")
        lines.append(f"| recall@10 (pgvector HNSW) | {v['recall_at_10']} | brute force 1.0 | |")
        lines.append(f"| vector load through commits (HNSW insert) | {v['load_vectors_per_s']:,} vectors/s | | |")
        lines.append(f"| commits/s, search-indexed table, PostgreSQL | {c['with_search_index_commits_per_s']:,} | "
                     f"no search index {c['plain_table_commits_per_s']:,} | {c['ratio']}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help=f"JSON results path (default {RESULTS})")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go (default: a temp dir)")
    parser.add_argument("--only", default="text,vector,invalidation,commits,postgres", help="a subset of the figures")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    only = set(args.only.split(","))
    out = args.out or (RESULTS.with_name("search.quick.json") if args.quick else RESULTS)
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results = asyncio.run(run(sizes, Path(tmp), only))
    report = {"quick": args.quick, "sizes": asdict(sizes), "machine": {
        "python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
        "loadavg_start": load_start, "loadavg_end": os.getloadavg()}, **results}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
