"""Search results equal a reference implementation of Convex's matching rules, on random small
corpora (modulo ranking ties): Hypothesis writes documents (inserts, updates, deletes), then asks a
random query with random filters, on the durable index and inside a mutation that wrote more
documents first (the transaction's own writes are searched too). On SQLite and on PostgreSQL.

The reference below is written from Convex's rules, independently of engine.search: tokens are
runs of ASCII letters and digits (the generated text has no other letters), lowercased, dropped at
32 bytes; the first 16 query tokens are terms, the last also a prefix; a document matches with any
term (or a completion of the prefix) and all equality filters; at most 64 distinct index terms
per query (whole terms and filters first, then completions in lexicographic order); BM25 with
k1 1.2, b 0.75, idf ln(1 + (N - n + 0.5)/(n + 0.5)), lengths in tantivy's buckets, completions
weighted 0.5; the best 1 024.
"""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from engine import UNDEFINED
from engine.database import DatabaseReader, DatabaseWriter
from engine.deployment import Auth, Deployment
from engine.transaction import Transaction

APP = Path(__file__).resolve().parent / "apps" / "search"

# -- the reference ----------------------------------------------------------------------------------


def ref_tokens(text: str) -> list[str]:
    return [t.lower() for t in re.findall(r"[A-Za-z0-9]+", text) if len(t) < 32]


def ref_fieldnorm(n: int) -> int:
    table = []
    for b in range(256):
        if b < 24:
            table.append(b)
        else:
            bits, shift = (b - 24) & 7, (b - 24) >> 3
            table.append(24 + (bits if shift == 0 else (bits | 8) << (shift - 1)))
    return max(v for v in table if v <= n)


def reference(docs: dict[str, dict[str, Any]], text: str, filters: dict[str, Any]) -> dict[str, float]:
    """{doc id: score} of the results (at most 1024)."""
    tokens = ref_tokens(text)[:16]
    if not tokens:
        return {}
    toks = {d: ref_tokens(doc["body"]) for d, doc in docs.items()}
    n = len(docs)
    total = sum(len(t) for t in toks.values())
    df: dict[str, int] = {}
    for t in toks.values():
        for term in set(t):
            df[term] = df.get(term, 0) + 1

    def passes(doc: dict[str, Any]) -> bool:
        return all(doc.get(f, UNDEFINED) == v and type(doc.get(f, UNDEFINED)) is type(v) for f, v in filters.items())

    if filters and not any(passes(doc) for doc in docs.values()):
        return {}
    whole = {t for t in tokens if df.get(t, 0) > 0}
    weights = {t: 1.0 for t in whole}
    budget = 64 - len(whole) - len(filters)
    prefix = tokens[-1]
    completions = sorted(t for t in df if t.startswith(prefix) and t not in set(tokens))
    for t in completions[:budget]:
        weights[t] = 0.5
    avg = total / max(n, 1) if total else 1.0
    out = {}
    for d, doc in docs.items():
        if not passes(doc):
            continue
        score = 0.0
        for term, boost in weights.items():
            tf = toks[d].count(term)
            if tf:
                idf = math.log(1 + (max(n, 1) - df[term] + 0.5) / (df[term] + 0.5))
                norm = 1.2 * (1 - 0.75 + 0.75 * ref_fieldnorm(len(toks[d])) / avg)
                score += boost * idf * 2.2 * tf / (tf + norm)
        if score > 0:
            out[d] = score
    best = sorted(out, key=lambda d: (-out[d], -docs[d]["_creationTime"]))[:1024]
    return {d: out[d] for d in best}


def same_modulo_ties(found: list[str], expected: dict[str, float]) -> None:
    assert set(found) == set(expected), (found, expected)
    scores = [expected[d] for d in found]
    for a, b in zip(scores, scores[1:]):
        assert a >= b - 1e-9 * max(1.0, abs(a)), (found, expected)


# -- the scenario -------------------------------------------------------------------------------------

words = st.text(alphabet="abc", min_size=1, max_size=5)
separators = st.sampled_from([" ", "  ", ", ", "-", ". ", "!"])


@st.composite
def bodies(draw: Any) -> str:
    ws = draw(st.lists(st.one_of(words, words.map(str.upper), st.just("a" * 33)), min_size=0, max_size=10))
    return "".join(w + draw(separators) for w in ws)


authors = st.sampled_from([None, "ann", "bob"])
documents = st.fixed_dictionaries({"body": bodies(), "channel": st.sampled_from(["x", "y"]), "author": authors})
operations = st.lists(st.tuples(st.sampled_from(["update", "delete", "move"]), st.integers(0, 100), bodies()),
                      max_size=6)
queries = st.tuples(
    st.lists(st.one_of(words, words.map(str.upper)), min_size=0, max_size=4).map(" ".join),
    st.sampled_from([None, "x", "y", "z"]),
    st.sampled_from([None, "none", "ann", "bob"]),
)


def doc_fields(d: dict[str, Any]) -> dict[str, Any]:
    out = {"body": d["body"], "channel": d["channel"]}
    if d["author"] is not None:
        out["author"] = d["author"]
    return out


async def scenario(initial: list[dict[str, Any]], ops: list[Any], extra: list[dict[str, Any]],
                   query: tuple[str, str | None, str | None], db: str = ":memory:") -> None:
    dep = await Deployment.open(APP, db, admin_key="k")
    try:
        await dep.search_indexes.wait_ready()
        admin = Auth(admin=True)
        ids = []
        for d in initial:
            out = await dep.call("messages:send", doc_fields(d), kind="mutation", auth=admin)
            assert out.success, out.error_message
            ids.append(out.value)
        for kind, i, body in ops:
            if not ids:
                break
            doc_id = ids[i % len(ids)]
            if kind == "delete":
                await dep.call("messages:remove", {"id": doc_id}, kind="mutation", auth=admin)
                ids.remove(doc_id)
            elif kind == "update":
                await dep.call("messages:update", {"id": doc_id, "body": body}, kind="mutation", auth=admin)
            else:
                await dep.call("messages:update", {"id": doc_id, "channel": "y" if i % 2 else "x"}, kind="mutation",
                               auth=admin)
        text, channel, author = query
        filters: dict[str, Any] = {}
        if channel is not None:
            filters["channel"] = channel
        if author is not None:
            filters["author"] = UNDEFINED if author == "none" else author

        def build(q: Any) -> Any:
            q = q.search("body", text)
            for f, v in filters.items():
                q = q.eq(f, v)
            return q

        # On the durable index.
        persistence: Any = dep.persistence
        snapshot = persistence.snapshot_now() if hasattr(persistence, "snapshot_now") else await persistence.snapshot()
        txn = Transaction(dep.catalog, snapshot, writable=False)
        try:
            stored = {d["_id"]: d for d in await DatabaseReader(txn).query("messages").collect()}
            found = await DatabaseReader(txn).query("messages").with_search_index("search_body", build).take(1024)
        finally:
            txn.close()
        same_modulo_ties([d["_id"] for d in found], reference(stored, text, filters))

        # Inside a mutation that first writes more documents (and changes one): its own writes count.
        txn = Transaction(dep.catalog, await dep.committer.latest_view(), writable=True)
        try:
            db = DatabaseWriter(txn)
            for d in extra:
                await db.insert("messages", doc_fields(d))
            if stored and extra:
                first = sorted(stored)[0]
                await db.patch(first, {"body": extra[0]["body"]})
            view = {d["_id"]: d for d in await db.query("messages").collect()}
            found = await db.query("messages").with_search_index("search_body", build).take(1024)
        finally:
            txn.close()
        same_modulo_ties([d["_id"] for d in found], reference(view, text, filters))
    finally:
        await dep.close()


@settings(max_examples=60, deadline=None)
@given(initial=st.lists(documents, max_size=25), ops=operations, extra=st.lists(documents, max_size=3), query=queries)
def test_search_equals_the_reference_on_random_corpora(initial: list[dict[str, Any]], ops: list[Any],
                                                       extra: list[dict[str, Any]], query: Any) -> None:
    asyncio.run(scenario(initial, ops, extra, query))


@settings(max_examples=15, deadline=None)
@given(many=st.sets(st.text(alphabet="ab", min_size=2, max_size=9), min_size=130, max_size=200).map(sorted),
       prefix=st.sampled_from(["a", "b", "ab", "ba"]), whole=st.lists(st.text(alphabet="ab", min_size=1, max_size=7),
                                                                       max_size=3),
       channel=st.sampled_from([None, "x"]), author=st.sampled_from([None, "ann"]))
def test_the_completion_budget_equals_the_reference(many: list[str], prefix: str, whole: list[str],
                                                    channel: str | None, author: str | None) -> None:
    # Enough distinct words that a short prefix has more completions than the 64-term budget.
    docs = [{"body": " ".join(many[i:i + 3]), "channel": "x", "author": "ann" if i % 2 else None}
            for i in range(0, len(many), 3)]
    asyncio.run(scenario(docs, [], [], (" ".join([*whole, prefix]), channel, author)))


# -- the same on PostgreSQL (engine.search.pg_store: tsvector + GIN, the term table), a fresh
# database per example (fewer examples: each costs a database and a deployment start) ---------------

@settings(max_examples=25, deadline=None)
@given(initial=st.lists(documents, max_size=25), ops=operations, extra=st.lists(documents, max_size=3), query=queries)
def test_search_on_postgres_equals_the_reference_on_random_corpora(pg_server: Any, initial: list[dict[str, Any]],
                                                                   ops: list[Any], extra: list[dict[str, Any]],
                                                                   query: Any) -> None:
    asyncio.run(scenario(initial, ops, extra, query, pg_server.create_database()))


@settings(max_examples=6, deadline=None)
@given(many=st.sets(st.text(alphabet="ab", min_size=2, max_size=9), min_size=130, max_size=200).map(sorted),
       prefix=st.sampled_from(["a", "b", "ab", "ba"]), whole=st.lists(st.text(alphabet="ab", min_size=1, max_size=7),
                                                                       max_size=3),
       channel=st.sampled_from([None, "x"]), author=st.sampled_from([None, "ann"]))
def test_the_completion_budget_on_postgres_equals_the_reference(pg_server: Any, many: list[str], prefix: str,
                                                                whole: list[str], channel: str | None,
                                                                author: str | None) -> None:
    docs = [{"body": " ".join(many[i:i + 3]), "channel": "x", "author": "ann" if i % 2 else None}
            for i in range(0, len(many), 3)]
    asyncio.run(scenario(docs, [], [], (" ".join([*whole, prefix]), channel, author), pg_server.create_database()))
