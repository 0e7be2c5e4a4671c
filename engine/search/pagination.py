"""`paginate()` on a search query, with Convex's search-pagination semantics.

A page cursor is a position in the ranking, the result key `[-score, -creation time, id]`
(engine.search.text), encoded like database-index cursors (engine.pagination) under the search
index's id. Each page runs the search again and keeps the results after its cursor (and up to its
end cursor: `endCursor`, or the journal of a subscribed page, which is what keeps reactive pages
gapless). A search produces at most 1 024 results, so pagination ends there; a search page is never
split (`splitCursor` null, as in Convex).

One deviation, for gapless reactive pages: Convex compares a cursor's key with the new ranking, but
any write to the index moves every score a little (BM25's N and average length change), so a page
pinned at "score s" drifts. Here a cursor is held by its document: while that document is still a
result, the page boundary is its position in the new ranking; only once it is gone does the key
comparison decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import EngineError
from ..index_keys import decode_key
from ..pagination import END, decode_cursor, encode_cursor, option_number
from .text import SearchScan
from .tokens import MAX_CANDIDATES

if TYPE_CHECKING:
    from ..query_builder import Query

__all__ = ["paginate_search"]


def _boundary(hits: list[Any], key: bytes) -> int:
    """How many results come before-or-at the cursor `key` (see the module docstring)."""
    try:
        doc_id = decode_key(key)[-1]
    except (ValueError, IndexError):
        doc_id = None
    for i, hit in enumerate(hits):
        if hit.doc_id == doc_id:
            return i + 1
    return sum(1 for hit in hits if hit.key <= key)


async def paginate_search(query: Query, opts: Any) -> dict[str, Any]:
    if not isinstance(opts, dict):
        raise EngineError("InvalidPaginationOptions", "paginate() takes {numItems, cursor, endCursor?}.")
    num_items = option_number(opts, "numItems", True)
    max_rows = option_number(opts, "maximumRowsRead", False)
    cursor = opts.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise EngineError("InvalidPaginationOptions", "paginationOpts.cursor must be a string or null.")
    scan = await query._open()
    if scan is None:
        return {"page": [], "isDone": True, "continueCursor": "", "splitCursor": None, "pageStatus": None}
    assert isinstance(scan, SearchScan)
    txn = scan.txn
    if txn.paginated:
        raise EngineError("MultiplePaginatedDatabaseQueries", "Only one paginated database query is allowed per function.")
    txn.paginated = True
    index_id = scan.index.id
    end_cursor = opts.get("endCursor")
    if end_cursor is None:
        end_cursor = txn.journal_end
    all_hits = scan.hits
    start, stop = 0, len(all_hits)
    if cursor is not None:
        after = decode_cursor(cursor, index_id)
        start = stop if after is None else _boundary(all_hits, after)
    bounded = end_cursor is not None
    end_key = None
    if bounded:
        end_key = decode_cursor(end_cursor, index_id)
        if end_key is not None:
            stop = _boundary(all_hits, end_key)
    hits = all_hits[start:max(start, stop)]
    if not bounded and num_items == 0:
        raise EngineError("NoDocumentsForPagination", "paginationOpts.numItems must be greater than 0.")
    page: list[dict[str, Any]] = []
    last_key: bytes | None = None
    more = False
    scanned = 0
    for hit in hits:
        if scanned >= MAX_CANDIDATES:
            raise EngineError("SearchQueryScannedTooManyDocumentsError",
                              f"Search query scanned too many documents (fetched {MAX_CANDIDATES}). Consider using a "
                              "smaller limit, paginating the query, or using a filter field to limit the number of "
                              "documents pulled from the search index.")
        if not bounded and len(page) >= num_items:  # type: ignore[operator]
            more = True
            break
        scanned += 1
        doc = await scan.document(hit.doc_id)
        last_key = hit.key
        if query._matches(doc):
            page.append(doc)
        if max_rows is not None and scanned >= max_rows and not bounded:
            more = scanned < len(hits)
            break
    if bounded:
        continue_cursor = end_cursor
        is_done = end_key is END
    elif more and last_key is not None:
        continue_cursor = encode_cursor(index_id, last_key)
        is_done = False
    else:
        continue_cursor = encode_cursor(index_id, END)
        is_done = True
    txn.journal_out = continue_cursor
    return {"page": page, "isDone": is_done, "continueCursor": continue_cursor, "splitCursor": None,
            "pageStatus": None}
