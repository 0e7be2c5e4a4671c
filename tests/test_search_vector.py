"""Vector search (engine.search.vector, engine.search.sqlite_vectors, engine.search.pg_store):
`ctx.vector_search` equals brute-force cosine similarity for exact-mode sizes, Convex's limits and
errors, the index following commits, the approximate (HNSW) path and its recall, and the graph
rebuilt after a crash. The `vdep` tests run on SQLite and on PostgreSQL with pgvector."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.deployment import Auth, Deployment
from engine.search.sqlite_vectors import Ann, SqliteVectorIndexes, SqliteVectorReader, create_vector_index
from engine.search.tokens import filter_bytes

APP = Path(__file__).resolve().parent / "apps" / "search"
ADMIN = Auth(admin=True)
CUISINES = ["French", "Thai", "Greek", "Mexican"]


@pytest.fixture(params=["sqlite", "postgres"])
async def vdep(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    """The search app on SQLite (a vector table + usearch) and on a real PostgreSQL with pgvector."""
    db = request.getfixturevalue("pg_url") if request.param == "postgres" else tmp_path / "vectors.sqlite3"
    d = await Deployment.open(APP, db, admin_key="k")
    await d.search_indexes.wait_ready()
    yield d
    await d.close()


def set_exact_max(dep: Deployment, n: int) -> None:
    """Above `n` candidates a search uses the approximate index (usearch's graph; pgvector's HNSW)."""
    store: Any = dep.persistence.search
    if hasattr(store, "vectors"):
        store.vectors.exact_max = n
    else:
        store.exact_max = n


async def call(dep: Deployment, path: str, args: dict[str, Any], kind: str) -> Any:
    out = await dep.call(path, args, kind=kind, auth=ADMIN)
    assert out.success, out.error_message
    return out.value


async def add_foods(dep: Deployment, vectors: np.ndarray, cuisines: list[str]) -> list[str]:
    ids = []
    for vec, cuisine in zip(vectors, cuisines):
        ids.append(await call(dep, "foods:add", {"description": f"{cuisine} dish", "cuisine": cuisine,
                                                 "embedding": [float(x) for x in vec]}, "mutation"))
    return ids


def brute(vectors: np.ndarray, ids: list[str], query: np.ndarray, limit: int,
          keep: list[bool] | None = None) -> list[tuple[str, float]]:
    m = vectors.astype(np.float32)
    q = query.astype(np.float32)
    scores = (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
    order = sorted((i for i in range(len(ids)) if keep is None or keep[i]), key=lambda i: (-scores[i], ids[i]))
    return [(ids[i], float(scores[i])) for i in order[:limit]]


async def search(dep: Deployment, vector: Any, **query: Any) -> Any:
    async def run(ctx: Any) -> Any:
        return await ctx.vector_search("foods", "by_embedding", {"vector": vector, **query})
    from engine.runner import ActionCtx

    return await run(ActionCtx(dep.runner, ADMIN))


async def test_exact_mode_equals_brute_force_cosine(vdep: Deployment) -> None:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((300, 4)).astype(np.float32)
    cuisines = [CUISINES[i % 4] for i in range(300)]
    ids = await add_foods(vdep, vectors, cuisines)
    for _ in range(20):
        q = rng.standard_normal(4).astype(np.float32)
        got = await search(vdep, [float(x) for x in q], limit=16)
        want = brute(vectors, ids, q, 16)
        assert [r["_id"] for r in got] == [w[0] for w in want]
        assert [r["_score"] for r in got] == pytest.approx([w[1] for w in want], abs=1e-5)
        # An `or` of `eq`s on the filter field: any of the values.
        got = await search(vdep, [float(x) for x in q], limit=256,
                           filter=lambda f: f.or_(f.eq("cuisine", "Thai"), f.eq("cuisine", "Greek")))
        keep = [c in ("Thai", "Greek") for c in cuisines]
        assert [r["_id"] for r in got] == [w[0] for w in brute(vectors, ids, q, 256, keep)]
    assert len(await search(vdep, [1.0, 0.0, 0.0, 0.0])) == 10  # the default limit


async def test_the_index_follows_writes(vdep: Deployment) -> None:
    a = await call(vdep, "foods:add", {"description": "a", "cuisine": "Thai", "embedding": [1.0, 0.0, 0.0, 0.0]},
                   "mutation")
    b = await call(vdep, "foods:add", {"description": "b", "cuisine": "Thai", "embedding": [0.0, 1.0, 0.0, 0.0]},
                   "mutation")
    await call(vdep, "foods:add", {"description": "no vector", "cuisine": "Thai"}, "mutation")
    await call(vdep, "foods:add", {"description": "short", "cuisine": "Thai", "embedding": [1.0, 0.0]}, "mutation")
    assert [r["_id"] for r in await search(vdep, [1.0, 0.0, 0.0, 0.0])] == [a, b]  # only 4-dim vectors count
    await call(vdep, "foods:update", {"id": b, "embedding": [1.0, 0.1, 0.0, 0.0]}, "mutation")
    got = await search(vdep, [0.0, 1.0, 0.0, 0.0])
    assert got[0]["_id"] == b and got[0]["_score"] == pytest.approx(0.1 / np.sqrt(1.01), abs=1e-6)
    await call(vdep, "foods:update", {"id": a, "cuisine": "Greek"}, "mutation")
    assert [r["_id"] for r in await search(vdep, [1.0, 0.0, 0.0, 0.0], filter=lambda q: q.eq("cuisine", "Thai"))] == [b]
    out = await vdep.call("foods:similar", {"vector": [1.0, 0.0, 0.0, 0.0], "cuisines": ["Greek"]}, kind="action",
                          auth=ADMIN)
    assert out.success and out.value == [{"description": "a", "score": 1.0}]


@pytest.mark.parametrize("vector,query,code,message", [
    ([1.0, 0.0, 0.0, 0.0], {"limit": 257}, "VectorLimitTooLargeError",
     "Vector queries can fetch at most 256 results, requested 257."),
    ([1.0, 0.0, 0.0], {}, "VectorDimensionsMismatch", "Expected a vector with dimensions 4, received 3."),
    ([1.0] * 4097, {}, "VectorDimensionsMismatch", "Expected a vector with dimensions 4096, received 4097."),
    ([], {}, "InvalidVectorSearch", "`vector` must be a non-empty Array in vectorSearch"),
    ([1.0, 0.0, 0.0, 0.0], {"filter": lambda q: q.eq("description", "x")}, "IncorrectVectorFilterField",
     'Vector query against foods.by_embedding contains a filter on "description" but that field isn\'t indexed for '
     "filtering in `filterFields`."),
    ([1.0, 0.0, 0.0, 0.0], {"filter": lambda q: True}, "InvalidVectorSearchFilter",
     "Filters should be a combination of `q.eq` and `q.or`."),
    ([1.0, 0.0, 0.0, 0.0], {"filter": lambda q: q.or_(*[q.eq("cuisine", str(i)) for i in range(65)])},
     "TooManyElementsInVectorQueryError", "Vector query against foods.by_embedding has too many conditions. Max: 64 "
     "Actual: 65"),
])
async def test_convexs_limits_and_errors(vdep: Deployment, vector: list[float], query: dict[str, Any], code: str,
                                         message: str) -> None:
    from engine.errors import EngineError

    with pytest.raises(EngineError) as info:
        await search(vdep, vector, **query)
    assert (info.value.code, info.value.message) == (code, message)


async def test_unknown_indexes_and_tables(vdep: Deployment) -> None:
    from engine.errors import EngineError
    from engine.runner import ActionCtx

    ctx = ActionCtx(vdep.runner, ADMIN)
    assert await ctx.vector_search("nosuchtable", "by_embedding", {"vector": [1.0, 0.0]}) == []
    with pytest.raises(EngineError) as info:
        await ctx.vector_search("foods", "nope", {"vector": [1.0, 0.0, 0.0, 0.0]})
    assert info.value.message == "Index foods.nope not found."
    with pytest.raises(EngineError) as info:
        await ctx.vector_search("messages", "search_body", {"vector": [1.0, 0.0, 0.0, 0.0]})
    assert info.value.message == "Index messages.search_body is not a vector index"


# -- the approximate index ---------------------------------------------------------------------------

def embedding_like(n: int, dims: int, seed: int, latent: int = 16) -> np.ndarray:
    """Vectors with neighbourhood structure, as embeddings have: a `latent`-dimensional signal
    projected to `dims` dimensions, plus noise."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent)).astype(np.float32)
    projection = rng.standard_normal((latent, dims)).astype(np.float32)
    return (z @ projection + 0.5 * rng.standard_normal((n, dims)).astype(np.float32)).astype(np.float32)


async def test_the_graph_answers_large_indexes_and_filters(vdep: Deployment) -> None:
    set_exact_max(vdep, 100)  # the graph from 100 vectors on
    vectors = embedding_like(1200, 4, seed=3, latent=3)
    cuisines = [CUISINES[i % 4] for i in range(1200)]
    ids = await add_foods(vdep, vectors, cuisines)
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(30):
        q = vectors[rng.integers(0, 1200)] + 0.05 * rng.standard_normal(4).astype(np.float32)
        got = await search(vdep, [float(x) for x in q], limit=10, filter=lambda f: f.eq("cuisine", "Thai"))
        want = brute(vectors, ids, q, 10, [c == "Thai" for c in cuisines])
        assert all(cuisines[ids.index(r["_id"])] == "Thai" for r in got)
        scores = dict(brute(vectors, ids, q, 1200))
        assert all(r["_score"] == pytest.approx(scores[r["_id"]], abs=1e-5) for r in got)  # exact, re-scored
        hits += len({r["_id"] for r in got} & {w[0] for w in want})
    assert hits / 300 >= 0.95


async def test_the_graph_is_saved_on_close_and_rebuilt_after_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "crash.sqlite3"
    vectors = embedding_like(400, 4, seed=5, latent=3)
    dep = await Deployment.open(APP, db, admin_key="k")
    await dep.search_indexes.wait_ready()
    dep.persistence.search.vectors.exact_max = 50
    ids = await add_foods(dep, vectors, ["Thai"] * 400)
    await dep.close()  # a clean stop saves the graph with the commit timestamp
    index_id = next(iter(dep.catalog.table("foods").search.values())).id
    assert (db.with_name(db.name + ".vectors") / f"{index_id}.usearch").exists()

    dep = await Deployment.open(APP, db, admin_key="k")
    try:
        vecs = dep.persistence.search.vectors
        assert vecs.anns[index_id].ready and not vecs._builds  # loaded, not rebuilt
        vecs.exact_max = 50
        q = [float(x) for x in vectors[7]]
        assert (await search(dep, q, limit=1))[0]["_id"] == ids[7]
        extra = await add_foods(dep, np.array([[0.0, 0.0, 0.0, 9.0]], dtype=np.float32), ["Thai"])
        # A crash: the process dies without saving (the saved graph is now older than the data).
        dep.persistence.search.save = lambda stamp: None  # type: ignore[method-assign]
    finally:
        await dep.close()

    dep = await Deployment.open(APP, db, admin_key="k")
    try:
        vecs = dep.persistence.search.vectors
        vecs.exact_max = 50
        assert vecs._builds, "a stale graph must be rebuilt"
        # Until it is built, searches are exact (and right).
        assert (await search(dep, [0.0, 0.0, 0.0, 1.0], limit=1))[0]["_id"] == extra[0]
        await vecs.wait_built()
        assert vecs.anns[index_id].ready and len(vecs.anns[index_id]) == 401
        assert (await search(dep, [0.0, 0.0, 0.0, 1.0], limit=1))[0]["_id"] == extra[0]
        assert (await search(dep, [float(x) for x in vectors[9]], limit=1))[0]["_id"] == ids[9]
    finally:
        await dep.close()


async def test_commits_during_a_rebuild_are_replayed(tmp_path: Path) -> None:
    db = tmp_path / "replay.sqlite3"
    dep = await Deployment.open(APP, db, admin_key="k")
    await dep.search_indexes.wait_ready()
    ids = await add_foods(dep, embedding_like(200, 4, seed=9, latent=3), ["Greek"] * 200)
    dep.persistence.search.save = lambda stamp: None  # type: ignore[method-assign]
    await dep.close()
    dep = await Deployment.open(APP, db, admin_key="k")
    try:
        vecs = dep.persistence.search.vectors
        vecs.exact_max = 10
        assert vecs._builds
        late = await add_foods(dep, np.array([[5.0, 5.0, 5.0, 5.0]], dtype=np.float32), ["Greek"])
        await call(dep, "foods:update", {"id": ids[0], "embedding": [-5.0, -5.0, -5.0, -5.0]}, "mutation")
        await vecs.wait_built()
        ann = next(iter(vecs.anns.values()))
        assert len(ann) == 201
        assert (await search(dep, [1.0, 1.0, 1.0, 1.0], limit=1))[0]["_id"] == late[0]
        assert (await search(dep, [-1.0, -1.0, -1.0, -1.0], limit=1))[0]["_id"] == ids[0]
    finally:
        await dep.close()


@pytest.mark.slow
async def test_recall_at_10_on_100_000_vectors_of_128_dimensions(tmp_path: Path) -> None:
    """The approximate index on its own table: 100 000 embedding-like vectors of 128 dimensions,
    200 queries, recall@10 against brute force >= 0.95."""
    n, dims = 100_000, 128
    vectors = embedding_like(n + 200, dims, seed=1)
    data, queries = vectors[:n], vectors[n:]
    db = tmp_path / "recall.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    create_vector_index(conn, 1, 1)
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO vectors_1 (key, doc_id, vec, f0) VALUES (?, ?, ?, ?)",
                     ((i + 1, f"doc{i}", data[i].tobytes(), filter_bytes("all")) for i in range(n)))
    conn.execute("COMMIT")
    indexes = SqliteVectorIndexes(db)
    indexes.known(1, dims, 1)
    ann = indexes.anns[1] = Ann(dims)
    await asyncio.to_thread(ann.build, np.arange(1, n + 1, dtype=np.uint64), data, {i + 1: (filter_bytes("all"),)
                                                                                     for i in range(n)})
    ann.ready = True
    conn.execute("BEGIN")
    try:
        reader = SqliteVectorReader(conn, 1, indexes)
        normed = data / np.linalg.norm(data, axis=1, keepdims=True)
        found = 0
        for q in queries:
            truth = set(np.argsort(-(normed @ (q / np.linalg.norm(q))))[:10].tolist())
            got = await reader.search(q, 10, {})
            found += len({int(doc_id[3:]) for doc_id, _ in got} & truth)
    finally:
        conn.execute("COMMIT")
        conn.close()
    assert found / (10 * len(queries)) >= 0.95


@pytest.mark.slow
async def test_recall_at_10_of_pgvectors_hnsw_index(pg_url: str) -> None:
    """PostgreSQL's approximate path on its own: 20 000 embedding-like vectors of 128 dimensions
    written through the store's commit statements into a registered index (pgvector's HNSW index
    is filled as they land), 200 queries on the HNSW path, recall@10 against brute force >= 0.95,
    each result's score exact."""
    from engine.search.pg_store import PgVectorReader
    from engine.search.spec import VectorIndexInfo
    from engine.search.backend import SearchOp, VectorRow
    from engine.storage.postgres import PostgresPersistence

    n, dims = 20_000, 128
    vectors = embedding_like(n + 200, dims, seed=1)
    data, queries = vectors[:n], vectors[n:]
    store = PostgresPersistence(pg_url)
    await store.open()
    try:
        info = VectorIndexInfo(1, "t", "v", "embedding", dims, ("tenant",))
        await store.pg_search.register(info)
        tenant = filter_bytes("all")
        for start in range(0, n, 2000):
            statements: list[Any] = []
            store.pg_search.write(statements, [SearchOp(1, f"doc{i}", VectorRow(data[i].astype("<f4").tobytes(), (tenant,)))
                                               for i in range(start, min(n, start + 2000))])
            async with store.pool.acquire() as conn:
                async with conn.transaction():
                    for sql, args in statements:
                        await conn.execute(sql, *args)
        snap: Any = await store.snapshot()
        try:
            reader = PgVectorReader(snap, info, exact_max=1000)  # the HNSW path from 1 000 candidates on
            plan = "\n".join(r[0] for r in await snap.fetch(
                "EXPLAIN SELECT doc_id FROM search_vec_1 ORDER BY embedding <=> $1::real[]::vector LIMIT 10",
                queries[0].tolist()))
            assert "search_vec_1_hnsw" in plan, plan
            normed = data / np.linalg.norm(data, axis=1, keepdims=True)
            found = 0
            for q in queries:
                sims = normed @ (q / np.linalg.norm(q))
                truth = set(np.argsort(-sims)[:10].tolist())
                got = await reader.search(q, 10, {})
                assert len(got) == 10
                assert all(score == pytest.approx(float(sims[int(d[3:])]), abs=1e-5) for d, score in got)
                found += len({int(doc_id[3:]) for doc_id, _ in got} & truth)
            filtered = await reader.search(queries[0], 10, {0: [tenant]})  # a filter every row passes
            assert len(filtered) == 10
        finally:
            snap.close()
    finally:
        await store.close()
    assert found / (10 * len(queries)) >= 0.95
