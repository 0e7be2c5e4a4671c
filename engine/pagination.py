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

from .errors import ConvexError, EngineError
from .reads import successor
from .values import value_size

if TYPE_CHECKING:
    from .query_builder import Query

__all__ = ["paginate", "encode_cursor", "decode_cursor", "invalid_cursor", "option_number", "END"]

END = None  # the cursor position "end of the index range"
_AFTER, _END = 1, 2


def encode_cursor(index_id: int, key: bytes | None) -> str:
    head = struct.pack(">BI", _END if key is None else _AFTER, index_id)
    return base64.urlsafe_b64encode(head + (key or b"")).decode().rstrip("=")


def invalid_cursor() -> ConvexError:
    """Convex's InvalidCursor (crates/database/src/query/mod.rs): a ConvexError whose data tells
    `usePaginatedQuery` to restart the pagination from the first page."""
    return ConvexError._with_message(
        {"isConvexSystemError": True, "paginationError": "InvalidCursor"},
        "InvalidCursor: Tried to run a query starting from a cursor, but it looks like this cursor is from a "
        "different query.")


def decode_cursor(cursor: Any, index_id: int) -> bytes | None:
    """The key a cursor points after (None for the end). Raises Convex's InvalidCursor."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, cursor_index = struct.unpack(">BI", raw[:5])
    except Exception:
        raise invalid_cursor() from None
    if cursor_index != index_id or kind not in (_AFTER, _END):
        raise invalid_cursor()
    return raw[5:] if kind == _AFTER else END


# Convex's knobs and constants (crates/common/src/knobs.rs, crates/database/src/query/*,
# crates/isolate/src/environment/udf/async_syscall.rs).
MAX_ROWS_READ = 32_000            # TRANSACTION_MAX_READ_SIZE_ROWS; also the largest numItems
MAX_BYTES_READ = 16 * 1024 * 1024  # TRANSACTION_MAX_READ_SIZE_BYTES
SOFT_MAX_PAGE_LEN = 8192 * 3 // 4  # soft_data_limit(MAX_ARRAY_LEN)
MAX_QUERY_FETCH = 1024            # most rows one index fetch asks for
DEFAULT_QUERY_PREFETCH = 100
FILTER_QUERY_PREFETCH = 100       # a filtered query fetches this many at a time, whatever the page size


def soft_data_limit(hard: int) -> int:
    return hard * 3 // 4


def option_number(opts: dict[str, Any], name: str, required: bool) -> int | None:
    """A `paginationOpts` number (numItems, maximumRowsRead, ...), checked with Convex's texts."""
    value = opts.get(name)
    if value is None:
        if required:
            raise EngineError("InvalidPaginationOptions", f"paginationOpts.{name} is required.")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or value < 0:
        if name == "numItems":
            raise EngineError("InvalidPaginationOptions",
                              f"`options.numItems` must be a positive number. Received `{value}`.")
        raise EngineError("InvalidPaginationOptions", f"paginationOpts.{name} must be a non-negative number.")
    return int(value)


class _PaginationLimit(Exception):
    """maximumRowsRead / maximumBytesRead reached before the page filled (Convex's pagination_limit)."""


class _PageReader:
    """Convex's `IndexRange` stream for one page: rows are fetched from the index in batches (the
    size a batch asks for is the prefetch hint, at most 1024, and never past maximumRowsRead),
    `rows_read` counts fetched rows, `returned_bytes` the rows handed on, and every row handed on
    (filtered out or not) is a candidate split position."""

    def __init__(self, rows: Any, *, bounded: bool, max_rows: int | None, max_bytes: int | None) -> None:
        self._rows = rows  # a RangeScan
        self._buffer: list[tuple[bytes, dict[str, Any]]] = []
        self._pos = 0
        self._unfetched = True
        self.enforce = not bounded  # with an end cursor the whole range is read, limits or not
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self.rows_read = 0
        self.returned_bytes = 0
        self.positions: list[bytes] = []  # keys of the rows handed on (intermediate cursors)
        self.exhausted = False
        self.soft_rows = soft_data_limit(min(max_rows if max_rows is not None else MAX_ROWS_READ, MAX_ROWS_READ))
        self.soft_bytes = soft_data_limit(min(max_bytes if max_bytes is not None else MAX_BYTES_READ,
                                              MAX_BYTES_READ))

    async def next(self, hint: int | None) -> tuple[bytes, dict[str, Any]] | None:
        while True:
            if self.enforce and self.max_bytes is not None and self.returned_bytes >= self.max_bytes:
                raise _PaginationLimit
            if self._pos < len(self._buffer):
                key, doc = self._buffer[self._pos]
                self._pos += 1
                self.positions.append(key)
                self.returned_bytes += value_size(doc)
                return key, doc
            if self.exhausted:
                return None
            if not self._unfetched:
                self.exhausted = True
                return None
            want = min(max(hint if hint is not None else DEFAULT_QUERY_PREFETCH, 1), MAX_QUERY_FETCH)
            if self.enforce and self.max_rows is not None:
                if self.rows_read >= self.max_rows:
                    raise _PaginationLimit
                want = min(want, self.max_rows - self.rows_read)
            self._buffer = await self._rows.fetch(want)
            self._pos = 0
            self.rows_read += len(self._buffer)
            if len(self._buffer) < want:
                self._unfetched = False  # the fetch came back short: the range has no more rows

    def approaching_limit(self) -> bool:
        return self.rows_read > self.soft_rows or self.returned_bytes > self.soft_bytes

    def split_position(self) -> bytes | None:
        return self.positions[len(self.positions) // 2] if len(self.positions) > 2 else None


async def paginate(query: Query, opts: Any) -> dict[str, Any]:
    """One page, as Convex's `queryPage` computes it (`read_page_from_query`):

    - With an end bound (`endCursor`, else the journal's) every row up to it is read, whatever
      `numItems` and the read limits say; without one, rows until `numItems` match.
    - `maximumRowsRead` / `maximumBytesRead` stop a page early with `pageStatus: "SplitRequired"`;
      the page then ends after the last row read, so the next page continues from there.
    - `"SplitRecommended"` when the page read more than 3/4 of a read limit (Convex's soft limits:
      of maximumRowsRead / maximumBytesRead, at most 32 000 rows and 16 MiB) or holds more than
      6 144 items.
    - `splitCursor` is the middle of the rows read (matching or not) when more than two were.
    - `isDone` only once the range is known to have ended: a page that fills exactly is not done,
      and the next page is empty and done.
    """
    if not isinstance(opts, dict):
        raise EngineError("InvalidPaginationOptions", "paginate() takes {numItems, cursor, endCursor?}.")
    num_items = option_number(opts, "numItems", True)
    max_rows = option_number(opts, "maximumRowsRead", False)
    max_bytes = option_number(opts, "maximumBytesRead", False)
    cursor = opts.get("cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise EngineError("InvalidPaginationOptions", "paginationOpts.cursor must be a string or null.")
    if num_items == 0:
        raise EngineError("NoDocumentsForPagination", "Must request at least 1 document while paginating")
    if num_items > MAX_ROWS_READ:  # type: ignore[operator]
        raise EngineError("PageSizeTooLarge", f"Requested too many items: {num_items}")
    if max_rows == 0 or max_bytes == 0:
        raise EngineError("InvalidPaginationLimit", "maximumRowsRead and maximumBytesRead must be greater than 0")

    scan = await query._open()
    if scan is None:  # table does not exist yet: an empty, finished page
        return {"page": [], "isDone": True, "continueCursor": "", "splitCursor": None, "pageStatus": None}
    txn = scan.txn
    scan.finish(False)  # re-planned below with the cursor bounds; `_open` only resolved the range
    txn.ranges_read -= 1
    if txn.paginated:
        raise EngineError("MultiplePaginatedDatabaseQueries",
                          "This query or mutation function ran multiple paginated queries. Convex only supports "
                          "a single paginated query in each function.")
    txn.paginated = True

    index_id = scan.index.id
    end_cursor = opts.get("endCursor")
    if end_cursor is None:
        end_cursor = txn.journal_end
    lo, hi, desc = scan.lo, scan.hi, scan.desc

    start_key: bytes | None = None
    started_at_end = False
    if cursor is not None:
        after = decode_cursor(cursor, index_id)
        if after is END:
            lo = hi  # nothing left
            started_at_end = True
        else:
            start_key = cast(bytes, after)
            if desc:
                hi = min(hi, start_key)
            else:
                lo = max(lo, successor(start_key))
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
    reader = _PageReader(run, bounded=bounded, max_rows=max_rows, max_bytes=max_bytes)
    filtered = bool(query._filters)
    page: list[dict[str, Any]] = []
    status: str | None = None
    while bounded or len(page) < num_items:  # type: ignore[operator]
        hint = FILTER_QUERY_PREFETCH if filtered else (num_items if bounded else num_items - len(page))  # type: ignore[operator]
        try:
            item = await reader.next(hint)
            while item is not None and not query._matches(item[1]):
                item = await reader.next(hint)
        except _PaginationLimit:
            status = "SplitRequired"
            break
        if item is None:
            break
        page.append(item[1])
    if status is None and (reader.approaching_limit() or len(page) > SOFT_MAX_PAGE_LEN):
        status = "SplitRecommended"

    # The read set: up to the last row handed on, or the whole range once it ended.
    run.last_key = reader.positions[-1] if reader.positions else None
    run.finish(reader.exhausted)

    if bounded:
        continue_cursor = end_cursor
        is_done = end_key is END
    elif reader.exhausted or started_at_end:
        continue_cursor = encode_cursor(index_id, END)
        is_done = True
    else:
        position = reader.positions[-1] if reader.positions else start_key
        continue_cursor = encode_cursor(index_id, position)
        is_done = False
    txn.journal_out = continue_cursor
    split = reader.split_position()
    return {"page": page, "isDone": is_done, "continueCursor": continue_cursor,
            "splitCursor": encode_cursor(index_id, split) if split is not None else None,
            "pageStatus": status}
