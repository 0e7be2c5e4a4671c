"""Full-text search (engine.search): Convex's tokenizer, matching, ranking, limits and errors, the
read set a search records (for OCC and subscriptions), searches inside mutations and at a past
timestamp, and the index kept in step with commits. In-process, on real SQLite (FTS5) and on a real
PostgreSQL (tsvector + GIN, engine.search.pg_store): every test runs on both."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from engine import UNDEFINED
from engine.committer import Conflict
from engine.deployment import Auth, Deployment
from engine.errors import EngineError
from engine.search.text import bm25_fieldnorm
from engine.search.tokens import query_terms, tokenize
from engine.subscriptions import IntervalIndex, QueryEntry
from engine.transaction import Transaction

from test_core_support import read, read_error

APP = Path(__file__).resolve().parent / "apps" / "search"
ADMIN = Auth(admin=True)


@pytest.fixture(params=["sqlite", "postgres"])
async def sdep(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    """The search app on the embedded SQLite store (FTS5) and on a real PostgreSQL (tsvector + GIN):
    the same tests, the same answers."""
    db = request.getfixturevalue("pg_url") if request.param == "postgres" else tmp_path / "search.sqlite3"
    d = await Deployment.open(APP, db, admin_key="k")
    await d.search_indexes.wait_ready()
    yield d
    await d.close()


async def durable_snapshot(dep: Deployment) -> Any:
    persistence: Any = dep.persistence
    return persistence.snapshot_now() if hasattr(persistence, "snapshot_now") else await persistence.snapshot()


async def call(dep: Deployment, path: str, args: dict[str, Any], kind: str) -> Any:
    out = await dep.call(path, args, kind=kind, auth=ADMIN)
    assert out.success, out.error_message
    return out.value


async def send(dep: Deployment, body: str, channel: str = "general", **extra: Any) -> str:
    return await call(dep, "messages:send", {"body": body, "channel": channel, **extra}, "mutation")


def search_q(text: str, **eqs: Any):
    def build(q):
        q = q.search("body", text)
        for field, value in eqs.items():
            q = q.eq(field, value)
        return q
    return build


async def bodies(dep: Deployment, text: str, n: int = 100, **eqs: Any) -> list[str]:
    docs = await read(dep, lambda db: db.query("messages").with_search_index("search_body", search_q(text, **eqs)).take(n))
    return [d["body"] for d in docs]


# -- the tokenizer ---------------------------------------------------------------------------------

def test_tokens_are_runs_of_alphanumerics_lowercased() -> None:
    assert tokenize("Hello, World! it's 3.14") == ["hello", "world", "it", "s", "3", "14"]
    assert tokenize("snake_case kebab-case CamelCase") == ["snake", "case", "kebab", "case", "camelcase"]
    # Unicode letters and numbers (Rust's char::is_alphanumeric): combining vowel signs are letters,
    # a virama is not; Roman numerals and vulgar fractions are numbers.
    assert tokenize("Grüße नमस्ते Ⅻ ½") == ["grüße", "नमस", "ते", "ⅻ", "½"]
    # Per-character lowercasing, without the final-sigma rule.
    assert tokenize("ΟΔΟΣ") == ["οδοσ"]
    assert tokenize("İstanbul") == ["i̇stanbul"]


def test_tokens_of_32_bytes_or_more_are_dropped() -> None:
    assert tokenize("a" * 31 + " x") == ["a" * 31, "x"]
    assert tokenize("a" * 32 + " x") == ["x"]
    assert tokenize("é" * 15 + " " + "é" * 16) == ["é" * 15]  # 30 bytes kept, 32 dropped


def test_query_terms_keep_16_and_the_last_is_a_prefix() -> None:
    assert query_terms("hello wor") == [("hello", False), ("wor", True)]
    words = [f"w{i}" for i in range(20)]
    terms = query_terms(" ".join(words))
    assert [t for t, _ in terms] == words[:16] and terms[-1] == ("w15", True)
    assert query_terms("  ...  ") == []


def test_field_lengths_are_tantivys_buckets() -> None:
    assert [bm25_fieldnorm(n) for n in (0, 1, 23, 40, 41, 42, 43, 100)] == [0, 1, 23, 40, 40, 42, 42, 96]


# -- matching --------------------------------------------------------------------------------------

async def test_whole_terms_match_and_the_last_term_is_a_prefix(sdep: Deployment) -> None:
    for body in ("hello world", "help wanted", "world peace", "say hi"):
        await send(sdep, body)
    assert sorted(await bodies(sdep, "hello")) == ["hello world"]
    assert sorted(await bodies(sdep, "hel")) == ["hello world", "help wanted"]
    assert sorted(await bodies(sdep, "hel world")) == ["hello world", "world peace"]  # "hel" whole: no match
    assert sorted(await bodies(sdep, "world hel")) == ["hello world", "help wanted", "world peace"]
    assert await bodies(sdep, "HELLO!!") == ["hello world"]
    assert await bodies(sdep, "") == [] and await bodies(sdep, "?!") == []


async def test_any_term_matches_and_more_matching_terms_rank_higher(sdep: Deployment) -> None:
    await send(sdep, "apple banana cherry")
    await send(sdep, "apple")
    await send(sdep, "banana split")
    found = await bodies(sdep, "apple banana")
    assert found[0] == "apple banana cherry" and sorted(found) == ["apple", "apple banana cherry", "banana split"]


async def test_ranking_is_bm25_with_tantivys_formulas(sdep: Deployment) -> None:
    docs = ["cat", "cat cat dog", "dog dog dog dog", "cat dog bird fish", "bird"]
    for body in docs:
        await send(sdep, body)
    n = len(docs)
    lengths = [len(d.split()) for d in docs]
    avg = sum(lengths) / n

    def score(doc: str, terms: list[tuple[str, float]]) -> float:
        toks = doc.split()
        total = 0.0
        for term, boost in terms:
            tf = toks.count(term)
            if not tf:
                continue
            df = sum(term in d.split() for d in docs)
            idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
            norm = 1.2 * (1 - 0.75 + 0.75 * len(toks) / avg)
            total += boost * idf * 2.2 * tf / (tf + norm)
        return total

    # "dog" is the last term: also a prefix, but it is whole in every document that has it.
    expected = sorted((d for d in docs if "cat" in d.split() or "dog" in d.split()),
                      key=lambda d: -score(d, [("cat", 1.0), ("dog", 1.0)]))
    assert await bodies(sdep, "cat dog") == expected


async def test_a_completion_counts_half_and_ties_go_to_the_newer_document(sdep: Deployment) -> None:
    await send(sdep, "tennis")     # whole term "tennis"
    await send(sdep, "tenacious")  # a completion of "ten"
    await send(sdep, "ten")        # "ten" itself, whole
    found = await bodies(sdep, "ten")
    assert found[0] == "ten" and set(found[1:]) == {"tennis", "tenacious"}
    await send(sdep, "ten")  # the same text again: equal scores, the newer one first
    docs = await read(sdep, lambda db: db.query("messages").with_search_index("search_body", search_q("ten")).take(2))
    assert docs[0]["_creationTime"] > docs[1]["_creationTime"]


async def test_filters_are_equality_on_convex_values(sdep: Deployment) -> None:
    await send(sdep, "deploy now", "ops")
    await send(sdep, "deploy later", "dev")
    await send(sdep, "deploy by ann", "ops", author="ann")
    assert sorted(await bodies(sdep, "deploy", channel="ops")) == ["deploy by ann", "deploy now"]
    assert await bodies(sdep, "deploy", channel="ops", author="ann") == ["deploy by ann"]
    # A missing field is `undefined`, which can be filtered on; null is another value.
    assert await bodies(sdep, "deploy", channel="ops", author=UNDEFINED) == ["deploy now"]
    assert await bodies(sdep, "deploy", author=None) == []
    assert await bodies(sdep, "deploy", channel="nowhere") == []


async def test_a_search_sees_patches_and_deletes(sdep: Deployment) -> None:
    doc = await send(sdep, "old words")
    await call(sdep, "messages:update", {"id": doc, "body": "new words"}, "mutation")
    assert await bodies(sdep, "old") == [] and await bodies(sdep, "new") == ["new words"]
    await call(sdep, "messages:update", {"id": doc, "channel": "elsewhere"}, "mutation")
    assert await bodies(sdep, "new", channel="general") == []
    assert await bodies(sdep, "new", channel="elsewhere") == ["new words"]
    await call(sdep, "messages:remove", {"id": doc}, "mutation")
    assert await bodies(sdep, "words") == []


async def test_the_prefix_completions_stop_at_convexs_term_budget(sdep: Deployment) -> None:
    # 70 distinct words starting with "w": a query uses at most 64 distinct index terms, so only
    # the lexicographically first completions count.
    words = [f"w{i:02d}" for i in range(70)]
    for w in words:
        await send(sdep, w)
    found = await bodies(sdep, "w", n=200)
    assert sorted(found) == words[:64]
    # A whole term present in the index takes one slot of the budget.
    found = await bodies(sdep, "w69 w", n=200)
    assert "w69" in found and len(found) == 64 and sorted(found) == sorted(["w69", *words[:63]])


# -- the query builder ---------------------------------------------------------------------------

async def test_terminal_methods_filter_and_async_iteration(sdep: Deployment) -> None:
    for i in range(5):
        await send(sdep, f"note number {i}", n=float(i))
    q = lambda db: db.query("messages").with_search_index("search_body", search_q("note"))  # noqa: E731
    assert len(await read(sdep, lambda db: q(db).collect())) == 5
    assert (await read(sdep, lambda db: q(db).first()))["body"].startswith("note")
    odd = await read(sdep, lambda db: q(db).filter(lambda f: f.eq(f.mod(f.field("n"), 2.0), 1.0)).collect())
    assert sorted(d["n"] for d in odd) == [1.0, 3.0]

    async def iterate(db):
        return [d["n"] async for d in q(db)]
    assert sorted(await iterate_read(sdep, iterate)) == [0.0, 1.0, 2.0, 3.0, 4.0]
    err = await read_error(sdep, lambda db: q(db).unique())
    assert err.code == "UniqueQueryMatchedMultiple"
    err = await read_error(sdep, lambda db: q(db).order("desc").collect())
    assert err.message == "Search queries must always be in relevance order. Can not set order manually."


async def iterate_read(dep: Deployment, body: Any) -> Any:
    return await read(dep, body)


async def test_at_most_1024_results(sdep: Deployment) -> None:
    await call(sdep, "bulk:fill", {"count": 1030.0, "body": "same words"}, "mutation")
    q = lambda db: db.query("messages").with_search_index("search_body", search_q("same"))  # noqa: E731
    assert len(await read(sdep, lambda db: q(db).take(1024))) == 1024
    err = await read_error(sdep, lambda db: q(db).collect())
    assert err.code == "SearchQueryScannedTooManyDocumentsError"
    assert err.message.startswith("Search query scanned too many documents (fetched 1024).")


@pytest.mark.parametrize("build,code,message", [
    (lambda q: q.search("channel", "x"), "IncorrectSearchField",
     'Search query against messages.search_body contains a search filter against "channel", which doesn\'t match '
     'the indexed `searchField` "body".'),
    (lambda q: q.search("body", "x").search("body", "y"), "DuplicateSearchFiltersError",
     'Search query against messages.search_body contains multiple search filters against "body". Only one is '
     "allowed."),
    (lambda q: q.search("body", "x").eq("n", 1.0), "IncorrectFilterFieldError",
     'Search query against messages.search_body contains an equality filter on "n" but that field isn\'t indexed '
     "for filtering in `filterFields`."),
    (lambda q: q.eq("channel", "x"), "MissingSearchFilterError",
     "Search query against messages.search_body does not contain any search filters. You must include a search "
     'filter like `q.search("body", searchText)`.'),
    (lambda q: q.search("body", "x").eq("channel", "a").eq("channel", "b").eq("channel", "c").eq("channel", "d")
     .eq("channel", "e").eq("channel", "f").eq("channel", "g").eq("channel", "h").eq("channel", "i"),
     "TooManyFilterConditionsInSearchQueryError",
     "Search query against messages.search_body has too many filter conditions. Max: 8 Actual: 9"),
])
async def test_convexs_errors(sdep: Deployment, build: Any, code: str, message: str) -> None:
    err = await read_error(sdep, lambda db: db.query("messages").with_search_index("search_body", build).take(1))
    assert (err.code, err.message) == (code, message)


async def test_unknown_and_wrong_kind_of_index(sdep: Deployment) -> None:
    err = await read_error(sdep, lambda db: db.query("messages").with_search_index("nope", search_q("x")).take(1))
    assert (err.code, err.message) == ("IndexNotFoundError", "Index messages.nope not found.")
    err = await read_error(sdep, lambda db: db.query("foods").with_search_index("by_embedding", search_q("x")).take(1))
    assert (err.code, err.message) == ("IndexNotASearchIndexError", "Index foods.by_embedding is not a search index")


async def test_paginate_walks_the_ranking_without_gaps(sdep: Deployment) -> None:
    for i in range(7):
        await send(sdep, "page " + "word " * i)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await call(sdep, "messages:searchPage", {"text": "page", "paginationOpts": {"numItems": 3,
                                                                                            "cursor": cursor}}, "query")
        seen += [d["body"] for d in page["page"]]
        pages += 1
        assert page["splitCursor"] is None and isinstance(page["continueCursor"], str)
        if page["isDone"]:
            break
        cursor = page["continueCursor"]
    assert pages == 3 and seen == await bodies(sdep, "page")
    # A page pinned by its end cursor keeps its end when a better match arrives.
    first = await call(sdep, "messages:searchPage", {"text": "page", "paginationOpts": {"numItems": 3, "cursor": None}},
                       "query")
    await send(sdep, "page")  # the shortest: ranks first
    again = await call(sdep, "messages:searchPage", {"text": "page", "paginationOpts": {
        "numItems": 3, "cursor": None, "endCursor": first["continueCursor"]}}, "query")
    assert len(again["page"]) == 4 and again["page"][0]["body"] == "page"
    assert [d["body"] for d in again["page"][1:]] == [d["body"] for d in first["page"]]


# -- reads: OCC and invalidation ---------------------------------------------------------------

async def search_reads(dep: Deployment, text: str, channel: str | None = None):
    fn = dep.app.functions["messages:search"]
    args: dict[str, Any] = {"text": text}
    if channel is not None:
        args["channel"] = channel
    run, _ = await dep.runner.run_query(fn, args, ADMIN)
    return run


async def written_keys(dep: Deployment, action: Any) -> list[tuple[int, bytes]]:
    before = dep.committer.durable_ts  # (on a cluster committer sequenced_ts is provisional)
    await action()
    return [k for _, keys in dep.committer.write_log.since(before) for k in keys]


async def test_the_read_set_is_touched_exactly_by_writes_that_could_change_the_result(sdep: Deployment) -> None:
    other = await send(sdep, "unrelated chatter", "general")
    hit = await send(sdep, "hello there", "general")
    run = await search_reads(sdep, "hello th", "general")
    assert run.value == ["hello there"]
    index = IntervalIndex()
    entry = QueryEntry(("q",), None, "messages:search", {}, ADMIN, None)
    index.add(entry, run.reads)

    def touches(keys: list[tuple[int, bytes]]) -> bool:
        found: set[QueryEntry] = set()
        for index_id, key in keys:
            index.affected(index_id, key, found)
        assert (entry in found) == run.reads.overlaps(keys)  # subscriptions and OCC agree
        return entry in found

    assert touches(await written_keys(sdep, lambda: send(sdep, "hello again", "general")))       # a whole term
    assert touches(await written_keys(sdep, lambda: send(sdep, "thunder", "general")))           # a completion
    assert not touches(await written_keys(sdep, lambda: send(sdep, "goodbye", "general")))       # no term
    assert not touches(await written_keys(sdep, lambda: send(sdep, "hello again", "random")))    # other filter
    assert not touches(await written_keys(
        sdep, lambda: call(sdep, "messages:update", {"id": other, "n": 1.0}, "mutation")))       # unindexed field
    assert touches(await written_keys(
        sdep, lambda: call(sdep, "messages:update", {"id": other, "body": "hello"}, "mutation")))  # now matches
    assert touches(await written_keys(
        sdep, lambda: call(sdep, "messages:update", {"id": hit, "channel": "random"}, "mutation")))  # leaves
    assert touches(await written_keys(
        sdep, lambda: call(sdep, "messages:update", {"id": hit, "n": 2.0}, "mutation")))  # a returned document
    assert touches(await written_keys(sdep, lambda: call(sdep, "messages:remove", {"id": other}, "mutation")))


async def test_a_search_in_a_mutation_conflicts_with_a_write_it_would_have_seen(sdep: Deployment) -> None:
    table = sdep.catalog.table("messages")
    txn = Transaction(sdep.catalog, await durable_snapshot(sdep), writable=True)
    try:
        from engine.database import DatabaseWriter

        db = DatabaseWriter(txn)
        assert await db.query("messages").with_search_index("search_body", search_q("urgent", channel="ops")).take(5) == []
        await txn.insert(table, {"body": "noted", "channel": "ops"})
        await send(sdep, "urgent fix", "dev")  # another channel: no conflict
        await send(sdep, "urgent fix", "ops")  # would have been found: conflict
        with pytest.raises(Conflict):
            sdep.committer.sequence(txn)
    finally:
        txn.close()


async def test_a_mutation_searches_its_own_writes(sdep: Deployment) -> None:
    await send(sdep, "zebra stripes")
    found = await call(sdep, "messages:sendThenSearch", {"text": "zebra", "body": "zebra crossing zebra",
                                                         "channel": "general"}, "mutation")
    assert found == ["zebra crossing zebra", "zebra stripes"]


async def test_query_at_a_past_timestamp_searches_the_past(sdep: Deployment) -> None:
    doc = await send(sdep, "first version")
    ts = sdep.latest_ts()
    await call(sdep, "messages:update", {"id": doc, "body": "second version"}, "mutation")
    await send(sdep, "first comes later")
    out = await sdep.call("messages:search", {"text": "first"}, kind="query", auth=ADMIN, ts=ts)
    assert out.success and out.value == ["first version"], out.error_message
    out = await sdep.call("messages:search", {"text": "first"}, kind="query", auth=ADMIN)
    assert out.value == ["first comes later"]


async def test_the_index_follows_commits_in_the_same_transaction(sdep: Deployment) -> None:
    for i in range(20):
        await send(sdep, f"entry {i}")
    doomed = await send(sdep, "entry doomed")
    await call(sdep, "messages:remove", {"id": doomed}, "mutation")
    info = sdep.catalog.table("messages").search["search_body"]
    number = sdep.catalog.table("messages").number
    snap = await durable_snapshot(sdep)
    try:
        if hasattr(snap, "fetchval"):  # PostgreSQL: the entries, the term dictionary, the statistics
            count = await snap.fetchval(f"SELECT count(*) FROM search_text_{info.id}")
            docs = await snap.fetchval("SELECT count(*) FROM documents WHERE table_number = $1", number)
            row = await snap.fetchrow("SELECT docs, tokens FROM search_stats WHERE index_id = $1", info.id)
            stats = (row[0], row[1])
            terms = {r[0]: r[1] for r in await snap.fetch(f"SELECT term, df FROM search_terms_{info.id}")}
            assert terms["entry"] == 20 and terms["7"] == 1 and "doomed" not in terms
        else:
            conn = snap._conn  # type: ignore[attr-defined]
            count = conn.execute(f"SELECT COUNT(*) FROM search_fts_{info.id}").fetchone()[0]
            docs = conn.execute("SELECT COUNT(*) FROM documents WHERE table_number = ?", (number,)).fetchone()[0]
            stats = conn.execute("SELECT docs, tokens FROM search_stats WHERE index_id = ?", (info.id,)).fetchone()
    finally:
        snap.close()
    assert count == docs == 20 and stats == (20, 40)


async def test_a_commit_that_fails_to_persist_leaves_the_index_untouched(sdep: Deployment) -> None:
    await send(sdep, "kept")
    store = sdep.persistence.search
    original = store.write

    def failing(conn: Any, ops: Any) -> None:
        original(conn, ops)
        raise OSError("disk full")

    store.write = failing  # type: ignore[method-assign]
    try:
        out = await sdep.call("messages:send", {"body": "lost", "channel": "general"}, kind="mutation", auth=ADMIN)
        assert not out.success
    finally:
        store.write = original  # type: ignore[method-assign]
    assert await bodies(sdep, "kept") == ["kept"] and await bodies(sdep, "lost") == []
    await send(sdep, "lost again")
    assert await bodies(sdep, "lost") == ["lost again"]


async def test_errors_are_4xx(sdep: Deployment) -> None:
    with pytest.raises(EngineError) as info:
        await read(sdep, lambda db: db.query("messages").with_search_index("search_body", lambda q: q.eq("x", 1)).take(1))
    assert info.value.status == 400


def _base36(i: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    return digits[i // 1296] + digits[i // 36 % 36] + digits[i % 36]


async def test_a_document_with_more_distinct_words_than_a_tsvector_holds(sdep: Deployment) -> None:
    """A document under the 1 MiB limit whose distinct words take 1.37 MB once lowercased ("Ⱥ" is 2
    bytes, its lowercase "ⱥ" 3), over PostgreSQL's 1 MiB of lexemes per tsvector: it is indexed
    whole on both stores (on PostgreSQL the words that do not fit go to the entry's overflow
    array), found by any of its words, with and without a filter, and leaves nothing behind."""
    words = ["Ⱥ" * 12 + _base36(i) for i in range(35_000)]
    lowered = [w.lower() for w in words]
    assert sum(len(w.encode()) for w in lowered) > 1_048_576
    big = await send(sdep, " ".join(words), "ops")
    await send(sdep, f"{words[-1]} also here", "ops")
    # (Queries use the words as written: a query token too is dropped at 32 bytes before lowercasing.)
    for word in (words[0], words[17_500], words[-1]):  # the first, the middle, the last (in the overflow)
        found = await bodies(sdep, word, 10, channel="ops")
        assert len(found) == (2 if word == words[-1] else 1) and any(len(b.encode()) > 900_000 for b in found)
    assert await bodies(sdep, words[-1], 10, channel="random") == []
    # Word starts: completions only in the overflow ("q.."), and the last completion before it.
    assert len(await bodies(sdep, "Ⱥ" * 12 + "q", 10)) == 1
    assert len(await bodies(sdep, "Ⱥ" * 12 + "rzz", 10)) == 0 and len(await bodies(sdep, "Ⱥ" * 12 + "r0", 10)) == 2
    await call(sdep, "messages:remove", {"id": big}, "mutation")
    assert await bodies(sdep, words[-1]) == [f"{words[-1]} also here"]
    assert await bodies(sdep, words[0]) == []
