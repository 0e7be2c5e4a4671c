"""The SQLite search store: registrations, FTS5 text indexes, vector tables and their graphs.

    store = SqliteSearchStore(persistence)        # made by SqlitePersistence itself
    reader = store.text_reader(snapshot, info)    # FTS5 reads in the snapshot's read transaction

Registrations live in `search_indexes_` (id, table, name, spec JSON, state, backfill cursor). The
statements here are SQLite-specific (FTS5 and fts5vocab have no portable form), which is why they
sit beside the backend rather than in engine.sql; the PostgreSQL store has its own.

Writes happen in `SqlitePersistence._write_batch`, inside the group commit's transaction, through
`write(conn, ops)`: text ops go to the FTS5 tables, vector ops to the vector tables, state ops to
the registration rows. `committed(batch)` runs once the transaction is durable and before the
persistence's write returns: graphs take the vector changes, indexes whose backfill finished
become ready. A failed group commit calls `rolled_back()` instead.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from .backend import SearchOp, SearchStore, StateOp, TextDoc, TextReader, VectorReader, VectorRow
from .spec import IndexSpec, StoredIndex, VectorIndexInfo
from .sqlite_fts import TEXT_DDL, SqliteTextReader, create_text_index, drop_text_index, write_text_ops

if TYPE_CHECKING:
    from ..storage import CommitRecord, SqlitePersistence
    from .sqlite_vectors import SqliteVectorIndexes

__all__ = ["SqliteSearchStore"]

DDL = [
    "CREATE TABLE IF NOT EXISTS search_indexes_ (id INTEGER PRIMARY KEY, table_name TEXT NOT NULL,"
    " name TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL, cursor BLOB, UNIQUE (table_name, name))",
    *TEXT_DDL,
]


def _connection(snapshot: Any) -> sqlite3.Connection:
    """The SQLite connection of a durable snapshot (its read transaction)."""
    conn = getattr(snapshot, "_conn", None)
    if not isinstance(conn, sqlite3.Connection):
        raise TypeError(f"not a SQLite snapshot: {type(snapshot).__name__}")
    return conn


class SqliteSearchStore(SearchStore):
    def __init__(self, persistence: SqlitePersistence) -> None:
        self._persistence = persistence
        self._vectors: SqliteVectorIndexes | None = None  # made (NumPy, usearch loaded) on first use
        self._kinds: dict[int, str] = {}  # registered index id -> "search" | "vector"

    @property
    def vectors(self) -> SqliteVectorIndexes:
        if self._vectors is None:
            from .sqlite_vectors import SqliteVectorIndexes

            self._vectors = SqliteVectorIndexes(self._persistence.path)
        return self._vectors

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        def ddl(conn: sqlite3.Connection) -> None:
            for statement in DDL:
                conn.execute(statement)

        await self._persistence.run_on_writer(ddl)

    def close(self) -> None:
        if self._vectors is not None:
            self._vectors.close()

    def save(self, stamp: int) -> None:
        """A clean shutdown at commit timestamp `stamp`: keep the vector graphs for the next start."""
        if self._vectors is not None:
            self._vectors.save_all(stamp)

    # -- registrations -------------------------------------------------------------------------
    async def load(self) -> list[StoredIndex]:
        def read(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
            return conn.execute("SELECT id, table_name, name, spec, state, cursor FROM search_indexes_").fetchall()

        rows = await self._persistence.run_on_writer(read, transaction=False)
        return [StoredIndex(*row) for row in rows]

    def attach(self, info: IndexSpec, stamp: int) -> None:
        """A registered index is in use (at start: its vector graph is loaded or rebuilt)."""
        self._kinds[info.id] = info.kind
        if isinstance(info, VectorIndexInfo):
            self.vectors.known(info.id, info.dimensions, len(info.filter_fields))
            self.vectors.start_build(info.id, self._persistence.path, stamp)

    async def register(self, info: IndexSpec) -> None:
        def create(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM search_indexes_ WHERE table_name = ? AND name = ?", (info.table, info.name))
            conn.execute("INSERT INTO search_indexes_ (id, table_name, name, spec, state, cursor) VALUES"
                         " (?, ?, ?, ?, ?, NULL)", (info.id, info.table, info.name, info.to_json(), info.state))
            if isinstance(info, VectorIndexInfo):
                from .sqlite_vectors import create_vector_index

                create_vector_index(conn, info.id, len(info.filter_fields))
            else:
                create_text_index(conn, info.id)

        await self._persistence.run_on_writer(create)
        self._kinds[info.id] = info.kind
        if isinstance(info, VectorIndexInfo):
            self.vectors.known(info.id, info.dimensions, len(info.filter_fields))

    async def drop(self, index_id: int) -> None:
        kind = self._kinds.pop(index_id, None)

        def remove(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM search_indexes_ WHERE id = ?", (index_id,))
            drop_text_index(conn, index_id)
            conn.execute(f"DROP TABLE IF EXISTS vectors_{int(index_id)}")

        await self._persistence.run_on_writer(remove)
        if kind == "vector":
            self.vectors.forget(index_id)

    def reset(self, conn: sqlite3.Connection) -> None:
        """Inside a snapshot restore's transaction (offline: no deployment has the store open):
        every index goes, and the next start registers and backfills the schema's indexes anew."""
        for (index_id,) in conn.execute("SELECT id FROM search_indexes_").fetchall():
            drop_text_index(conn, index_id)
            conn.execute(f"DROP TABLE IF EXISTS vectors_{int(index_id)}")
        conn.execute("DELETE FROM search_indexes_")

    # -- commits -------------------------------------------------------------------------------
    def write(self, handle: Any, ops: list[SearchOp | StateOp]) -> None:
        conn: sqlite3.Connection = handle
        text: list[SearchOp] = []
        vectors: list[SearchOp] = []
        for op in ops:
            if isinstance(op, StateOp):
                self._flush(conn, text, vectors)
                conn.execute("UPDATE search_indexes_ SET state = ?, cursor = ? WHERE id = ?",
                             (op.state, op.cursor, op.index_id))
                continue
            kind = self._kinds.get(op.index_id)
            if kind is None:
                continue  # an index dropped meanwhile
            if op.entry is None:
                (vectors if kind == "vector" else text).append(op)
            elif isinstance(op.entry, TextDoc):
                text.append(op)
            elif isinstance(op.entry, VectorRow):
                vectors.append(op)
        self._flush(conn, text, vectors)

    @staticmethod
    def write_rows(ops: list[SearchOp | StateOp]) -> int:
        """About how many SQLite rows `write` touches for these ops, to weigh a group commit (small
        ones are written on the event loop, engine.storage.sqlite.INLINE_WRITE_ROWS): an FTS5 entry
        updates one posting per token plus its bookkeeping rows, a vector entry its row."""
        rows = 0
        for op in ops:
            entry = getattr(op, "entry", None)
            rows += 2 + (len(entry.tokens) + len(entry.filter_tokens) if isinstance(entry, TextDoc) else 0)
        return rows

    def _flush(self, conn: sqlite3.Connection, text: list[SearchOp], vectors: list[SearchOp]) -> None:
        if text:
            write_text_ops(conn, text)
            text.clear()
        if vectors:
            self.vectors.write(conn, vectors)
            vectors.clear()

    def committed(self, batch: list[CommitRecord]) -> None:
        if self._vectors is not None:
            self._vectors.committed()
        for rec in batch:
            for op in rec.search:
                if isinstance(op, StateOp):
                    op.info.state = op.state

    def rolled_back(self) -> None:
        if self._vectors is not None:
            self._vectors.rolled_back()

    # -- reads ---------------------------------------------------------------------------------
    def text_reader(self, snapshot: Any, info: IndexSpec) -> TextReader:
        return SqliteTextReader(_connection(snapshot), info.id)

    def vector_reader(self, snapshot: Any, info: IndexSpec) -> VectorReader:
        from .sqlite_vectors import SqliteVectorReader

        return SqliteVectorReader(_connection(snapshot), info.id, self.vectors)

    async def documents_in_table(self, table_number: int) -> int:
        snap = self._persistence.snapshot_now(private=True)
        try:
            return _connection(snap).execute("SELECT COUNT(*) FROM documents WHERE table_number = ?",
                                             (table_number,)).fetchone()[0]
        finally:
            snap.close()
