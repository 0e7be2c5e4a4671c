"""Full-text search queries with Convex's semantics: `with_search_index`, matching, ranking, reads.

    await (ctx.db.query("messages")
           .with_search_index("search_body", lambda q: q.search("body", "hello wor").eq("channel", "#general"))
           .take(10))

Matching (Convex's current search, crates/search `compile` / `search`):
- the query text is tokenized like documents (engine.search.tokens); its first 16 tokens are the
  terms, the last of them also matches as a prefix; an empty text, or one without tokens, matches
  nothing;
- a document matches when it holds at least one term (or a completion of the prefix term) and
  every `eq` filter holds (up to 8; equality of Convex values, `undefined` for a missing field);
- a query uses at most 64 distinct index terms: the whole terms present in the index and the
  filter conditions first, then completions of the prefix term in lexicographic order (as Convex's
  term dictionary streams them) until the budget is spent;
- ranking is BM25 (k1 = 1.2, b = 0.75, tantivy's idf ln(1 + (N - n + 0.5) / (n + 0.5)) and its
  quantized field lengths) over the index's documents, a completion counting half as much as a
  whole term; ties go to the newer document. At most 1 024 results: reading a 1 025th is
  `SearchQueryScannedTooManyDocumentsError` (`take(n)`/`paginate` within the 1 024 are fine).

Reads: a search records, on the index's pseudo-index id, the keys of its terms under its first
filter condition (or under "no filter"): a point per whole term, an interval per prefix term, plus
the prefix under "no filter" when the completion budget was reached (a write anywhere could change
which completions count). Commits write the keys of every token of the old and new versions of
the documents they change (engine.search.maintenance), so exactly the writes that could add,
remove or reorder a result touch the read set, for OCC and for subscriptions alike. Each returned
document is also read by id, like `db.get`. As in Convex, a change of the index-wide statistics
alone (N, lengths and frequencies in other documents) does not re-run a query.

Inside a mutation the search sees the transaction's own writes and the commits not yet durable
(engine.tail), and `query_at_ts` sees the past (engine.history): both are overlays of changed
documents over the durable index, folded into the statistics and candidates here.
"""

from __future__ import annotations

import heapq
import math
from collections import Counter
from dataclasses import dataclass
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Callable

from ..errors import EngineError
from ..index_keys import UNDEFINED, encode_key, encode_value
from ..reads import point
from ..values import decode_json
from .backend import SearchStore, check_available
from .maintenance import text_entry
from .spec import SearchIndexInfo
from .tokens import (MAX_CANDIDATES, MAX_FILTER_CONDITIONS, MAX_UNIQUE_QUERY_TERMS, NO_FILTER, filter_bytes,
                     filter_prefix, filter_token, prefix_interval, query_terms, term_key)

if TYPE_CHECKING:
    from ..catalog import TableInfo
    from ..transaction import Transaction

__all__ = ["SearchFilterBuilder", "CompiledSearch", "compile_search", "run_search", "SearchScan",
           "snapshot_overlay", "bm25_fieldnorm", "READY_KEY"]

K1 = 1.2
B = 0.75
PREFIX_BOOST = 0.5
FILTERS_AFTER_MAX = 2000
# The key a search of a backfilling index reads and the commit that finishes the backfill writes.
READY_KEY = b""


def _fieldnorm_table() -> list[int]:
    # tantivy's 256 field-length buckets: exact below 24, then 8 steps per doubling.
    out = []
    for b in range(256):
        if b < 24:
            out.append(b)
        else:
            e = b - 24
            bits, shift = e & 7, e >> 3
            out.append(24 + (bits if shift == 0 else (bits | 8) << (shift - 1)))
    return out


_FIELDNORMS = _fieldnorm_table()


def bm25_fieldnorm(length: int) -> int:
    """A document length as tantivy stores it (the largest bucket value not above it)."""
    from bisect import bisect_right

    return _FIELDNORMS[bisect_right(_FIELDNORMS, length) - 1]


class SearchFilterBuilder:
    """The `q` of `with_search_index(name, lambda q: q.search(field, text).eq(field, value))`."""

    __slots__ = ("filters",)

    def __init__(self) -> None:
        self.filters: list[tuple[str, str, Any]] = []

    def search(self, field_name: str, query: str) -> SearchFilterBuilder:
        if not isinstance(field_name, str):
            raise EngineError("InvalidSearchQuery", "q.search() takes a field name first.")
        if not isinstance(query, str):
            raise EngineError("InvalidSearchQuery", f"q.search() takes the search text as a string, got "
                              f"{type(query).__name__}.")
        self.filters.append(("search", field_name, query))
        return self

    def eq(self, field_name: str, value: Any = UNDEFINED) -> SearchFilterBuilder:
        if not isinstance(field_name, str):
            raise EngineError("InvalidSearchQuery", "q.eq() takes a field name first.")
        self.filters.append(("eq", field_name, value))
        return self


@dataclass(slots=True)
class CompiledSearch:
    terms: list[tuple[str, bool]]  # (token, matches as a prefix)
    conditions: list[tuple[int, Any]]  # (filter ordinal, value)
    empty_text: bool


def _field(path: str) -> str:
    return f'"{path}"'


def compile_search(info: SearchIndexInfo, filters: list[tuple[str, str, Any]]) -> CompiledSearch:
    """Convex's checks, in its order, with its codes and texts."""
    name = info.printable
    text: str | None = None
    conditions: list[tuple[int, Any]] = []
    for kind, field, value in filters:
        if kind == "search":
            if field != info.search_field:
                raise EngineError("IncorrectSearchField",
                                  f"Search query against {name} contains a search filter against {_field(field)}, "
                                  f"which doesn't match the indexed `searchField` {_field(info.search_field)}.")
            if text is not None:
                raise EngineError("DuplicateSearchFiltersError",
                                  f"Search query against {name} contains multiple search filters against "
                                  f"{_field(field)}. Only one is allowed.")
            text = value
        else:
            if field not in info.filter_fields:
                raise EngineError("IncorrectFilterFieldError",
                                  f"Search query against {name} contains an equality filter on {_field(field)} but "
                                  "that field isn't indexed for filtering in `filterFields`.")
            try:
                encode_value(value)
            except (ValueError, TypeError) as e:
                raise EngineError("InvalidSearchQuery", f"q.eq({field!r}, ...) needs a Convex value: {e}") from None
            conditions.append((info.filter_fields.index(field), value))
    if text is None:
        raise EngineError("MissingSearchFilterError",
                          f"Search query against {name} does not contain any search filters. You must include a "
                          f'search filter like `q.search("{info.search_field}", searchText)`.')
    if len(conditions) > MAX_FILTER_CONDITIONS:
        raise EngineError("TooManyFilterConditionsInSearchQueryError",
                          f"Search query against {name} has too many filter conditions. Max: "
                          f"{MAX_FILTER_CONDITIONS} Actual: {len(conditions)}")
    return CompiledSearch(query_terms(text), conditions, text == "")


def snapshot_overlay(snapshot: Any) -> tuple[Any, dict[str, bytes | None]]:
    """(the durable snapshot underneath, {doc id: stored JSON or None} where the view differs):
    the tail of a mutation's view, the undone commits of a view at a past timestamp
    (engine.overlay)."""
    from ..overlay import OverlaySnapshot

    if isinstance(snapshot, OverlaySnapshot):
        base, overlay = snapshot_overlay(snapshot.base)
        for doc_id in list(snapshot._docs):
            decided, state = snapshot._doc_state(doc_id)
            if decided:
                overlay[doc_id] = state[1] if state is not None else None
        return base, overlay
    return snapshot, {}


async def _base_get(base: Any, doc_id: str) -> tuple[int, bytes] | None:
    return base.get_now(doc_id) if getattr(base, "inline_reads", False) else await base.get(doc_id)


class Hit:
    """One result: `key` is [-score, -creation time, id] (ascending key order is result order),
    encoded when first asked for (a take(10) of 1 024 results needs 10)."""

    __slots__ = ("_neg_score", "_neg_ctime", "doc_id", "_key")

    def __init__(self, neg_score: float, neg_ctime: float, doc_id: str) -> None:
        self._neg_score = neg_score
        self._neg_ctime = neg_ctime
        self.doc_id = doc_id
        self._key: bytes | None = None

    @property
    def score(self) -> float:
        return -self._neg_score

    @property
    def key(self) -> bytes:
        if self._key is None:
            self._key = encode_key([self._neg_score, self._neg_ctime, self.doc_id])
        return self._key


def _record_terms(txn: Transaction, info: SearchIndexInfo, compiled: CompiledSearch) -> bytes:
    prefix = filter_prefix(*compiled.conditions[0]) if compiled.conditions else filter_prefix(NO_FILTER)
    for token, is_prefix in compiled.terms:
        if is_prefix:
            txn.reads.add(info.id, *prefix_interval(prefix, token))
        else:
            txn.reads.add(info.id, *point(term_key(prefix, token)))
    return prefix


async def run_search(txn: Transaction, table: TableInfo, info: SearchIndexInfo, compiled: CompiledSearch,
                     store: Any) -> list[Hit]:
    """The ranked results (at most 1 024), recording the search's reads in `txn.reads`."""
    if compiled.empty_text:
        return []  # Convex answers an empty search text before looking at the index
    if not info.ready:
        txn.reads.add(info.id, *point(READY_KEY))  # re-run once the backfill lands
        raise EngineError("IndexBackfillingError",
                          f"Index {info.printable} is currently backfilling and not available to query yet.")
    txn._count_range()
    if not compiled.terms:
        return []  # no tokens: nothing can match, whatever is written
    _record_terms(txn, info, compiled)
    base, overlay = snapshot_overlay(txn.snapshot)
    catalog = txn.catalog
    # Documents where this view differs from the durable index: (base entry, view entry).
    changed: dict[str, tuple[Any, Any]] = {}
    candidates_over: dict[str, Any] = dict(overlay)
    for doc_id, w in txn.writes.items():
        if w.table is table:
            candidates_over[doc_id] = w.new
    for doc_id, value in candidates_over.items():
        if catalog.table_of_id(doc_id) != table.name:
            continue
        base_row = await _base_get(base, doc_id)
        base_entry = text_entry(info, decode_json(base_row[1]))[0] if base_row is not None else None
        if isinstance(value, (bytes, bytearray, memoryview)):
            value = decode_json(bytes(value))
        view_entry = text_entry(info, value)[0] if value is not None else None
        if base_entry != view_entry:
            changed[doc_id] = (base_entry, view_entry)

    reader = store.text_reader(base, info)
    num_docs, num_tokens = await reader.stats()
    for old, new in changed.values():
        if old is not None:
            num_docs -= 1
            num_tokens -= len(old.tokens)
        if new is not None:
            num_docs += 1
            num_tokens += len(new.tokens)

    async def freqs(terms: list[str]) -> dict[str, int]:
        out = await reader.doc_freqs(terms)
        for old, new in changed.values():
            for entry, sign in ((old, -1), (new, 1)):
                if entry is None:
                    continue
                held = set(entry.tokens) | set(entry.filter_tokens)
                for t in terms:
                    if t in held:
                        out[t] += sign
        return out

    ftokens = sorted({filter_token(o, filter_bytes(v)) for o, v in compiled.conditions})
    exact = sorted({t for t, _ in compiled.terms})
    df = await freqs(exact)
    or_terms: dict[str, float] = {t: 1.0 for t in exact if df[t] > 0}
    last, last_is_prefix = compiled.terms[-1]
    if last_is_prefix:
        budget = MAX_UNIQUE_QUERY_TERMS - len(or_terms) - len(ftokens)
        vanishing = {t for old, _ in changed.values() if old is not None for t in old.tokens if t.startswith(last)}
        fetched = await reader.prefix_terms(last, budget + len(exact) + len(vanishing) + 1)
        pool = {t for t, _ in fetched}
        for old, new in changed.values():
            for entry in (old, new):
                if entry is not None:
                    pool.update(t for t in entry.tokens if t.startswith(last))
        pool.difference_update(exact)
        pool_df = await freqs(sorted(pool)) if changed else {t: n for t, n in fetched if t in pool}
        available = sorted(t for t in pool if pool_df.get(t, 0) > 0)
        for t in available[:budget]:
            or_terms[t] = PREFIX_BOOST
            df[t] = pool_df[t]
        if len(available) >= budget:
            # The completions that count depend on terms anywhere in the index: any write of a
            # completion may change them.
            txn.reads.add(info.id, *prefix_interval(filter_prefix(NO_FILTER), last))
    if not or_terms:
        return []

    n = max(num_docs, 1)
    avg = num_tokens / n if num_tokens > 0 else 1.0
    weights = {t: boost * math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5)) * (1.0 + K1)
               for t, boost in or_terms.items()}
    want = list(or_terms)
    hits: list[tuple[float, float, str]] = []
    norms: dict[int, float] = {}  # BM25's length factor, per document length

    def score(tokens: list[str]) -> float:
        n = len(tokens)
        norm = norms.get(n)
        if norm is None:
            norm = norms[n] = K1 * (1.0 - B + B * bm25_fieldnorm(n) / avg)
        if len(want) > 4:
            counts = Counter(tokens)
            total = 0.0
            for t in want:
                tf = counts.get(t, 0)
                if tf:
                    total += weights[t] * tf / (tf + norm)
            return total
        total = 0.0
        for t in want:
            tf = tokens.count(t)
            if tf:
                total += weights[t] * tf / (tf + norm)
        return total

    append = hits.append
    # Few documents hold the terms: look them up and check the filters on them, rather than
    # intersecting with a filter value's document list (a tenant's may hold most of the index).
    filters_after = bool(ftokens) and sum(df[t] for t in want) <= FILTERS_AFTER_MAX
    for doc_id, ctime, tokens in await reader.matches(want, ftokens, filters_after=filters_after):
        if doc_id in changed:
            continue
        append((-score(tokens), -ctime, doc_id))
    wanted_filters = set(ftokens)
    for doc_id, (_, new) in changed.items():
        if new is None or not wanted_filters.issubset(new.filter_tokens):
            continue
        tokens = list(new.tokens)
        if any(t in or_terms for t in tokens):
            hits.append((-score(tokens), -new.creation_time, doc_id))
    best = heapq.nsmallest(MAX_CANDIDATES, hits) if len(hits) > MAX_CANDIDATES else sorted(hits)
    return [Hit(s, c, d) for s, c, d in best]


def _too_many() -> EngineError:
    return EngineError("SearchQueryScannedTooManyDocumentsError",
                       f"Search query scanned too many documents (fetched {MAX_CANDIDATES}). Consider using a "
                       "smaller limit, paginating the query, or using a filter field to limit the number of "
                       "documents pulled from the search index.")


class SearchScan:
    """The results of one search as the query builder walks them (like engine.transaction.RangeScan):
    (key, document) in relevance order, each document read by id."""

    def __init__(self, txn: Transaction, table: TableInfo, info: SearchIndexInfo, hits: list[Hit]) -> None:
        self.txn = txn
        self.table = table
        self.index = info
        self.hits = hits
        self.last_key: bytes | None = None
        self._at = 0  # results handed out so far

    async def document(self, doc_id: str) -> dict[str, Any]:
        txn = self.txn
        txn.reads.add(self.table.by_id.id, *point(encode_value(doc_id)))
        pending = txn.writes.get(doc_id)
        if pending is not None and pending.new is not None:
            from ..transaction import _copy

            return _copy(pending.new)
        row = await txn._row(doc_id)
        if row is None:  # pragma: no cover - the index and the documents share one snapshot
            raise EngineError("InternalError", f"Search result {doc_id} is missing from the snapshot.")
        txn._count_doc(len(row[1]))
        return decode_json(row[1])

    async def next_page(self, limit: int) -> list[tuple[bytes, dict[str, Any]]] | None:
        """The next results (at most `limit`), None once every result was read. Asking for more
        after the 1 024th is Convex's SearchQueryScannedTooManyDocumentsError."""
        at, hits = self._at, self.hits
        if at >= len(hits):
            if at >= MAX_CANDIDATES:
                raise _too_many()
            return None
        page = []
        for hit in hits[at:at + max(1, limit)]:
            page.append((hit.key, await self.document(hit.doc_id)))
        self._at = at + len(page)
        self.last_key = page[-1][0]
        return page

    async def pages(self, first: int = 64) -> AsyncIterator[list[tuple[bytes, dict[str, Any]]]]:
        limit = first
        while (page := await self.next_page(limit)) is not None:
            yield page
            limit = min(limit * 2, MAX_CANDIDATES)

    async def __aiter__(self) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        async for page in self.pages():
            for row in page:
                yield row

    def finish(self, exhausted: bool | None = None) -> None:
        """Nothing to record: the search's reads were recorded when it ran."""


async def open_search(txn: Transaction, table: TableInfo, index_name: str,
                      search_filter: Callable[[SearchFilterBuilder], Any], store: SearchStore) -> SearchScan:
    info = table.search.get(index_name)
    # A storage backend without search, or one that could not build this index (engine.search.backend).
    check_available(store, f"{table.name}.{index_name}")
    if not isinstance(info, SearchIndexInfo):
        if info is None:
            raise EngineError("IndexNotFoundError", f"Index {table.name}.{index_name} not found.")
        raise EngineError("IndexNotASearchIndexError", f"Index {table.name}.{index_name} is not a search index")
    builder = SearchFilterBuilder()
    result = search_filter(builder)
    if result is not builder:
        raise EngineError("InvalidSearchQuery",
                          "The search filter function must return the builder it was given "
                          '(chain the calls: `lambda q: q.search("field", text).eq("other", value)`).')
    compiled = compile_search(info, builder.filters)
    return SearchScan(txn, table, info, await run_search(txn, table, info, compiled, store))
