"""A transaction: one function execution's reads and (for mutations) writes, at one snapshot.

Reads go to the snapshot, overlaid with this transaction's own pending writes, and every read is
recorded in the read set as the index interval actually walked. Writes are validated against the
schema when they are made, kept in memory, and turned into a `CommitRecord` plus the written index
keys when the committer sequences the transaction. Nothing reaches storage before that.

Convex's limits are enforced here with Convex's codes, so a runaway function fails with a clear
error instead of exhausting the process.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from .catalog import Catalog, IndexInfo, TableInfo, system_tail
from .errors import EngineError
from .ids import new_id
from .index_keys import UNDEFINED, encode_value
from .reads import ReadSet, point, successor
from .search.maintenance import index_changes
from .storage.base import FIRST_PAGE, MAX_PAGE, CommitRecord, Snapshot, after
from .values import check_field_name, decode_stored, encode_json, value_size

__all__ = ["Transaction", "Limits", "IDEMPOTENCY_KEYS"]

# A pseudo-index (no real index has id 0) holding (sessionId, requestId) keys of stored mutation
# results: a mutation run for a key reads it and its commit writes it, so two runs racing for the
# same key conflict like any read-modify-write, and the retry finds the stored result.
IDEMPOTENCY_KEYS = 0


@dataclass(frozen=True, slots=True)
class Limits:
    documents_read: int = 32_000
    bytes_read: int = 16 * 1024 * 1024
    index_ranges_read: int = 4_096
    documents_written: int = 16_000
    bytes_written: int = 16 * 1024 * 1024
    document_size: int = 1024 * 1024
    document_depth: int = 16
    document_fields: int = 1024
    array_length: int = 8192


DEFAULT_LIMITS = Limits()


class _CreationClock:
    """`_creationTime` values: milliseconds since the epoch, strictly increasing in this process."""

    def __init__(self) -> None:
        self.last = 0.0

    def next(self) -> float:
        now = time.time_ns() / 1e6
        if now <= self.last:
            now = self.last + 0.001
        self.last = now
        return now


creation_clock = _CreationClock()


@dataclass(slots=True)
class _Write:
    table: TableInfo
    old: dict[str, Any] | None  # as of the snapshot
    new: dict[str, Any] | None  # None = deleted
    old_raw: bytes | None = None  # `old` as stored (kept for engine.history)
    # Top-level fields that may differ between old and new; None = any (insert, replace, delete).
    changed: set[str] | None = None


class Transaction:
    def __init__(self, catalog: Catalog, snapshot: Snapshot, *, writable: bool,
                 limits: Limits = DEFAULT_LIMITS) -> None:
        self.catalog = catalog
        self.snapshot = snapshot
        self.ts = snapshot.ts
        self.writable = writable
        self.limits = limits
        self.reads = ReadSet()
        self.writes: dict[str, _Write] = {}
        self._rows: dict[str, tuple[int, bytes] | None] = {}  # stored rows read so far, by id
        self._inline = snapshot.inline_reads  # reads without a coroutine each
        self.docs_read = 0
        self.bytes_read = 0
        self.ranges_read = 0
        self.bytes_written = 0
        self.paginated = False
        self.open_scans: list[RangeScan] = []
        self.extra_keys: list[tuple[int, bytes]] = []  # non-index keys this commit writes (OCC only)
        self.journal_end: str | None = None  # the page end a re-run must keep (pagination)
        self.journal_out: str | None = None

    def close(self) -> None:
        self.snapshot.close()

    def flush_scans(self) -> None:
        """Record the read intervals of scans the function abandoned part-way (an early `break`)."""
        for scan in list(self.open_scans):
            scan.finish()

    # -- accounting ----------------------------------------------------------------------------
    def _count_range(self) -> None:
        self.ranges_read += 1
        if self.ranges_read > self.limits.index_ranges_read:
            raise EngineError("TooManyIndexRangesRead",
                              f"Too many index ranges read in one function (limit: {self.limits.index_ranges_read}).")

    def _count_doc(self, size: int) -> None:
        self.docs_read += 1
        self.bytes_read += size
        if self.docs_read > self.limits.documents_read:
            raise EngineError("TooManyDocumentsRead",
                              f"Too many documents read in one function (limit: {self.limits.documents_read}). "
                              "Use an index or paginate.")
        if self.bytes_read > self.limits.bytes_read:
            raise EngineError("TooManyBytesRead",
                              f"Too many bytes read in one function (limit: {self.limits.bytes_read}).")

    # -- reads ---------------------------------------------------------------------------------
    async def get(self, doc_id: str) -> dict[str, Any] | None:
        table = self._table_of(doc_id)
        if table is None:
            return None
        return await self._get(table, doc_id)

    async def _get(self, table: TableInfo, doc_id: str) -> dict[str, Any] | None:
        """`get` of a document of `table` (the caller resolved it)."""
        self._count_range()
        self.reads.add(table.by_id.id, *point(encode_value(doc_id)))
        pending = self.writes.get(doc_id)
        if pending is not None:
            return _copy(pending.new)
        row = await self._row(doc_id)
        if row is None:
            return None
        self._count_doc(len(row[1]))
        return decode_stored(row[1])

    async def _row(self, doc_id: str) -> tuple[int, bytes] | None:
        """The stored (table number, JSON) of a document in this transaction's snapshot."""
        rows = self._rows
        if doc_id in rows:
            return rows[doc_id]
        snapshot = self.snapshot
        row = rows[doc_id] = snapshot.get_now(doc_id) if self._inline else await snapshot.get(doc_id)  # type: ignore[attr-defined]
        return row

    def _table_of(self, doc_id: Any) -> TableInfo | None:
        if not isinstance(doc_id, str):
            raise EngineError("InvalidId", f"Expected a document id string, got {type(doc_id).__name__}.")
        row = self._rows.get(doc_id)
        if row is not None:  # read in this transaction: stored with its table's number (no id decoding)
            info = self.catalog.by_number.get(row[0])
            if info is not None:
                return info
        name = self.catalog.table_of_id(doc_id)
        return self.catalog.by_name[name] if name is not None else None

    def scan(self, table: TableInfo, index: IndexInfo, lo: bytes, hi: bytes,
             desc: bool) -> RangeScan:
        self._count_range()
        return RangeScan(self, table, index, lo, hi, desc)

    # -- writes --------------------------------------------------------------------------------
    def _require_writable(self) -> None:
        if not self.writable:
            raise EngineError("ReadOnlyTransaction", "Queries cannot write to the database; use a mutation.")

    async def _existing(self, doc_id: str, verb: str) -> tuple[TableInfo, dict[str, Any]]:
        table = self._table_of(doc_id)
        current = await self.get(doc_id) if table is not None else None
        if table is None or current is None:
            raise EngineError("DocumentNotFound", f"Cannot {verb} document {doc_id!r}: it does not exist.")
        return table, current

    async def _stage(self, table: TableInfo, doc_id: str, new: dict[str, Any] | None,
                     changed: set[str] | None = None, old: dict[str, Any] | None = None,
                     created: bool = False) -> None:
        """`old`, when given, is the snapshot's version of the document, decoded (saves a decode).
        `changed` (a patch): the fields set; the others' names were checked when they were written."""
        if new is not None:
            self._check_document(table, new, changed)
        w = self.writes.get(doc_id)
        if w is None:
            row = None if created else await self._row(doc_id)
            if old is None and row is not None:
                old = decode_stored(row[1])
            self.writes[doc_id] = _Write(table, old, new, row[1] if row is not None else None,
                                         changed if old is not None else None)
        else:
            w.new = new
            if changed is None or w.changed is None:
                w.changed = None
            else:
                w.changed |= changed
        if len(self.writes) > self.limits.documents_written:
            raise EngineError("TooManyDocumentsWritten",
                              f"Too many documents written in one mutation (limit: {self.limits.documents_written}).")

    def _check_document(self, table: TableInfo, doc: dict[str, Any], names: set[str] | None = None) -> None:
        user = {k: v for k, v in doc.items() if k not in ("_id", "_creationTime")}
        for key in user if names is None else [k for k in names if k in user]:
            if key.startswith("_"):
                raise EngineError("InvalidDocument",
                                  f'Field "{key}" in table "{table.name}" starts with "_", which is reserved for system fields.')
            try:
                check_field_name(key, document=True)
            except ValueError as e:
                raise EngineError("InvalidDocument", f'Table "{table.name}": {e}') from None
        _check_shape(doc, table.name, self.limits)
        size = value_size(doc)
        if size > self.limits.document_size:
            raise EngineError("DocumentTooLarge",
                              f'Document in table "{table.name}" is {size} bytes; the limit is {self.limits.document_size}.')
        self.bytes_written += size
        if self.bytes_written > self.limits.bytes_written:
            raise EngineError("TooManyBytesWritten",
                              f"Too many bytes written in one mutation (limit: {self.limits.bytes_written}).")
        if self.catalog.schema is not None and not table.system:  # system tables: engine-shaped
            if table.definition is None:
                raise EngineError("SchemaValidationError",
                                  f'Table "{table.name}" is not in the schema; add it to schema.py before writing to it.')
            table.definition.validate(user, self.catalog, table=table.name)

    async def insert(self, table: TableInfo, value: dict[str, Any]) -> str:
        self._require_writable()
        if not isinstance(value, dict):
            raise EngineError("InvalidDocument", f'insert into "{table.name}" expects an object.')
        for key in ("_id", "_creationTime"):
            if key in value:
                raise EngineError("InvalidDocument", f'insert into "{table.name}": "{key}" is a system field set by the database.')
        doc_id = new_id(table.number)
        doc = {k: v for k, v in value.items() if v is not UNDEFINED}
        doc["_id"] = doc_id
        doc["_creationTime"] = creation_clock.next()
        await self._stage(table, doc_id, doc, created=True)
        return doc_id

    async def patch(self, doc_id: str, fields: dict[str, Any]) -> None:
        self._require_writable()
        if not isinstance(fields, dict):
            raise EngineError("InvalidDocument", "patch expects an object of fields.")
        table = self._table_of(doc_id)
        old = None
        if table is not None and doc_id not in self.writes:
            old = await self._get(table, doc_id)  # records the read; a fresh decode we may keep as the old version
            current = dict(old) if old is not None else None  # top-level copy: patch replaces fields
        else:
            current = await self._get(table, doc_id) if table is not None else None
        if table is None or current is None:
            raise EngineError("DocumentNotFound", f"Cannot patch document {doc_id!r}: it does not exist.")
        for key, value in fields.items():
            if key in ("_id", "_creationTime"):
                if value is not UNDEFINED and value != current[key]:
                    raise EngineError("InvalidDocument", f'patch cannot change the system field "{key}".')
                continue
            if value is UNDEFINED:
                current.pop(key, None)
            else:
                current[key] = value
        await self._stage(table, doc_id, current, {k for k in fields if k not in ("_id", "_creationTime")}, old)

    async def replace(self, doc_id: str, value: dict[str, Any]) -> None:
        self._require_writable()
        if not isinstance(value, dict):
            raise EngineError("InvalidDocument", "replace expects an object.")
        table, current = await self._existing(doc_id, "replace")
        doc = {k: v for k, v in value.items() if v is not UNDEFINED and k not in ("_id", "_creationTime")}
        for key in ("_id", "_creationTime"):
            if key in value and value[key] != current[key]:
                raise EngineError("InvalidDocument", f'replace cannot change the system field "{key}".')
        doc["_id"] = current["_id"]
        doc["_creationTime"] = current["_creationTime"]
        await self._stage(table, doc_id, doc)

    async def delete(self, doc_id: str) -> None:
        self._require_writable()
        table, _ = await self._existing(doc_id, "delete")
        await self._stage(table, doc_id, None)

    # -- commit --------------------------------------------------------------------------------
    def to_commit(self, ts: int) -> tuple[CommitRecord, list[tuple[int, bytes]], tuple[list[Any], list[Any]]]:
        """The storage record, the written index keys (old and new, every index), and what the
        commit overwrites (engine.history): previous document values and changed stored keys."""
        rec = CommitRecord(ts)
        keys: list[tuple[int, bytes]] = list(self.extra_keys)
        docs_before: list[tuple[str, int, bytes | None]] = []
        entry_changes: list[tuple[int, bytes | None, bytes | None, str]] = []
        for doc_id, w in self.writes.items():
            if w.old is None and w.new is None:
                continue
            docs_before.append((doc_id, w.table.number, w.old_raw))
            changed = w.changed
            old, new = w.old, w.new
            # Every stored key of a version ends with its (_creationTime, _id): encoded once here.
            old_tail = system_tail(old) if old is not None else b""
            if new is None:
                new_tail = b""
            elif old is not None and changed is not None:
                new_tail = old_tail  # a patch: both system fields are the old version's
            else:
                new_tail = system_tail(new)
            for ix in w.table.indexes.values():
                old_key = ix.key_with_tail(old, old_tail) if old is not None else None
                if changed is not None and changed.isdisjoint(ix.roots):
                    new_key = old_key  # a patch that touched none of this index's fields
                else:
                    new_key = ix.key_with_tail(new, new_tail) if new is not None else None
                if old_key is not None:
                    keys.append((ix.id, old_key))
                if new_key is not None and new_key != old_key:
                    keys.append((ix.id, new_key))
                if ix.stored and old_key != new_key:
                    entry_changes.append((ix.id, old_key, new_key, doc_id))
                    if old_key is not None:
                        rec.entry_deletes.append((ix.id, old_key))
                    if new_key is not None:
                        rec.entry_puts.append((ix.id, new_key, doc_id))
            if w.table.search:  # search and vector indexes (engine.search.maintenance)
                index_changes(w.table, doc_id, w.old, w.new, changed, keys, rec.search)
            if w.new is None:
                rec.doc_deletes.append(doc_id)
            else:
                rec.doc_puts.append((doc_id, w.table.number, encode_json(w.new)))
        return rec, keys, (docs_before, entry_changes)


class RangeScan:
    """Walks [lo, hi) of one index in order, page by page, merging the transaction's own writes, and
    records the interval actually covered in the read set when `finish()` is called.

    `async for key, doc in scan` yields rows one by one; `scan.pages(first)` yields whole pages
    (lists of rows), whose consumer sets `last_key` to the last row it used if it stops early."""

    __slots__ = ("txn", "table", "index", "lo", "hi", "desc", "last_key", "_done", "_source_done", "_at",
                 "_pending", "_skip", "_p", "_buffer")

    def __init__(self, txn: Transaction, table: TableInfo, index: IndexInfo, lo: bytes, hi: bytes,
                 desc: bool) -> None:
        self.txn = txn
        self.table = table
        self.index = index
        self.lo = lo
        self.hi = hi
        self.desc = desc
        self.last_key: bytes | None = None
        self._done = False  # the consumer went through the whole range
        self._source_done = False  # every page has been read
        self._at: tuple[bytes, bytes] | None = None  # what is left of the range to read
        self._pending: list[tuple[bytes, dict[str, Any] | None]] = []  # our own writes in range, in order
        self._skip: set[str] = set()
        self._p = 0
        self._buffer: list[tuple[bytes, dict[str, Any]]] = []
        txn.open_scans.append(self)

    async def __aiter__(self) -> AsyncIterator[tuple[bytes, dict[str, Any]]]:
        async for page in self.pages():
            for row in page:
                self.last_key = row[0]
                yield row

    async def pages(self, first: int = FIRST_PAGE) -> AsyncIterator[list[tuple[bytes, dict[str, Any]]]]:
        """The rest of the range, page by page (page sizes double from `first` up to MAX_PAGE)."""
        limit = max(1, min(first, MAX_PAGE))
        while (page := await self.next_page(limit)) is not None:
            yield page
            limit = min(limit * 2, MAX_PAGE)

    async def next_page(self, limit: int) -> list[tuple[bytes, dict[str, Any]]] | None:
        """The next non-empty page of at most about `limit` rows; None once the range is done
        (the consumer saw all of it)."""
        while not self._source_done:
            page = await self._next_page(max(1, limit))
            if page:
                self.last_key = page[-1][0]
                return page
        self._done = True
        return None

    async def fetch(self, n: int) -> list[tuple[bytes, dict[str, Any]]]:
        """The next `n` rows (fewer only where the range ends)."""
        buffer = self._buffer
        while len(buffer) < n and not self._source_done:
            buffer.extend(await self._next_page(n - len(buffer)))
        out, self._buffer = buffer[:n], buffer[n:]
        if self._source_done and not self._buffer and len(out) < n:
            self._done = True
        if out:
            self.last_key = out[-1][0]
        return out

    def _plan(self) -> None:
        txn, ix, lo, hi = self.txn, self.index, self.lo, self.hi
        if not ix.stored:
            raise EngineError("InvalidIndexRange", 'The "by_id" index only supports db.get(id).')
        if not txn.writes:  # nothing of our own to merge: the common case
            self._at = (lo, hi)
            return
        mine = [d for d, w in txn.writes.items() if w.table is self.table]
        self._pending = sorted(
            ((key, w.new) for d in mine if (w := txn.writes[d]).new is not None
             and lo <= (key := ix.key(w.new)) < hi),
            key=lambda kv: kv[0], reverse=self.desc)
        self._skip = set(mine)
        self._at = (lo, hi)

    async def _next_page(self, limit: int) -> list[tuple[bytes, dict[str, Any]]]:
        """One page of the index merged with our own writes; sets _done once the range ended."""
        if self._at is None:
            self._plan()
        lo, hi = self._at  # type: ignore[misc]
        txn, desc, pending, skip = self.txn, self.desc, self._pending, self._skip
        snapshot = txn.snapshot
        if txn._inline:
            rows, resume = snapshot.scan_page_now(self.index.id, lo, hi, desc, limit)  # type: ignore[attr-defined]
        else:
            rows, resume = await snapshot.scan_page(self.index.id, lo, hi, desc, limit)
        rows_cache, number, count = txn._rows, self.table.number, txn._count_doc
        page: list[tuple[bytes, dict[str, Any]]] = []
        p = self._p
        if not pending and not skip:  # no writes of our own to merge: the common case
            size = 0
            for key, doc_id, value in rows:
                size += len(value)
                rows_cache[doc_id] = (number, value)
                page.append((key, decode_stored(value)))
            if rows:  # the page's documents, counted at once (a page is at most MAX_PAGE rows)
                txn.docs_read += len(rows) - 1
                count(size)
            if resume is None:
                self._source_done = True
            elif desc:
                self._at = (lo, resume)
            else:
                self._at = (after(resume), hi)
            return page
        for key, doc_id, value in rows:
            count(len(value))
            rows_cache[doc_id] = (number, value)
            while p < len(pending) and ((pending[p][0] > key) if desc else (pending[p][0] < key)):
                page.append((pending[p][0], _copy(pending[p][1])))
                p += 1
            if doc_id in skip:
                continue
            page.append((key, decode_stored(value)))
        if resume is not None:
            if desc:
                hi = resume
            else:
                lo = after(resume)
        if resume is None or lo >= hi:  # the range is done: whatever of our own is left comes last
            while p < len(pending):
                page.append((pending[p][0], _copy(pending[p][1])))
                p += 1
            self._source_done = True
        self._p = p
        self._at = (lo, hi)
        return page

    def finish(self, exhausted: bool | None = None) -> None:
        """Record what was read: the whole range if the walk ran to its end, else up to last_key."""
        if self in self.txn.open_scans:
            self.txn.open_scans.remove(self)
        else:
            return
        exhausted = self._done if exhausted is None else exhausted
        if exhausted:
            self.txn.reads.add(self.index.id, self.lo, self.hi)
        elif self.last_key is None:
            # Stopped before reading anything (e.g. take(0)): nothing was observed.
            return
        elif self.desc:
            self.txn.reads.add(self.index.id, self.last_key, self.hi)
        else:
            self.txn.reads.add(self.index.id, self.lo, successor(self.last_key))


def _copy(value: Any) -> Any:
    """A deep copy of a document, so application code cannot mutate pending writes in place."""
    t = type(value)
    if t is dict:
        return {k: v if type(v) in _ATOMIC else _copy(v) for k, v in value.items()}
    if t is list:
        return [v if type(v) in _ATOMIC else _copy(v) for v in value]
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


_ATOMIC = frozenset((str, float, int, bool, type(None), bytes))


def _check_shape(value: Any, table: str, limits: Limits, depth: int = 0) -> None:
    if depth > limits.document_depth:
        raise EngineError("DocumentTooDeep",
                          f'Document in table "{table}" is nested more than {limits.document_depth} levels deep.')
    if isinstance(value, dict):
        if len(value) > limits.document_fields:
            raise EngineError("TooManyFields",
                              f'An object in table "{table}" has {len(value)} fields; the limit is {limits.document_fields}.')
        for v in value.values():
            if isinstance(v, (dict, list)):
                _check_shape(v, table, limits, depth + 1)
    elif isinstance(value, list):
        if len(value) > limits.array_length:
            raise EngineError("ArrayTooLong",
                              f'An array in table "{table}" has {len(value)} elements; the limit is {limits.array_length}.')
        for v in value:
            if isinstance(v, (dict, list)):
                _check_shape(v, table, limits, depth + 1)
