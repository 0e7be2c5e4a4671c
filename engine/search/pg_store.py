"""The PostgreSQL search store: full-text indexes as `tsvector` + GIN, vector indexes with pgvector.

    store = PostgresSearchStore(persistence)      # made by PostgresPersistence itself
    reader = store.text_reader(snapshot, info)    # reads in the snapshot's REPEATABLE READ transaction

Everything Convex defines (tokens, filter values, BM25, prefix expansion, cosine scores) is computed
by the backend-neutral code (engine.search.text / vector / maintenance); this module only stores
and retrieves, exactly as engine.search.sqlite_store does for SQLite, so both stores answer alike.

Layout (per index id N; every name is the engine's own):
- `search_indexes_` — registrations: id, table, name, spec JSON, state, backfill cursor.
- `search_text_N (doc_id, tokens tsvector, overflow, body, ntok, ctime)` with a GIN index on `tokens`:
  `tokens` holds the document's distinct word tokens plus one token per filter field
  (engine.search.tokens.filter_token), made with `array_to_tsvector` from tokens the engine already
  produced with Convex's tokenizer (PostgreSQL's parser and dictionaries never see the text);
  `body` keeps the word tokens in order (their counts are BM25's term frequencies), `ntok` their
  number (BM25's length). A tsvector holds at most 1 MiB of lexemes: the words of a larger document
  that do not fit go to `overflow` (text[], GIN-indexed too), searched alongside.
- `search_terms_N (term, df)` — the term dictionary a tsvector does not have: how many documents
  hold each term (filter tokens included), for BM25's idf and for listing completions of a prefix
  in order (a B-tree in the "C" collation: code-point order, as SQLite's fts5vocab). Kept by
  deltas in the same statement that changes the entries.
- `search_stats (index_id, docs, tokens)` — BM25's N and average length.
- `search_vec_N (doc_id, embedding vector(d), f0, f1, ...)` with an HNSW index
  (`vector_cosine_ops`, m 16, ef_construction 128) and a B-tree per filter column (the equality key
  of each filter field's value).

Writes: `write(buffer, ops)` renders a group commit's ops as statements (one per index: a set of
data-modifying CTEs over `unnest` arrays) into `buffer`; the persistence executes them on its
commit connection, inside the transaction that writes the documents (engine.storage.postgres
`_apply`), so an index is never ahead of or behind the data, on any node. Several ops of one group
on one document collapse to the last (each op says "the entry is now X").

Several nodes: registrations live in the database and each node attaches what it finds (a node
starting registers under the start-up lock, engine.search.manager). A backfill runs on one node at a
time: `backfill_lease` holds a session advisory lock per index; the other nodes wait, and take over
from the stored cursor if that node stops. The state only moves forward ("ready" is never
overwritten). A node learns that another node's backfill finished from the commit that finished it
(its READY key, `ingested`), before its subscriptions re-run.

Vector indexes need the `vector` extension (pgvector). At open the store runs `CREATE EXTENSION IF
NOT EXISTS vector`; when that fails (not installed on the server, or no right to create it) full-text
indexes still work and vector indexes are not built: `cannot_build` says why, and queries on them
fail with SearchIndexesUnavailable naming the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .backend import SearchOp, SearchStore, StateOp, TextDoc, TextReader, VectorReader, VectorRow
from .spec import READY, IndexSpec, StoredIndex, VectorIndexInfo
from .text import READY_KEY

if TYPE_CHECKING:
    from ..storage import CommitRecord
    from ..storage.postgres import PostgresPersistence

__all__ = ["PostgresSearchStore", "PgTextReader", "PgVectorReader", "vectors_from_send", "EXACT_MAX", "HNSW_EF_SEARCH", "HNSW_MAX_DIMENSIONS"]

log = logging.getLogger("engine.search")

# As engine.search.sqlite_vectors: exact search up to this many candidates.
EXACT_MAX = int(os.environ.get("ENGINE_VECTOR_EXACT_MAX", "10000"))
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 128
HNSW_EF_SEARCH = 128
HNSW_EF_SEARCH_MAX = 1000  # pgvector's upper bound for hnsw.ef_search
HNSW_MAX_DIMENSIONS = 2000  # pgvector's HNSW indexes take vectors up to 2 000 dimensions
LEASE_POLL_S = 2.0  # how often a node waiting for another node's backfill looks again
_LOCK_SCHEMA = 0x636F6E76  # engine.storage.postgres's schema-creation lock ("conv")
_LOCK_BACKFILL = 0x636F6E78  # advisory lock class ("conx") of backfills, with the index id

DDL = [
    "CREATE TABLE IF NOT EXISTS search_indexes_ (id BIGINT PRIMARY KEY, table_name TEXT COLLATE \"C\" NOT NULL,"
    " name TEXT COLLATE \"C\" NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL, cursor BYTEA,"
    " UNIQUE (table_name, name))",
    "CREATE TABLE IF NOT EXISTS search_stats (index_id BIGINT PRIMARY KEY, docs BIGINT NOT NULL, tokens BIGINT NOT NULL)",
]

_MAX_TERM = "\U0010ffff"  # sorts after every character a token can hold
TSVECTOR_LEXEME_BYTES = 1_000_000  # below PostgreSQL's 1 MiB of lexeme text per tsvector


def _text(index_id: int) -> str:
    return f"search_text_{int(index_id)}"


def _terms(index_id: int) -> str:
    return f"search_terms_{int(index_id)}"


def _vec(index_id: int) -> str:
    return f"search_vec_{int(index_id)}"


def _lexeme(term: str) -> str:
    """A tsquery operand that is exactly `term` (quoted: no parsing, no normalization)."""
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


def _text_write_sql(index_id: int) -> str:
    t, terms = _text(index_id), _terms(index_id)
    # Every sub-statement sees the state before the statement: `old` is each document's entry as it
    # was, so the statistics and document frequencies move by (new - old) in one round trip.
    return f"""
WITH inp AS (SELECT * FROM unnest($1::text[], $2::bool[], $3::text[], $4::text[], $5::int[], $6::float8[],
                                  $7::text[]) AS i(doc_id, present, body, lex, ntok, ctime, over)),
old AS (SELECT e.doc_id, e.tokens, e.overflow, e.ntok FROM {t} AS e JOIN inp ON e.doc_id = inp.doc_id),
del AS (DELETE FROM {t} AS e USING inp WHERE e.doc_id = inp.doc_id AND NOT inp.present),
ups AS (INSERT INTO {t} (doc_id, tokens, overflow, body, ntok, ctime)
        SELECT doc_id, array_to_tsvector(string_to_array(lex, ' ')), string_to_array(nullif(over, ''), ' '), body,
               ntok, ctime FROM inp WHERE present
        ON CONFLICT (doc_id) DO UPDATE SET tokens = EXCLUDED.tokens, overflow = EXCLUDED.overflow,
        body = EXCLUDED.body, ntok = EXCLUDED.ntok, ctime = EXCLUDED.ctime),
d AS (SELECT term, sum(n)::bigint AS n FROM (
        SELECT unnest(tsvector_to_array(tokens) || coalesce(overflow, '{{}}'::text[])) AS term, -1 AS n FROM old
        UNION ALL SELECT unnest(string_to_array(lex || ' ' || over, ' ')), 1 FROM inp WHERE present) AS x
      WHERE term <> '' GROUP BY term HAVING sum(n) <> 0),
cur AS (SELECT d.term, d.n, coalesce(w.df, 0) AS df FROM d LEFT JOIN {terms} AS w ON w.term = d.term),
tz AS (DELETE FROM {terms} AS w USING cur WHERE w.term = cur.term AND cur.df + cur.n <= 0),
tu AS (INSERT INTO {terms} (term, df) SELECT term, n FROM cur WHERE cur.df + cur.n > 0
       ON CONFLICT (term) DO UPDATE SET df = {terms}.df + EXCLUDED.df),
st AS (UPDATE search_stats SET
         docs = docs + (SELECT count(*) FROM inp WHERE present) - (SELECT count(*) FROM old),
         tokens = tokens + (SELECT coalesce(sum(ntok), 0) FROM inp WHERE present)
                         - (SELECT coalesce(sum(ntok), 0) FROM old)
       WHERE index_id = {int(index_id)})
SELECT 1"""


def _split_lexemes(entry: TextDoc) -> tuple[str, str]:
    """(the tsvector's lexemes, the overflow's), space-joined. A tsvector holds at most 1 MiB of
    lexeme text; a document with more distinct words keeps the rest in `overflow` (a text[] with
    a GIN index of its own, searched alongside), so no document is too large to index. The filter
    tokens always go into the tsvector (every match must hold them there)."""
    words = set(entry.tokens)
    size = sum(len(t) for t in words)  # a cheap bound first: characters <= bytes
    if size * 4 < TSVECTOR_LEXEME_BYTES:
        return " ".join(words | set(entry.filter_tokens)), ""
    kept = list(entry.filter_tokens)
    used = sum(len(t) for t in kept)
    spill = []
    for t in sorted(words):
        n = len(t.encode())
        if used + n <= TSVECTOR_LEXEME_BYTES:
            kept.append(t)
            used += n
        else:
            spill.append(t)
    return " ".join(kept), " ".join(spill)


def _vec_write_sql(index_id: int, dims: int, filters: int) -> str:
    t = _vec(index_id)
    fcols = "".join(f", f{i}" for i in range(filters))
    fargs = "".join(f", ${5 + i}::bytea[]" for i in range(filters))
    fsets = "".join(f", f{i} = EXCLUDED.f{i}" for i in range(filters))
    d = int(dims)
    return f"""
WITH inp AS (SELECT * FROM unnest($1::text[], $2::bool[], $3::int[]{fargs}) AS i(doc_id, present, ord{fcols})),
old AS (SELECT e.doc_id FROM {t} AS e JOIN inp ON e.doc_id = inp.doc_id),
del AS (DELETE FROM {t} AS e USING inp WHERE e.doc_id = inp.doc_id AND NOT inp.present),
st AS (UPDATE search_stats SET docs = docs + (SELECT count(*) FROM inp WHERE present) - (SELECT count(*) FROM old)
       WHERE index_id = {int(index_id)})
INSERT INTO {t} (doc_id, embedding{fcols})
SELECT doc_id, (($4::real[])[ord * {d} + 1 : ord * {d} + {d}])::vector({d}){fcols} FROM inp WHERE present
ON CONFLICT (doc_id) DO UPDATE SET embedding = EXCLUDED.embedding{fsets}"""


def _text_ddl(index_id: int) -> str:
    t, terms, i = _text(index_id), _terms(index_id), int(index_id)
    return (f"CREATE TABLE IF NOT EXISTS {t} (doc_id TEXT COLLATE \"C\" PRIMARY KEY, tokens tsvector NOT NULL,"
            " overflow TEXT[], body TEXT NOT NULL, ntok INT NOT NULL, ctime DOUBLE PRECISION NOT NULL);"
            f" CREATE INDEX IF NOT EXISTS {t}_tokens ON {t} USING gin (tokens);"
            f" CREATE INDEX IF NOT EXISTS {t}_overflow ON {t} USING gin (overflow);"
            f" CREATE TABLE IF NOT EXISTS {terms} (term TEXT COLLATE \"C\" PRIMARY KEY, df BIGINT NOT NULL);"
            f" INSERT INTO search_stats (index_id, docs, tokens) VALUES ({i}, 0, 0)"
            " ON CONFLICT (index_id) DO UPDATE SET docs = 0, tokens = 0")


def _vector_ddl(info: VectorIndexInfo) -> str:
    t, i = _vec(info.id), int(info.id)
    cols = "".join(f", f{k} BYTEA NOT NULL" for k in range(len(info.filter_fields)))
    out = [f"CREATE TABLE IF NOT EXISTS {t} (doc_id TEXT COLLATE \"C\" PRIMARY KEY,"
           f" embedding vector({int(info.dimensions)}) NOT NULL{cols})"]
    if info.dimensions <= HNSW_MAX_DIMENSIONS:
        out.append(f"CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw (embedding vector_cosine_ops)"
                   f" WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION})")
    else:
        log.warning('Vector index "%s" has %d dimensions: pgvector\'s HNSW index takes at most %d, so its '
                    "searches are exact scans.", info.printable, info.dimensions, HNSW_MAX_DIMENSIONS)
    out += [f"CREATE INDEX IF NOT EXISTS {t}_f{k} ON {t} (f{k})" for k in range(len(info.filter_fields))]
    out.append(f"INSERT INTO search_stats (index_id, docs, tokens) VALUES ({i}, 0, 0)"
               " ON CONFLICT (index_id) DO UPDATE SET docs = 0, tokens = 0")
    return "; ".join(out)


def vectors_from_send(rows: list[Any], dims: int) -> np.ndarray:
    """float32 vectors from pgvector's binary form (`vector_send`: int16 dims, int16 unused, then
    big-endian float32s), one per row (column 1)."""
    if not rows:
        return np.zeros((0, dims), dtype=np.float32)
    layout = np.dtype([("head", ">i4"), ("v", ">f4", (dims,))])
    return np.frombuffer(b"".join(r[1] for r in rows), dtype=layout)["v"].astype(np.float32)


class PostgresSearchStore(SearchStore):
    def __init__(self, persistence: PostgresPersistence) -> None:
        self._persistence = persistence
        self._infos: dict[int, IndexSpec] = {}  # registered index id -> its spec (this node's view)
        self._awaiting_ready = 0  # attached indexes not ready yet (ingested() looks for READY keys)
        self.vector_reason: str | None = None  # why vector indexes cannot be built here, if so
        self.exact_max = EXACT_MAX
        self.unbuilt: Mapping[str, str] = {}

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Create the registration tables (the persistence holds its schema lock) and enable
        pgvector if it can be enabled."""
        import asyncpg

        pool = self._persistence.pool
        async with pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_SCHEMA)
                for ddl in DDL:
                    await conn.execute(ddl)
            self.vector_reason = None
            if await conn.fetchval("SELECT 1 FROM pg_extension WHERE extname = 'vector'") is None:
                try:
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_SCHEMA)
                        await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except asyncpg.PostgresError as e:
                    self.vector_reason = (
                        "vector indexes on PostgreSQL need the pgvector extension, and this database does not "
                        f"have it (CREATE EXTENSION vector failed: {e}). Install pgvector on the server and run "
                        "CREATE EXTENSION vector in this database as a superuser; full-text search works "
                        "without it.")
                    log.warning("pgvector is not available: %s", e)

    def cannot_build(self, info: IndexSpec) -> str | None:
        if isinstance(info, VectorIndexInfo):
            return self.vector_reason
        return None

    # -- registrations -------------------------------------------------------------------------
    async def load(self) -> list[StoredIndex]:
        rows = await self._persistence.pool.fetch("SELECT id, table_name, name, spec, state, cursor FROM search_indexes_")
        return [StoredIndex(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows]

    def _track(self, info: IndexSpec) -> None:
        old = self._infos.get(info.id)
        if old is not None and not old.ready:
            self._awaiting_ready -= 1
        self._infos[info.id] = info
        if not info.ready:
            self._awaiting_ready += 1

    def attach(self, info: IndexSpec, stamp: int) -> None:
        self._track(info)

    async def register(self, info: IndexSpec) -> None:
        ddl = _vector_ddl(info) if isinstance(info, VectorIndexInfo) else _text_ddl(info.id)
        async with self._persistence.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("DELETE FROM search_indexes_ WHERE table_name = $1 AND name = $2",
                                   info.table, info.name)
                await conn.execute("INSERT INTO search_indexes_ (id, table_name, name, spec, state, cursor)"
                                   " VALUES ($1, $2, $3, $4, $5, NULL)",
                                   info.id, info.table, info.name, info.to_json(), info.state)
                await conn.execute(ddl)  # (one round trip: statements without arguments)
        self._track(info)

    @staticmethod
    async def _drop_tables(conn: Any, index_id: int) -> None:
        await conn.execute("; ".join(f"DROP TABLE IF EXISTS {table}" for table in
                                     (_text(index_id), _terms(index_id), _vec(index_id)))
                           + f"; DELETE FROM search_stats WHERE index_id = {int(index_id)}")

    async def drop(self, index_id: int) -> None:
        info = self._infos.pop(index_id, None)
        if info is not None and not info.ready:
            self._awaiting_ready -= 1
        async with self._persistence.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("DELETE FROM search_indexes_ WHERE id = $1", index_id)
                await self._drop_tables(conn, index_id)

    async def reset(self, conn: Any) -> None:
        """Inside a snapshot restore's transaction (offline): every index goes, and the next start
        registers and backfills the schema's indexes anew."""
        for (index_id,) in await conn.fetch("SELECT id FROM search_indexes_"):
            await self._drop_tables(conn, index_id)
        await conn.execute("DELETE FROM search_indexes_")
        self._infos.clear()
        self._awaiting_ready = 0

    # -- commits -------------------------------------------------------------------------------
    def write(self, handle: Any, ops: list[SearchOp | StateOp]) -> None:
        """Render the ops as (sql, args) statements appended to `handle` (a list); the persistence
        runs them in the commit's transaction, in order."""
        out: list[tuple[str, tuple[Any, ...]]] = handle
        entries: dict[int, dict[str, TextDoc | VectorRow | None]] = {}
        states: dict[int, StateOp] = {}
        for op in ops:
            if isinstance(op, StateOp):
                states[op.index_id] = op
            elif op.index_id in self._infos:  # else: an index dropped meanwhile
                entries.setdefault(op.index_id, {})[op.doc_id] = op.entry
        for index_id, docs in entries.items():
            info = self._infos[index_id]
            if isinstance(info, VectorIndexInfo):
                out.append(self._vector_statement(info, docs))
            else:
                out.append(self._text_statement(index_id, docs))
        for index_id, op in states.items():
            # Forward only: a backfill that lost its lease (a dropped connection) never undoes "ready".
            out.append(("UPDATE search_indexes_ SET state = $2, cursor = $3 WHERE id = $1 AND state <> 'ready'",
                        (index_id, op.state, op.cursor)))

    @staticmethod
    def _text_statement(index_id: int, docs: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        ids, present, bodies, lexes, ntoks, ctimes, overs = [], [], [], [], [], [], []
        for doc_id, entry in docs.items():
            ids.append(doc_id)
            if entry is None:
                present.append(False)
                bodies.append("")
                lexes.append("")
                ntoks.append(0)
                ctimes.append(0.0)
                overs.append("")
                continue
            present.append(True)
            bodies.append(" ".join(entry.tokens))
            lex, over = _split_lexemes(entry)
            lexes.append(lex)
            overs.append(over)
            ntoks.append(len(entry.tokens))
            ctimes.append(entry.creation_time)
        return _text_write_sql(index_id), (ids, present, bodies, lexes, ntoks, ctimes, overs)

    @staticmethod
    def _vector_statement(info: VectorIndexInfo, docs: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
        nf = len(info.filter_fields)
        ids, present, ords = [], [], []
        filters: list[list[bytes]] = [[] for _ in range(nf)]
        packed: list[bytes] = []
        for doc_id, entry in docs.items():
            ids.append(doc_id)
            if entry is None:
                present.append(False)
                ords.append(0)
                for col in filters:
                    col.append(b"")
                continue
            present.append(True)
            ords.append(len(packed))
            packed.append(entry.vector)
            for i, col in enumerate(filters):
                col.append(entry.filters[i])
        flat = np.frombuffer(b"".join(packed), dtype="<f4").tolist() if packed else []
        sql = _vec_write_sql(info.id, info.dimensions, nf)
        return sql, (ids, present, ords, flat, *filters)

    def committed(self, batch: list[CommitRecord]) -> None:
        for rec in batch:
            for op in rec.search:
                if isinstance(op, StateOp):
                    self._set_state(op.info, op.state)

    def _set_state(self, info: IndexSpec, state: str) -> None:
        if info.ready or state != READY:
            return
        info.state = READY
        if self._infos.get(info.id) is info:
            self._awaiting_ready -= 1

    def rolled_back(self) -> None:
        return None

    def ingested(self, keys: Iterable[tuple[int, bytes]]) -> None:
        """Another node's commit was read: one that finished a backfill (it writes the index's
        READY key, in the same transaction as the "ready" state) makes the index ready here too,
        before the subscriptions that wait for it re-run."""
        if self._awaiting_ready <= 0:
            return
        for index_id, key in keys:
            if key == READY_KEY:
                info = self._infos.get(index_id)
                if info is not None:
                    self._set_state(info, READY)

    @contextlib.asynccontextmanager
    async def backfill_lease(self, info: IndexSpec, cursor: bytes | None) -> AsyncIterator[tuple[bool, bytes | None]]:
        """One node at a time backfills an index: a session advisory lock, held on a pooled
        connection for as long as the backfill runs (a node that stops releases it with its
        connection). Waiting nodes look again every few seconds (holding no connection between
        looks); yields (go, cursor to resume from) where go is False once the index is ready
        (another node finished it) or gone."""
        from ..storage.postgres import reachable  # (that module imports this one)

        pool = self._persistence.pool
        said = False
        while True:
            with reachable():  # a lost database is DatabaseUnavailable (the manager waits for it)
                conn = await pool.acquire()
            try:
                with reachable():
                    got = await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", _LOCK_BACKFILL, info.id)
                    row = await conn.fetchrow("SELECT state, cursor FROM search_indexes_ WHERE id = $1", info.id)
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.terminate()  # (a lock it may hold goes with it)
                with contextlib.suppress(Exception):
                    await pool.release(conn)
                raise
            if got and (row is None or row[0] == READY):
                with contextlib.suppress(Exception):
                    await conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_BACKFILL, info.id)
            if not got or row is None or row[0] == READY:
                await pool.release(conn)
                if row is None or row[0] == READY:
                    if row is not None:
                        self._set_state(info, READY)
                    yield False, None
                    return
                if not said:
                    said = True
                    log.info('Another node is backfilling %s index "%s"; this node waits (and takes over from '
                             "its last chunk if that node stops).", info.kind, info.printable)
                await asyncio.sleep(LEASE_POLL_S)
                continue
            break
        try:
            yield True, row[1]
        finally:
            # Never raise from here: the backfill's own outcome (done, cancelled, the database
            # gone) is what propagates. A lock that cannot be released goes with its connection.
            try:
                await asyncio.shield(conn.execute("SELECT pg_advisory_unlock($1, $2)", _LOCK_BACKFILL, info.id))
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.terminate()
            with contextlib.suppress(Exception):
                await pool.release(conn)

    # -- reads ---------------------------------------------------------------------------------
    def text_reader(self, snapshot: Any, info: IndexSpec) -> TextReader:
        return PgTextReader(snapshot, info.id)

    def vector_reader(self, snapshot: Any, info: IndexSpec) -> VectorReader:
        assert isinstance(info, VectorIndexInfo)
        return PgVectorReader(snapshot, info, self.exact_max)

    async def documents_in_table(self, table_number: int) -> int:
        from ..storage.postgres import reachable

        with reachable():
            return await self._persistence.pool.fetchval("SELECT count(*) FROM documents WHERE table_number = $1",
                                                         table_number)


class PgTextReader(TextReader):
    """One full-text index through a snapshot's transaction (engine.storage.postgres `_PgSnapshot`:
    `fetch` / `fetchrow` take the snapshot's turn on its connection)."""

    __slots__ = ("_snap", "_id", "_text", "_terms")

    def __init__(self, snapshot: Any, index_id: int) -> None:
        self._snap = snapshot
        self._id = index_id
        self._text = _text(index_id)
        self._terms = _terms(index_id)

    async def stats(self) -> tuple[int, int]:
        row = await self._snap.fetchrow("SELECT docs, tokens FROM search_stats WHERE index_id = $1", self._id)
        return (int(row[0]), int(row[1])) if row is not None else (0, 0)

    async def doc_freqs(self, terms: Iterable[str]) -> dict[str, int]:
        wanted = list(terms)
        out = dict.fromkeys(wanted, 0)
        if wanted:
            for term, df in await self._snap.fetch(f"SELECT term, df FROM {self._terms} WHERE term = ANY($1::text[])",
                                                   wanted):
                out[term] = int(df)
        return out

    async def prefix_terms(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        rows = await self._snap.fetch(f"SELECT term, df FROM {self._terms} WHERE term >= $1 AND term < $2 AND df > 0"
                                      " ORDER BY term LIMIT $3", prefix, prefix + _MAX_TERM, limit)
        return [(r[0], int(r[1])) for r in rows]

    async def matches(self, terms: list[str], filter_tokens: list[str], *,
                      filters_after: bool = False) -> Iterable[tuple[str, float, list[str]]]:
        if not terms:
            return iter(())
        query = "(" + " | ".join(_lexeme(t) for t in terms) + ")"
        filters = " & ".join(_lexeme(t) for t in filter_tokens)
        # One GIN lookup either way (PostgreSQL intersects the posting lists itself), so the
        # `filters_after` hint changes nothing here. The second arm: words of very large documents
        # (`overflow`, _split_lexemes).
        overflow = "overflow && $2::text[]" + (" AND tokens @@ $3::tsquery" if filters else "")
        args: list[Any] = [query + (" & " + filters if filters else ""), list(terms)] + ([filters] if filters else [])
        rows = await self._snap.fetch(f"SELECT doc_id, ctime, ntok, body FROM {self._text} WHERE tokens @@ $1::tsquery"
                                      f" OR ({overflow})", *args)
        return ((r[0], r[1], r[3].split(" ") if r[2] else []) for r in rows)


class PgVectorReader(VectorReader):
    """One vector index through a snapshot's transaction.

    - exact when at most `exact_max` entries are candidates (all, or those passing the filters, found
      through the filter columns' B-trees): PostgreSQL orders them by cosine distance in a scan that
      cannot use the HNSW index, with a margin, and the winners are re-scored here in float32
      (engine.search.sqlite_vectors.exact_top) so results and scores equal brute-force cosine;
    - otherwise the HNSW index (`ORDER BY embedding <=> q LIMIT k`, hnsw.ef_search raised to at
      least 2k), its results re-scored exactly; a filtered search the graph cannot fill (pgvector
      filters after the graph walk) falls back to the exact scan of its candidates.
    """

    def __init__(self, snapshot: Any, info: VectorIndexInfo, exact_max: int) -> None:
        self._snap = snapshot
        self._id = info.id
        self._table = _vec(info.id)
        self._dims = info.dimensions
        self._indexed = info.dimensions <= HNSW_MAX_DIMENSIONS
        self._exact_max = exact_max

    async def count(self) -> int:
        """(Kept in `search_stats` by the same statements that write the entries.)"""
        return int(await self._snap.fetchval("SELECT docs FROM search_stats WHERE index_id = $1", self._id) or 0)

    @staticmethod
    def _where(filters: dict[int, list[bytes]], first_arg: int) -> tuple[str, list[Any]]:
        parts, args = [], []
        for ordinal, values in sorted(filters.items()):
            parts.append(f"f{int(ordinal)} = ANY(${first_arg + len(args)}::bytea[])")
            args.append(list(values))
        return (" WHERE " + " OR ".join(parts)) if parts else "", args

    def _rescored(self, query: np.ndarray, rows: list[Any], limit: int) -> list[tuple[str, float]]:
        from .sqlite_vectors import exact_top

        return exact_top(query, [r[0] for r in rows], vectors_from_send(rows, self._dims), limit)

    async def _exact(self, query: np.ndarray, qlist: list[float], limit: int, where: str,
                     args: list[Any]) -> list[tuple[str, float]]:
        # A margin over `limit`: PostgreSQL's float32 arithmetic may order near-ties differently
        # from NumPy's; the final order and scores are NumPy's. A zero vector's distance is NaN in
        # pgvector and its similarity 0 here: ordered as distance 1. Ties: by id, as exact_top.
        fetch = limit + max(limit, 16)
        sql = (f"SELECT doc_id, vector_send(embedding) FROM {self._table}{where} ORDER BY "
               f"coalesce(nullif(embedding <=> $1::real[]::vector, 'NaN'::float8), 1.0), doc_id LIMIT {int(fetch)}")
        return self._rescored(query, await self._snap.fetch(sql, qlist, *args), limit)

    async def search(self, vector: Any, limit: int, filters: dict[int, list[bytes]]) -> list[tuple[str, float]]:
        query = np.asarray(vector, dtype=np.float32)
        qlist = query.tolist()
        where, args = self._where(filters, 2)  # after the query vector ($1)
        if filters:  # the candidates passing the filters, counted up to exact_max + 1 (B-trees)
            counted, _ = self._where(filters, 1)
            candidates = await self._snap.fetchval(
                f"SELECT count(*) FROM (SELECT 1 FROM {self._table}{counted} LIMIT {self._exact_max + 1}) AS c", *args)
        else:
            candidates = await self.count()
        if candidates <= self._exact_max or not self._indexed:
            return await self._exact(query, qlist, limit, where, args)
        ef = min(HNSW_EF_SEARCH_MAX, max(HNSW_EF_SEARCH, 2 * limit))
        if filters:
            ef = HNSW_EF_SEARCH_MAX  # pgvector filters after the walk: let it walk as far as it can
        if ef != HNSW_EF_SEARCH:  # (the pool's connections start with HNSW_EF_SEARCH: PostgresPersistence)
            await self._snap.fetchval("SELECT set_config('hnsw.ef_search', $1, true)", str(ef))
        sql = (f"SELECT doc_id, vector_send(embedding) FROM {self._table}{where} "
               f"ORDER BY embedding <=> $1::real[]::vector LIMIT {int(limit)}")
        rows = await self._snap.fetch(sql, qlist, *args)
        if filters and len(rows) < limit:
            return await self._exact(query, qlist, limit, where, args)
        return self._rescored(query, rows, limit)
