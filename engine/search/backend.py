"""What a storage backend provides for search and vector indexes: the one seam per backend.

The engine computes everything Convex defines (tokens, filter values, which documents changed,
BM25 ranking, prefix expansion, vector scores) in backend-neutral code (engine.search.text,
engine.search.vector, engine.search.maintenance). A backend only stores and retrieves:

- `SearchStore` — registrations (which indexes exist, their state and backfill cursor), the
  per-commit maintenance (`write`, called by the persistence inside the same database transaction
  as the commit's documents, so an index is never ahead of or behind the data), what to do once a
  group commit is durable (`committed`), and readers bound to a snapshot.
- `TextReader` — statistics, term frequencies and candidate documents of one full-text index at
  one snapshot.
- `VectorReader` — nearest neighbours of one vector index at one snapshot.

Every read is a coroutine, as in the storage contract (engine.storage.base): a networked store
awaits its database; SQLite's readers answer without suspending. `write` is the one synchronous
call: the persistence that owns the store calls it inside its own write transaction, with its own
connection, so its shape is between the two of them (a store whose driver is async adapts it).

A store without search (`UnsupportedSearchStore`, the default of every `Persistence`) keeps the
deployment serving: the schema's search and vector indexes are not registered, nothing is written
for them, and each query on one fails with the engine error `SearchIndexesUnavailable`, which says
why. A store can also refuse single indexes (`cannot_build`: PostgreSQL without pgvector has no
vector indexes but full-text ones): those are left out the same way, the others work.

Commit records carry `SearchOp`s (`CommitRecord.search`): each says "this document's entry in this
index is now X (or gone)". Writing an op is idempotent (an upsert or delete by document id), which
is what lets a background backfill and live commits both write entries of the same index.

Implementations: `engine.search.sqlite_store` (FTS5 + a vector table with a usearch HNSW index)
for SQLite; `engine.search.pg_store` (tsvector + GIN, a term table, pgvector's HNSW) for
PostgreSQL, shared by several engine nodes (`backfill_lease`, `ingested`).
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from ..errors import EngineError
from .spec import IndexSpec, StoredIndex

__all__ = ["TextDoc", "VectorRow", "SearchOp", "StateOp", "SearchStore", "TextReader", "VectorReader",
           "UnsupportedSearchStore", "UNSUPPORTED", "unavailable_error", "check_available"]


@dataclass(slots=True, frozen=True)
class TextDoc:
    """A document's entry in a full-text index: its word tokens (in order, repeats kept), one token
    per filter field (engine.search.tokens.filter_token) and its creation time."""

    tokens: tuple[str, ...]
    filter_tokens: tuple[str, ...]
    creation_time: float


@dataclass(slots=True, frozen=True)
class VectorRow:
    """A document's entry in a vector index: float32 components (little-endian bytes) and the
    equality key of each filter field's value, in the index's filter-field order."""

    vector: bytes
    filters: tuple[bytes, ...]


@dataclass(slots=True, frozen=True)
class SearchOp:
    """Set (or with `entry` None, remove) one document's entry in one index."""

    index_id: int
    doc_id: str
    entry: TextDoc | VectorRow | None


@dataclass(slots=True)
class StateOp:
    """A backfill step: persist the index's state and cursor in the same transaction as the entries
    it wrote; once durable, `info.state` takes `state`."""

    index_id: int
    state: str
    cursor: bytes | None
    info: Any  # the IndexSpec to update in memory


class TextReader(ABC):
    """One full-text index at one snapshot."""

    @abstractmethod
    async def stats(self) -> tuple[int, int]:
        """(documents in the index, word tokens over all of them)."""

    @abstractmethod
    async def doc_freqs(self, terms: Iterable[str]) -> dict[str, int]:
        """Documents containing each term (filter tokens included); absent terms map to 0."""

    @abstractmethod
    async def prefix_terms(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        """Up to `limit` word terms starting with `prefix` (itself included), ascending, with their
        document frequencies (all > 0)."""

    @abstractmethod
    async def matches(self, terms: list[str], filter_tokens: list[str], *,
                      filters_after: bool = False) -> Iterable[tuple[str, float, list[str]]]:
        """(doc id, creation time, word tokens) of every document holding any of `terms` and all of
        `filter_tokens`, fetched at once (the scoring loop walks them without awaiting).
        `filters_after`: the terms are rarer than the filter values, so look the terms up and
        check the filters on what they find (a hint; the result is the same)."""


class VectorReader(ABC):
    """One vector index at one snapshot."""

    @abstractmethod
    async def count(self) -> int: ...

    @abstractmethod
    async def search(self, vector: Any, limit: int, filters: dict[int, list[bytes]]) -> list[tuple[str, float]]:
        """The `limit` entries most similar to `vector` (float32 numpy array) by cosine similarity,
        best first, among those where some filter field `ordinal` holds one of `filters[ordinal]`
        (no filters: all entries). Returns (doc id, score)."""


class SearchStore(ABC):
    """A backend's search storage (see the module docstring)."""

    @abstractmethod
    async def load(self) -> list[StoredIndex]:
        """Every registered index."""

    @abstractmethod
    async def register(self, info: IndexSpec) -> None:
        """Create an index's storage and record it as backfilling, with no entries."""

    @abstractmethod
    async def drop(self, index_id: int) -> None:
        """Remove an index and all its entries."""

    @abstractmethod
    def write(self, handle: Any, ops: list[SearchOp | StateOp]) -> None:
        """Apply a commit's ops inside the persistence's write transaction (`handle` is the
        backend's connection or transaction object; a store whose driver is async receives a list
        and appends the statements the persistence then executes in that transaction, in order)."""

    @abstractmethod
    def committed(self, batch: list[Any]) -> None:
        """A group commit (its `CommitRecord`s) is durable: in-memory structures and index states
        follow, before the persistence's write returns (so before any later snapshot)."""

    @abstractmethod
    def rolled_back(self) -> None:
        """The group commit whose ops were written failed and was rolled back."""

    @abstractmethod
    def text_reader(self, snapshot: Any, info: IndexSpec) -> TextReader: ...

    @abstractmethod
    def vector_reader(self, snapshot: Any, info: IndexSpec) -> VectorReader: ...

    @abstractmethod
    async def documents_in_table(self, table_number: int) -> int:
        """How many documents a table holds (backfill progress)."""

    # A store that cannot hold search indexes says why here (see UnsupportedSearchStore).
    unavailable: str | None = None
    # Declared indexes this store cannot build (`cannot_build`), by "table.index": why. Set by
    # engine.search.manager; queries on them fail with SearchIndexesUnavailable saying why.
    unbuilt: Mapping[str, str] = MappingProxyType({})

    def cannot_build(self, info: IndexSpec) -> str | None:
        """Why this store cannot build this index (e.g. a missing database extension), or None."""
        return None

    def ingested(self, keys: Iterable[tuple[int, bytes]]) -> None:
        """A shared store: the written keys of a commit another process made were read (before
        subscriptions re-run on them)."""

    @contextlib.asynccontextmanager
    async def backfill_lease(self, info: IndexSpec, cursor: bytes | None) -> AsyncIterator[tuple[bool, bytes | None]]:
        """Held while this process backfills `info`: yields (go, cursor to resume from); go is
        False when there is nothing to do (a shared store: another process finished it). A store
        one process owns has nothing to coordinate."""
        yield True, cursor

    def attach(self, info: IndexSpec, stamp: int) -> None:
        """A registered index is in use again after a start (`stamp`: the durable timestamp)."""

    async def open(self) -> None:
        """Called once the persistence is open."""

    def close(self) -> None:
        """Called before the persistence closes."""

    def save(self, stamp: int) -> None:
        """A clean shutdown at commit timestamp `stamp` (e.g. keep in-memory graphs for the next start)."""


def unavailable_error(store: SearchStore, printable: str) -> EngineError:
    return EngineError("SearchIndexesUnavailable",
                       f"Index {printable} cannot be queried: {store.unbuilt.get(printable) or store.unavailable}")


def check_available(store: SearchStore, printable: str) -> None:
    """SearchIndexesUnavailable when the store has no search at all, or cannot build this index."""
    if store.unavailable is not None or printable in store.unbuilt:
        raise unavailable_error(store, printable)


class UnsupportedSearchStore(SearchStore):
    """The search storage of a backend that has none yet: no index is registered or written, and a
    query on a declared index fails with `SearchIndexesUnavailable` (engine.search.manager)."""

    def __init__(self, backend: str = "this storage backend") -> None:
        self.unavailable = (f"search and vector indexes are not available on {backend} yet; "
                            "they work on the embedded SQLite store.")

    async def load(self) -> list[StoredIndex]:
        return []

    async def register(self, info: IndexSpec) -> None:
        raise unavailable_error(self, info.printable)

    async def drop(self, index_id: int) -> None:
        return None

    def write(self, handle: Any, ops: list[SearchOp | StateOp]) -> None:
        if ops:  # pragma: no cover - nothing registers an index here, so no commit carries ops
            raise unavailable_error(self, f"id {ops[0].index_id}")

    def committed(self, batch: list[Any]) -> None:
        return None

    def rolled_back(self) -> None:
        return None

    def text_reader(self, snapshot: Any, info: IndexSpec) -> TextReader:
        raise unavailable_error(self, info.printable)

    def vector_reader(self, snapshot: Any, info: IndexSpec) -> VectorReader:
        raise unavailable_error(self, info.printable)

    async def documents_in_table(self, table_number: int) -> int:
        return 0


# What a Persistence without a search implementation offers (engine.storage.base.Persistence.search).
UNSUPPORTED = UnsupportedSearchStore()
