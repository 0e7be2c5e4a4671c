"""The persistence contract: what the engine needs from a store, whatever the store is.

    store = open_persistence("data/convex.sqlite3")            # or "postgresql://user:pw@host/db"
    await store.open()
    snapshot = await store.snapshot()                          # a consistent view at snapshot.ts
    row = await snapshot.get(doc_id)                           # (table number, stored JSON) or None
    rows, resume = await snapshot.scan_page(index_id, lo, hi, desc=False, limit=64)
    snapshot.close()
    await store.write([CommitRecord(ts, doc_puts=[...], ...)]) # one group commit, atomically

Reads are coroutines because a store may be across a network (PostgreSQL); the embedded SQLite
store answers them without ever suspending. Index reads come in pages: `scan_page` returns up to
`limit` rows of [lo, hi) in key order (descending if `desc`) and `resume`, the key to continue
after (None when the range is exhausted) — one round trip per page, no cursor held open between
them, so a caller may stop after any page. `Snapshot.scan` walks a whole range page by page.

Layout every implementation keeps (engine.storage.sql has the statements): `documents` holds the
latest version of each document as Convex-encoded JSON; `index_entries` maps (index id,
order-preserving key bytes) -> document id, one row per document per stored index; `meta` keeps
the commit-timestamp high-water mark; `mutation_results` the stored result of each idempotent
mutation. Snapshots see exactly the state after the commit with their `ts`.

What a store must guarantee: a `write` is atomic and durable when it returns; a snapshot never
changes; the ts of a snapshot opened after a write returned is at least that write's last ts.
The contract tests (tests/test_storage_contract.py) run against every implementation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import Any
from dataclasses import dataclass, field

from ..blobs import BlobStore
from ..errors import EngineError
from ..search.backend import UNSUPPORTED, SearchStore

__all__ = ["CommitRecord", "Persistence", "Snapshot", "Row", "FIRST_PAGE", "MAX_PAGE", "after", "resume_key", "scan_now"]

Row = tuple[bytes, str, bytes]  # (index key, document id, stored JSON)
FIRST_PAGE = 64
MAX_PAGE = 1024


@dataclass(slots=True)
class CommitRecord:
    """Everything one committed transaction changes, in storage terms."""

    ts: int
    doc_puts: list[tuple[str, int, bytes]] = field(default_factory=list)  # (id, table number, json)
    doc_deletes: list[str] = field(default_factory=list)
    entry_deletes: list[tuple[int, bytes]] = field(default_factory=list)  # (index id, key)
    entry_puts: list[tuple[int, bytes, str]] = field(default_factory=list)  # (index id, key, doc id)
    mutation_results: list[tuple[str, int, bytes]] = field(default_factory=list)  # (session, request, json)
    # Search and vector index entries (engine.search.backend.SearchOp / StateOp), written in the same
    # transaction by the store's search backend.
    search: list[Any] = field(default_factory=list)


def after(key: bytes) -> bytes:
    """The smallest key greater than `key`."""
    return key + b"\x00"


class Snapshot(ABC):
    """A consistent read view at commit timestamp `ts`. Close it when done."""

    ts: int
    # True when `get_now` / `scan_page_now` (the same reads without coroutines) exist: callers on
    # a hot path use them and skip a coroutine per read.
    inline_reads = False

    @abstractmethod
    async def get(self, doc_id: str) -> tuple[int, bytes] | None: ...

    @abstractmethod
    async def scan_page(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                        limit: int) -> tuple[list[Row], bytes | None]:
        """Up to `limit` rows of [lo, hi) in order, and the key to resume after (None: done)."""

    async def scan(self, index_id: int, lo: bytes, hi: bytes, desc: bool = False, *,
                   first_page: int = FIRST_PAGE) -> AsyncIterator[Row]:
        """Every row of [lo, hi), page by page (pages double up to MAX_PAGE)."""
        limit = max(1, first_page)
        while True:
            rows, resume = await self.scan_page(index_id, lo, hi, desc, limit)
            for row in rows:
                yield row
            if resume is None:
                return
            if desc:
                hi = resume
            else:
                lo = after(resume)
            if lo >= hi:
                return
            limit = min(limit * 2, MAX_PAGE)

    @abstractmethod
    async def mutation_result(self, session_id: str, request_id: int) -> tuple[int, bytes] | None: ...

    @abstractmethod
    def close(self) -> None: ...


def scan_now(snapshot: Snapshot, index_id: int, lo: bytes, hi: bytes, desc: bool = False) -> Iterator[Row]:
    """`Snapshot.scan` without coroutines, for a store whose reads never suspend (its snapshots
    have `scan_page_now`): an export writing a ZIP in a worker thread reads this way."""
    page_now = snapshot.scan_page_now  # type: ignore[attr-defined]
    limit = FIRST_PAGE
    while lo < hi:
        rows, resume = page_now(index_id, lo, hi, desc, limit)
        yield from rows
        if resume is None:
            return
        if desc:
            hi = resume
        else:
            lo = after(resume)
        limit = min(limit * 2, MAX_PAGE)


def resume_key(rows: list[Row], limit: int) -> bytes | None:
    """For stores that answer with LIMIT: a full page may have more after its last key."""
    return rows[-1][0] if len(rows) >= limit else None


class Persistence(ABC):
    """What the engine needs from a store: one writer (per process), snapshot readers."""

    # A store whose reads never suspend can serve mutations the latest sequenced state inside one
    # event-loop step (engine.tail); a networked one serves them PostgreSQL snapshots instead.
    inline_reads: bool = False
    # Several engine processes may serve this store at once (engine.cluster commits on it).
    shared: bool = False
    # A shared store calls this when a node changed the environment variables (engine.env).
    on_env_change: Callable[[], None] | None = None
    # The backend's search storage (engine.search.backend.SearchStore): full-text and vector indexes
    # written inside the same transactions as the documents. A store without one keeps this default:
    # the deployment serves, and queries on search or vector indexes fail with
    # SearchIndexesUnavailable.
    search: SearchStore = UNSUPPORTED

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def snapshot(self, *, private: bool = False) -> Snapshot:
        """The latest durable state. `private`: not shared with other readers (a worker thread
        may use it)."""

    @abstractmethod
    async def write(self, batch: list[CommitRecord]) -> None: ...

    @abstractmethod
    async def load_catalog(self) -> tuple[int, dict[str, int], dict[tuple[str, str], tuple[int, list[str]]]]:
        """(max ts, {table: number}, {(table, index): (index id, fields)})."""

    @abstractmethod
    async def add_table(self, name: str, number: int) -> None: ...

    async def renumber_tables(self, numbers: dict[str, int]) -> None:
        """Give empty tables new numbers (a live snapshot import keeps the snapshot's ids)."""
        raise EngineError("Unsupported", "This store cannot renumber tables.")

    @abstractmethod
    async def add_index(self, index_id: int, table: str, name: str, fields: list[str]) -> None: ...

    @abstractmethod
    async def drop_index(self, index_id: int) -> None: ...

    @abstractmethod
    def table_documents(self, table_number: int) -> AsyncIterator[tuple[str, bytes]]:
        """Every document of a table, in id order (index builds, exports)."""

    @abstractmethod
    async def put_entries(self, entries: list[tuple[int, bytes, str]]) -> None: ...

    @abstractmethod
    async def table_is_empty(self, table_number: int) -> bool: ...

    @abstractmethod
    async def index_is_empty(self, index_id: int) -> bool: ...

    async def restore(self, ts: int, tables: dict[str, int], indexes: list[tuple[int, str, str, list[str]]],
                      docs: list[tuple[str, int, bytes]], entries: list[tuple[int, bytes, str]]) -> None:
        """Replace the whole store in one transaction (snapshot import)."""
        raise NotImplementedError(f"{type(self).__name__} cannot restore a snapshot")

    async def expire_mutation_results(self, before_ts: int, limit: int) -> int:
        """Delete up to `limit` of the oldest stored mutation results committed before `before_ts`
        (engine.session_cleanup); how many it deleted. A store that keeps none deletes none."""
        return 0

    def startup_lock(self) -> AbstractAsyncContextManager[None]:
        """Held while a node loads and updates the catalog at start (a shared store: nodes starting
        together take turns). Nothing to hold for a store one process owns."""
        return nullcontext()

    async def live_peers(self) -> int:
        """How many other engine processes serve this store right now (a shared store)."""
        return 0

    async def heartbeat(self, runs: list[str], timeout_s: float) -> set[str] | None:
        """A shared store: record this node alive with the scheduled and cron runs it holds, and
        return the runs held by the nodes heard from within `timeout_s` (engine.cluster's
        NodeLiveness). None: one process owns the store, there are no other nodes."""
        return None

    async def leave(self) -> None:
        """A shared store: this node stops (its heartbeat and the runs it claimed go)."""

    async def env_vars(self) -> dict[str, str]:
        """A shared store: the deployment's environment variables (engine.env), for every node."""
        raise NotImplementedError(f"{type(self).__name__} keeps no environment variables")

    async def update_env(self, changes: list[tuple[str, str | None]]) -> None:
        """A shared store: set (value) or remove (None) environment variables, in one transaction."""
        raise NotImplementedError(f"{type(self).__name__} keeps no environment variables")

    def blob_store(self) -> BlobStore | None:
        """Where file storage keeps its bytes when the store has a place for them (None: a folder
        beside the database)."""
        return None

    def describe_holder(self, **info: str) -> None:
        """Record who serves this store (e.g. `url=`), where the store keeps such a thing."""
