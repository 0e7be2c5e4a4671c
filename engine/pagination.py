"""`query.paginate(paginationOpts)` with Convex's semantics (protocol reference §8).

A cursor is an opaque position in one index: "after key K" or "the end of the range". A page reads
from its cursor up to `numItems` matching rows, or — when it has an end bound (`endCursor` from the
client, else the end recorded in the query's journal) — every row up to that bound, whatever
`numItems` says. That is what keeps reactive pages gapless: when page k re-runs after an insert, its
journal pins its end to the same key, so the new row lands in exactly one page.

`continueCursor` is always a string; `isDone` is true when the page reached the end of the range.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, TYPE_CHECKING, cast

from .errors import EngineError
from .reads import successor

if TYPE_CHECKING:
    from .query_builder import Query

__all__ = ["paginate", "encode_cursor", "decode_cursor", "END"]

END = None  # the cursor position "end of the index range"
_AFTER, _END = 1, 2


def encode_cursor(index_id: int, key: bytes | None) -> str:
    head = struct.pack(">BI", _END if key is None else _AFTER, index_id)
    return base64.urlsafe_b64encode(head + (key or b"")).decode().rstrip("=")


def decode_cursor(cursor: Any, index_id: int) -> bytes | None:
    """The key a cursor points after (None for the end). Raises InvalidCursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, cursor_index = struct.unpack(">BI", raw[:5])
    except Exception:
        raise EngineError("InvalidCursor", "InvalidCursor: the pagination cursor is malformed.") from None
    if cursor_index != index_id or kind not in (_AFTER, _END):
        raise EngineError("InvalidCursor",
                          "InvalidCursor: the cursor belongs to a different query; restart pagination from null.")
    return raw[5:] if kind == _AFTER else END


def _num(opts: dict[str, Any], name: str, required: bool) -> int | None:
    value = opts.get(name)
    if value is None:
        if required:
            raise EngineError("InvalidPaginationOptions", f"paginationOpts.{name} is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        raise EngineError("InvalidPaginationOptions", f"paginationOpts.{name} must be a non-negative number.")
    return int(value)


async def paginate(query: Query, opts: Any) -> dict[str, Any]:
    if not isinstance(opts, dict):
        raise EngineError("InvalidPaginationOptions", "paginate() takes {numItems, cursor, endCursor?}.")
    num_items = _num(opts, "numItems", True)
    max_rows = _num(opts, "maximumRowsRead", False)
    cursor = opts.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise EngineError("InvalidPaginationOptions", "paginationOpts.cursor must be a string or null.")

    scan = await query._open()
    if scan is None:  # table does not exist yet: an empty, finished page
        return {"page": [], "isDone": True, "continueCursor": "", "splitCursor": None, "pageStatus": None}
    txn = scan.txn
    scan.finish(False)  # re-planned below with the cursor bounds; `_open` only resolved the range
    txn.ranges_read -= 1
    if txn.paginated:
        raise EngineError("MultiplePaginatedDatabaseQueries",
                          "Only one paginated database query is allowed per function.")
    txn.paginated = True

    index_id = scan.index.id
    end_cursor = opts.get("endCursor")
    if end_cursor is None:
        end_cursor = txn.journal_end
    lo, hi, desc = scan.lo, scan.hi, scan.desc

    if cursor is not None:
        after = decode_cursor(cursor, index_id)
        if after is END:
            lo = hi  # nothing left
        elif desc:
            hi = min(hi, cast(bytes, after))
        else:
            lo = max(lo, successor(cast(bytes, after)))
    bounded = end_cursor is not None
    end_key: bytes | None = None
    if bounded:
        end_key = decode_cursor(end_cursor, index_id)
        if end_key is not END:
            if desc:
                lo = max(lo, cast(bytes, end_key))
            else:
                hi = min(hi, successor(cast(bytes, end_key)))
    if lo > hi:
        lo = hi

    run = txn.scan(scan.table, scan.index, lo, hi, desc)
    page: list[dict[str, Any]] = []
    keys: list[bytes] = []
    scanned = 0
    more = False
    if not bounded and num_items == 0:
        raise EngineError("NoDocumentsForPagination", "paginationOpts.numItems must be greater than 0.")
    for key, doc in run:
        scanned += 1
        if not query._matches(doc):
            if max_rows is not None and scanned >= max_rows and not bounded:
                more = True
                break
            continue
        if not bounded and len(page) >= num_items:  # type: ignore[operator]
            more = True  # a further matching row exists: the page is full and not the last
            break
        page.append(doc)
        keys.append(key)
        if max_rows is not None and scanned >= max_rows and not bounded:
            more = True
            break
    run.finish(not more)

    if bounded:
        continue_cursor = end_cursor
        is_done = end_key is END
    elif more:
        last = keys[-1] if keys else run.last_key
        continue_cursor = encode_cursor(index_id, last)
        is_done = False
    else:
        continue_cursor = encode_cursor(index_id, END)
        is_done = True
    txn.journal_out = continue_cursor

    split_cursor = None
    page_status = None
    if num_items and len(page) > 2 * num_items and len(page) >= 2:
        split_cursor = encode_cursor(index_id, keys[len(keys) // 2 - 1])
        page_status = "SplitRecommended"
    return {"page": page, "isDone": is_done, "continueCursor": continue_cursor,
            "splitCursor": split_cursor, "pageStatus": page_status}
