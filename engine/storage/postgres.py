"""PostgreSQL, the store several engine nodes share (engine.storage.base's contract): the only module
that talks to PostgreSQL (and the only importer of asyncpg).

Layout: the same single-version tables as SQLite (`documents`, `index_entries`, `mutation_results`,
`tables_`, `indexes_`), timestamps as BIGINT nanoseconds, text keys in the "C" collation (byte
order, as SQLite compares them), plus:
- `clock`: one row, the commit-timestamp high-water mark. Every commit of every node locks it
  (`SELECT ... FOR UPDATE`) for the length of its transaction, so commits are serialized across the
  cluster and commit order is timestamp order (engine.cluster assigns the timestamps under it).
- `commits(ts, node, payload)`: one row per commit: the keys it wrote (OCC validation and
  subscription invalidation on the other nodes) and its undo information (engine.history), as
  msgpack. Nodes tail it in ts order; rows older than a retention window are trimmed, and
  `meta('commits_horizon')` says up to where.
Every commit NOTIFYs channel `convex_commits` with its timestamp (never keys: payloads are capped
at 8000 bytes); the listening nodes then read the new `commits` rows.

Reads: a snapshot is a REPEATABLE READ, READ ONLY transaction on a pooled connection; its ts is the
clock row read inside it, so it sees exactly the state after the commit with that ts. Reads are
real coroutines (`inline_reads` is False): mutations run on durable snapshots and OCC.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import asyncpg

from ..blobs import BlobStore, check_blob_key
from ..errors import EngineError
from ..search.backend import SearchStore
from ..search.pg_store import HNSW_EF_SEARCH, PostgresSearchStore
from .base import CommitRecord, Persistence, Row, Snapshot, resume_key

__all__ = ["PostgresPersistence", "CommitSession", "describe_url", "NOTIFY_CHANNEL", "ENV_CHANNEL",
           "env_vars_at", "update_env_at"]

log = logging.getLogger("engine.storage.postgres")

NOTIFY_CHANNEL = "convex_commits"
APPLICATION_NAME = "convex-engine-node"
_LOCK_SCHEMA = 0x636F6E76  # advisory lock keys ("conv", ...): schema creation and node start-up
_LOCK_STARTUP = 0x636F6E77

# The deployment's environment variables (engine.env), shared by every node; a change notifies
# ENV_CHANNEL and the listening nodes read the table again.
ENV_TABLE = "CREATE TABLE IF NOT EXISTS env_vars (name TEXT COLLATE \"C\" PRIMARY KEY, value TEXT NOT NULL)"
ENV_CHANNEL = "convex_env"

SCHEMA = [
    "CREATE TABLE IF NOT EXISTS clock (id INT PRIMARY KEY, ts BIGINT NOT NULL)",
    "INSERT INTO clock (id, ts) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    "CREATE TABLE IF NOT EXISTS meta (k TEXT COLLATE \"C\" PRIMARY KEY, v BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tables_ (name TEXT COLLATE \"C\" PRIMARY KEY, number BIGINT NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS indexes_ (id BIGINT PRIMARY KEY, table_name TEXT COLLATE \"C\" NOT NULL,"
    " name TEXT COLLATE \"C\" NOT NULL, fields TEXT NOT NULL, UNIQUE (table_name, name))",
    "CREATE TABLE IF NOT EXISTS documents (id TEXT COLLATE \"C\" PRIMARY KEY, table_number BIGINT NOT NULL,"
    " ts BIGINT NOT NULL, value BYTEA NOT NULL)",
    "CREATE INDEX IF NOT EXISTS documents_by_table ON documents (table_number, id)",
    "CREATE TABLE IF NOT EXISTS index_entries (index_id BIGINT NOT NULL, key BYTEA NOT NULL,"
    " doc_id TEXT COLLATE \"C\" NOT NULL, PRIMARY KEY (index_id, key))",
    "CREATE TABLE IF NOT EXISTS mutation_results (session_id TEXT COLLATE \"C\" NOT NULL, request_id BIGINT NOT NULL,"
    " ts BIGINT NOT NULL, result BYTEA NOT NULL, PRIMARY KEY (session_id, request_id))",
    # Expiring stored mutation results by age (engine.session_cleanup).
    "CREATE INDEX IF NOT EXISTS mutation_results_by_ts ON mutation_results (ts)",
    "CREATE TABLE IF NOT EXISTS commits (ts BIGINT PRIMARY KEY, node TEXT NOT NULL, payload BYTEA NOT NULL)",
    # File storage's bytes (PostgresBlobStore); `created` in ns since the epoch.
    "CREATE TABLE IF NOT EXISTS blobs (key TEXT COLLATE \"C\" PRIMARY KEY, data BYTEA NOT NULL, created BIGINT NOT NULL)",
    # Node heartbeats (engine.cluster.NodeLiveness): when each node was last heard from, by the
    # database's clock, and the scheduled jobs and cron jobs it is running.
    "CREATE TABLE IF NOT EXISTS nodes (node TEXT COLLATE \"C\" PRIMARY KEY, seen TIMESTAMPTZ NOT NULL,"
    " runs TEXT[] NOT NULL)",
    ENV_TABLE,
]

SQL = {
    "clock_get": "SELECT ts FROM clock WHERE id = 1",
    "clock_lock": "SELECT ts FROM clock WHERE id = 1 FOR UPDATE",
    "doc_get": "SELECT table_number, value FROM documents WHERE id = $1",
    "page_asc": "SELECT e.key, e.doc_id, d.value FROM index_entries AS e JOIN documents AS d ON d.id = e.doc_id"
    " WHERE e.index_id = $1 AND e.key >= $2 AND e.key < $3 ORDER BY e.key ASC LIMIT $4",
    "page_desc": "SELECT e.key, e.doc_id, d.value FROM index_entries AS e JOIN documents AS d ON d.id = e.doc_id"
    " WHERE e.index_id = $1 AND e.key >= $2 AND e.key < $3 ORDER BY e.key DESC LIMIT $4",
    "mutation_result_get": "SELECT ts, result FROM mutation_results WHERE session_id = $1 AND request_id = $2",
    "mutation_results_expire": "WITH d AS (DELETE FROM mutation_results WHERE (session_id, request_id) IN"
    " (SELECT session_id, request_id FROM mutation_results WHERE ts < $1 ORDER BY ts LIMIT $2) RETURNING 1)"
    " SELECT count(*) FROM d",
    # The commit rows after $1 in ts order; first, as (-horizon, NULL), the trim horizon when rows
    # after $1 have been trimmed away (the reader missed some).
    "commits_after": "SELECT ts, payload FROM commits WHERE ts > $1 UNION ALL"
    " SELECT -v, NULL FROM meta WHERE k = 'commits_horizon' AND v > $1 ORDER BY 1",
    # One statement applies a whole group commit (its net effect: each id and key at most once).
    "apply": """
WITH dd AS (DELETE FROM documents WHERE id = ANY($1::text[])),
dp AS (INSERT INTO documents (id, table_number, ts, value)
       SELECT * FROM unnest($2::text[], $3::bigint[], $4::bigint[], $5::bytea[])
       ON CONFLICT (id) DO UPDATE SET table_number = EXCLUDED.table_number, ts = EXCLUDED.ts,
       value = EXCLUDED.value),
ed AS (DELETE FROM index_entries AS e USING unnest($6::bigint[], $7::bytea[]) AS d(i, k)
       WHERE e.index_id = d.i AND e.key = d.k),
ep AS (INSERT INTO index_entries (index_id, key, doc_id)
       SELECT * FROM unnest($8::bigint[], $9::bytea[], $10::text[])
       ON CONFLICT (index_id, key) DO UPDATE SET doc_id = EXCLUDED.doc_id),
mr AS (INSERT INTO mutation_results (session_id, request_id, ts, result)
       SELECT * FROM unnest($11::text[], $12::bigint[], $13::bigint[], $14::bytea[])
       ON CONFLICT (session_id, request_id) DO NOTHING),
cm AS (INSERT INTO commits (ts, node, payload) SELECT * FROM unnest($15::bigint[], $16::text[], $17::bytea[])),
ck AS (UPDATE clock SET ts = GREATEST(ts, $18) WHERE id = 1)
SELECT pg_notify('""" + NOTIFY_CHANNEL + """', $19)""",
    "trim_commits": "WITH d AS (DELETE FROM commits WHERE ts <= $1) INSERT INTO meta (k, v) VALUES ('commits_horizon', $1)"
    " ON CONFLICT (k) DO UPDATE SET v = GREATEST(meta.v, EXCLUDED.v)",
    "tables_all": "SELECT name, number FROM tables_",
    "table_add": "INSERT INTO tables_ (name, number) VALUES ($1, $2)",
    "table_renumber": "UPDATE tables_ SET number = $1 WHERE name = $2",
    "indexes_all": "SELECT id, table_name, name, fields FROM indexes_",
    "index_add": "INSERT INTO indexes_ (id, table_name, name, fields) VALUES ($1, $2, $3, $4)",
    "index_drop": "DELETE FROM indexes_ WHERE id = $1",
    "index_clear": "DELETE FROM index_entries WHERE index_id = $1",
    "entry_put": "INSERT INTO index_entries (index_id, key, doc_id) VALUES ($1, $2, $3)"
    " ON CONFLICT (index_id, key) DO UPDATE SET doc_id = EXCLUDED.doc_id",
    "docs_page": "SELECT id, value FROM documents WHERE table_number = $1 AND id > $2 ORDER BY id LIMIT $3",
    "table_any": "SELECT 1 FROM documents WHERE table_number = $1 LIMIT 1",
    "index_any": "SELECT 1 FROM index_entries WHERE index_id = $1 LIMIT 1",
    "doc_put": "INSERT INTO documents (id, table_number, ts, value) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (id) DO UPDATE SET table_number = EXCLUDED.table_number, ts = EXCLUDED.ts, value = EXCLUDED.value",
    "heartbeat": "INSERT INTO nodes (node, seen, runs) VALUES ($1, clock_timestamp(), $2::text[])"
    " ON CONFLICT (node) DO UPDATE SET seen = EXCLUDED.seen, runs = EXCLUDED.runs",
    "claimed_runs": "SELECT DISTINCT unnest(runs) FROM nodes WHERE seen > clock_timestamp() - make_interval(secs => $1)",
    "env_all": "SELECT name, value FROM env_vars",
    "env_put": "INSERT INTO env_vars (name, value) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
    "env_delete": "DELETE FROM env_vars WHERE name = $1",
    "env_notify": "SELECT pg_notify('" + ENV_CHANNEL + "', '')",
    "forget_nodes": "DELETE FROM nodes WHERE node = $1 OR seen < clock_timestamp() - interval '1 day'",
    "peers": "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
    " AND application_name LIKE '" + APPLICATION_NAME + " %' AND application_name <> $1",
}


def describe_url(url: str) -> str:
    """The URL without its password (for messages and logs)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "postgresql://(unparsable URL)"
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if _port(parts) else ""
    user = f"{parts.username}@" if parts.username else ""
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


def _port(parts: urllib.parse.SplitResult) -> int | None:
    try:
        return parts.port
    except ValueError:
        return None


def _redact(text: str, url: str) -> str:
    try:
        password = urllib.parse.urlsplit(url).password
    except ValueError:
        password = None
    if password:
        text = text.replace(password, "***").replace(urllib.parse.unquote(password), "***")
    return text


# What a lost or refused connection raises (a server restart, a network cut).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError, asyncio.TimeoutError, asyncpg.PostgresConnectionError, asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError, asyncpg.CannotConnectNowError, asyncpg.AdminShutdownError,
    asyncpg.exceptions.InternalClientError)


def unavailable(error: BaseException) -> EngineError:
    """The error a caller sees while the database cannot be reached (a 503; retrying later works)."""
    return EngineError("DatabaseUnavailable", "The database is unavailable right now (the engine is reconnecting);"
                       f" try again. ({type(error).__name__})", status=503)


@contextlib.contextmanager
def reachable() -> Iterator[None]:
    """Statements inside report a lost connection as DatabaseUnavailable (a 503), not a crash."""
    try:
        yield
    except CONNECTION_ERRORS as e:
        raise unavailable(e) from None


class _PgSnapshot(Snapshot):
    """A REPEATABLE READ transaction on one pooled connection. Reads on one snapshot take turns
    (a connection runs one statement at a time)."""

    __slots__ = ("_owner", "_conn", "_lock", "ts", "_closed")
    inline_reads = False

    def __init__(self, owner: PostgresPersistence, conn: Any, ts: int) -> None:
        self._owner = owner
        self._conn = conn
        self._lock = asyncio.Lock()
        self.ts = ts
        self._closed = False

    async def get(self, doc_id: str) -> tuple[int, bytes] | None:
        async with self._lock:
            try:
                row = await self._conn.fetchrow(SQL["doc_get"], doc_id)
            except CONNECTION_ERRORS as e:
                raise unavailable(e) from None
        return (row[0], row[1]) if row is not None else None

    async def scan_page(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                        limit: int) -> tuple[list[Row], bytes | None]:
        async with self._lock:
            try:
                rows = await self._conn.fetch(SQL["page_desc" if desc else "page_asc"], index_id, lo, hi, limit)
            except CONNECTION_ERRORS as e:
                raise unavailable(e) from None
        out: list[Row] = [(r[0], r[1], r[2]) for r in rows]
        return out, resume_key(out, limit)

    # Reads of the search store (engine.search.pg_store) in this snapshot's transaction.
    async def _read(self, method: str, sql: str, args: tuple[Any, ...]) -> Any:
        async with self._lock:
            with reachable():
                return await getattr(self._conn, method)(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return await self._read("fetch", sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self._read("fetchrow", sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._read("fetchval", sql, args)

    async def mutation_result(self, session_id: str, request_id: int) -> tuple[int, bytes] | None:
        async with self._lock:
            try:
                row = await self._conn.fetchrow(SQL["mutation_result_get"], session_id, request_id)
            except CONNECTION_ERRORS as e:
                raise unavailable(e) from None
        return (row[0], row[1]) if row is not None else None

    def scan_page_now(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                      limit: int) -> tuple[list[Row], bytes | None]:
        """For a worker thread (an export writing a ZIP: engine.storage.base.scan_now): the page,
        read on the event loop that owns the connection. Never call it from that loop."""
        loop = self._owner.loop
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if loop is None or running is loop:
            raise RuntimeError("scan_page_now on a PostgreSQL snapshot is for worker threads")
        return asyncio.run_coroutine_threadsafe(self.scan_page(index_id, lo, hi, desc, limit), loop).result()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._owner._background(self._end())

    async def _end(self) -> None:
        async with self._lock:  # after any read still running on the connection
            await self._owner._end_read(self._conn)


class _LockedSnapshot(_PgSnapshot):
    """Reads inside a commit session (which holds the clock lock, so nothing commits meanwhile:
    READ COMMITTED reads are a stable view). Closing it leaves the session open."""

    def close(self) -> None:
        self._closed = True


class CommitSession:
    """One commit transaction: holds the cluster-wide clock lock from `begin` to `commit`/`rollback`."""

    def __init__(self, store: PostgresPersistence, conn: Any) -> None:
        self.store = store
        self.conn = conn
        self.clock = 0
        self.open = False

    async def begin(self) -> int:
        await self.conn.execute("BEGIN")
        self.open = True
        self.clock = await self.conn.fetchval(SQL["clock_lock"])
        return self.clock

    async def commits_after(self, ts: int) -> tuple[int, list[tuple[int, bytes]]]:
        """(the trim horizon, the commit rows after `ts` in ts order)."""
        return await _commits_after(self.conn, ts)

    def snapshot(self, ts: int) -> Snapshot:
        return _LockedSnapshot(self.store, self.conn, ts)

    async def apply(self, records: list[CommitRecord], payloads: list[bytes], node: str) -> None:
        await _apply(self.conn, records, payloads, node, self.store.search)

    async def trim(self, up_to_ts: int) -> None:
        await self.conn.execute(SQL["trim_commits"], up_to_ts)

    async def commit(self) -> None:
        self.open = False
        await self.conn.execute("COMMIT")

    async def rollback(self) -> None:
        if self.open:
            self.open = False
            await self.conn.execute("ROLLBACK")


_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"


async def _begin_read(conn: Any) -> None:
    """Open a snapshot's transaction on a pooled connection. A task cancelled between a statement's
    Parse and its Sync (asyncpg sends them apart; e.g. a heartbeat cut off by a node's stop)
    leaves its connection inside an implicit transaction the client does not know of, so the pool
    hands it out as clean; there an isolation level is refused ("SET TRANSACTION ISOLATION LEVEL
    must be called before any query"). That refusal ends the implicit transaction: begin again."""
    try:
        await conn.execute(_BEGIN_READ)
    except asyncpg.ActiveSQLTransactionError:
        if conn.is_in_transaction():  # a transaction of ours, not the stray one: a bug, not this case
            raise
        await conn.execute(_BEGIN_READ)


async def _commits_after(conn: Any, ts: int) -> tuple[int, list[tuple[int, bytes]]]:
    rows = await conn.fetch(SQL["commits_after"], ts)
    horizon = 0
    if rows and rows[0][0] < 0:
        horizon = -rows[0][0]
        rows = rows[1:]
    return horizon, [(r[0], r[1]) for r in rows]


async def _apply(conn: Any, records: list[CommitRecord], payloads: list[bytes], node: str,
                 search: SearchStore) -> None:
    """Write a group of commits (in order) as one statement: their net effect on each document,
    index key and result key, the commit rows, the clock, and the notification; then the search
    and vector index entries (`search.write` renders them: one statement per index touched)."""
    docs: dict[str, tuple[int, int, bytes] | None] = {}
    entries: dict[tuple[int, bytes], str | None] = {}
    results: dict[tuple[str, int], tuple[int, bytes]] = {}
    for rec in records:
        for index_id, key in rec.entry_deletes:
            entries[(index_id, key)] = None
        for doc_id in rec.doc_deletes:
            docs[doc_id] = None
        for doc_id, table, value in rec.doc_puts:
            docs[doc_id] = (table, rec.ts, value)
        for index_id, key, doc_id in rec.entry_puts:
            entries[(index_id, key)] = doc_id
        for sid, req, value in rec.mutation_results:
            results.setdefault((sid, req), (rec.ts, value))
    dd = [d for d, v in docs.items() if v is None]
    puts = [(d, v) for d, v in docs.items() if v is not None]
    ed = [k for k, v in entries.items() if v is None]
    ep = [(k, v) for k, v in entries.items() if v is not None]
    last = records[-1].ts
    await conn.execute(
        SQL["apply"], dd,
        [d for d, _ in puts], [v[0] for _, v in puts], [v[1] for _, v in puts], [v[2] for _, v in puts],
        [k[0] for k in ed], [k[1] for k in ed],
        [k[0] for k, _ in ep], [k[1] for k, _ in ep], [v for _, v in ep],
        [k[0] for k in results], [k[1] for k in results], [v[0] for v in results.values()],
        [v[1] for v in results.values()],
        [r.ts for r in records] if payloads else [], [node] * len(payloads), payloads,
        last, str(last))
    ops = [op for rec in records for op in rec.search]
    if ops:
        statements: list[tuple[str, tuple[Any, ...]]] = []
        search.write(statements, ops)
        for sql, args in statements:
            await conn.execute(sql, *args)


async def _reset(conn: Any) -> None:
    """Connections come back to the pool clean (a read ends with ROLLBACK before release); asyncpg's
    default reset would cost one more round trip per snapshot."""


class PostgresPersistence(Persistence):
    """PostgreSQL through an asyncpg pool. `url`: postgresql://user:password@host:port/database."""

    inline_reads = False
    shared = True

    def __init__(self, url: str, *, pool_size: int = 24, node_id: str | None = None, **_: object) -> None:
        self.url = url
        self.node_id = node_id or uuid.uuid4().hex[:12]
        self.application_name = f"{APPLICATION_NAME} {self.node_id}"
        self._pool_size = pool_size
        self.pool: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        # Set by a cluster committer: a snapshot newer than what this node has ingested waits for
        # `catch_up(ts)` first, so the write log and history cover every snapshot handed out.
        self.caught_up_ts = 0
        # `catch_up(ts, read)`: `read(after)` returns the commit rows after `after` that the
        # snapshot sees (read on its own connection: catching up never waits for the pool).
        self.catch_up: Callable[[int, Callable[[int], Awaitable[Any]]], Awaitable[None]] | None = None
        self._listener: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop the pool belongs to
        # Full-text indexes as tsvector + GIN, vector indexes with pgvector (engine.search.pg_store).
        self.pg_search = PostgresSearchStore(self)
        self.search: SearchStore = self.pg_search

    def __repr__(self) -> str:
        return f"PostgresPersistence({describe_url(self.url)})"

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Connect and create the tables (EngineError DatabaseUnavailable, with the reason and no
        password, when the URL cannot be used)."""
        self.loop = asyncio.get_running_loop()
        try:
            self.pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self._pool_size, command_timeout=60,
                server_settings={"application_name": self.application_name,
                                 # pgvector's HNSW search breadth for vector searches (engine.search.pg_store;
                                 # a placeholder until the extension loads, harmless without it)
                                 "hnsw.ef_search": str(HNSW_EF_SEARCH)},
                timeout=10, reset=_reset)
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_SCHEMA)
                    for ddl in SCHEMA:
                        await conn.execute(ddl)
            await self.search.open()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, asyncio.TimeoutError) as e:
            if self.pool is not None:
                self.pool.terminate()
                self.pool = None
            reason = _redact(str(e) or type(e).__name__, self.url)
            raise EngineError("DatabaseUnavailable", f"Cannot use the PostgreSQL database {describe_url(self.url)}: "
                              f"{reason}") from None

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self.pool is not None:
            try:
                await asyncio.wait_for(self.pool.close(), 10)
            except (asyncio.TimeoutError, Exception):
                self.pool.terminate()
            self.pool = None

    def _background(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_read(self, conn: Any) -> None:
        try:
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception):
                await self.pool.release(conn)

    # -- reads ---------------------------------------------------------------------------------
    async def snapshot(self, *, private: bool = False) -> Snapshot:
        try:
            conn = await self.pool.acquire()
        except CONNECTION_ERRORS as e:
            raise unavailable(e) from None
        try:
            await _begin_read(conn)
            ts = await conn.fetchval(SQL["clock_get"])
        except BaseException as e:
            await self._end_read(conn)
            if isinstance(e, CONNECTION_ERRORS):
                raise unavailable(e) from None
            raise
        if ts > self.caught_up_ts and self.catch_up is not None:
            try:
                await self.catch_up(ts, lambda after: _commits_after(conn, after))
            except BaseException as e:
                await self._end_read(conn)
                if isinstance(e, CONNECTION_ERRORS):
                    raise unavailable(e) from None
                raise
        return _PgSnapshot(self, conn, ts)

    @staticmethod
    async def commits_after_on(conn: Any, ts: int) -> tuple[int, list[tuple[int, bytes]]]:
        """(trim horizon, commit rows after `ts`) read on `conn`."""
        return await _commits_after(conn, ts)

    @staticmethod
    async def clock_on(conn: Any) -> int:
        return await conn.fetchval(SQL["clock_get"])

    # -- commits -------------------------------------------------------------------------------
    def blob_store(self) -> BlobStore:
        return PostgresBlobStore(self)

    async def connect(self) -> Any:
        """A connection of its own (a node's committer and listener keep one each)."""
        return await asyncpg.connect(self.url, server_settings={"application_name": self.application_name},
                                     timeout=10, command_timeout=60)

    async def write(self, batch: list[CommitRecord]) -> None:
        """Apply a group of commits as they are (their timestamps given), under the clock lock.
        The engine's cluster committer commits through `CommitSession` instead; this is for
        callers outside it (start-up, tools)."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.fetchval(SQL["clock_lock"])
                await _apply(conn, batch, [], self.node_id, self.search)
        self.search.committed(batch)

    # -- catalog -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def startup_lock(self) -> AsyncIterator[None]:
        """Held while a node loads and updates the catalog at start: nodes starting together take
        turns (table numbers and index ids are allocated from what the catalog holds)."""
        conn = await self.pool.acquire()
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_STARTUP)
            try:
                yield
            finally:
                await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_STARTUP)
        finally:
            await self.pool.release(conn)

    async def live_peers(self) -> int:
        """How many other engine nodes are connected to this database now."""
        async with self.pool.acquire() as conn:
            return await conn.fetchval(SQL["peers"], self.application_name)

    async def heartbeat(self, runs: list[str], timeout_s: float) -> set[str] | None:
        """Record this node alive now (by the database's clock) with the runs it holds; the runs
        held by every node heard from within `timeout_s` (this one included)."""
        with reachable():
            async with self.pool.acquire() as conn:
                await conn.execute(SQL["heartbeat"], self.node_id, runs)
                return {r[0] for r in await conn.fetch(SQL["claimed_runs"], float(timeout_s))}

    def env_changed(self) -> None:
        if self.on_env_change is not None:
            self.on_env_change()

    async def env_vars(self) -> dict[str, str]:
        with reachable():
            async with self.pool.acquire() as conn:
                return await _env_vars(conn)

    async def update_env(self, changes: list[tuple[str, str | None]]) -> None:
        with reachable():
            async with self.pool.acquire() as conn:
                await _update_env(conn, changes)

    async def leave(self) -> None:
        """This node stops: its heartbeat row goes (and rows of nodes gone for a day)."""
        with reachable():
            await self.pool.execute(SQL["forget_nodes"], self.node_id)

    async def expire_mutation_results(self, before_ts: int, limit: int) -> int:
        with reachable():  # (nodes may expire the same rows at once: a row deleted meanwhile is skipped)
            return await self.pool.fetchval(SQL["mutation_results_expire"], before_ts, limit)

    async def load_catalog(self) -> tuple[int, dict[str, int], dict[tuple[str, str], tuple[int, list[str]]]]:
        async with self.pool.acquire() as conn:
            max_ts = await conn.fetchval(SQL["clock_get"])
            tables = {r[0]: r[1] for r in await conn.fetch(SQL["tables_all"])}
            indexes = {(r[1], r[2]): (r[0], r[3].split("\x1f") if r[3] else [])
                       for r in await conn.fetch(SQL["indexes_all"])}
        return max_ts, tables, indexes

    async def add_table(self, name: str, number: int) -> None:
        await self.pool.execute(SQL["table_add"], name, number)

    async def renumber_tables(self, numbers: dict[str, int]) -> None:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                for i, name in enumerate(numbers):
                    await conn.execute(SQL["table_renumber"], -1 - i, name)
                for name, number in numbers.items():
                    await conn.execute(SQL["table_renumber"], number, name)

    async def add_index(self, index_id: int, table: str, name: str, fields: list[str]) -> None:
        await self.pool.execute(SQL["index_add"], index_id, table, name, "\x1f".join(fields))

    async def drop_index(self, index_id: int) -> None:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute(SQL["index_clear"], index_id)
                await conn.execute(SQL["index_drop"], index_id)

    async def table_documents(self, table_number: int) -> AsyncIterator[tuple[str, bytes]]:
        after = ""
        while True:
            async with self.pool.acquire() as conn:
                rows = await conn.fetch(SQL["docs_page"], table_number, after, 1000)
            for r in rows:
                yield r[0], r[1]
            if len(rows) < 1000:
                return
            after = rows[-1][0]

    async def put_entries(self, entries: list[tuple[int, bytes, str]]) -> None:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.executemany(SQL["entry_put"], entries)

    async def table_is_empty(self, table_number: int) -> bool:
        return await self.pool.fetchval(SQL["table_any"], table_number) is None

    async def index_is_empty(self, index_id: int) -> bool:
        return await self.pool.fetchval(SQL["index_any"], index_id) is None

    async def restore(self, ts: int, tables: dict[str, int], indexes: list[tuple[int, str, str, list[str]]],
                      docs: list[tuple[str, int, bytes]], entries: list[tuple[int, bytes, str]]) -> None:
        """Replace everything in one transaction, under the clock lock (other nodes' commits wait)."""
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                clock = await conn.fetchval(SQL["clock_lock"])
                for table in ("documents", "index_entries", "mutation_results", "tables_", "indexes_"):
                    await conn.execute(f"DELETE FROM {table}")
                await conn.executemany(SQL["table_add"], list(tables.items()))
                await conn.executemany(SQL["index_add"], [(i, t, n, "\x1f".join(f)) for i, t, n, f in indexes])
                await conn.executemany(SQL["doc_put"], [(i, t, ts, v) for i, t, v in docs])
                await conn.executemany(SQL["entry_put"], entries)
                await self.pg_search.reset(conn)  # search indexes are backfilled anew at the next start
                await conn.execute("UPDATE clock SET ts = $1 WHERE id = 1", max(ts, clock))


async def _env_vars(conn: Any) -> dict[str, str]:
    return {r[0]: r[1] for r in await conn.fetch(SQL["env_all"])}


async def _update_env(conn: Any, changes: list[tuple[str, str | None]]) -> None:
    async with conn.transaction():
        for name, value in changes:
            if value is None:
                await conn.execute(SQL["env_delete"], name)
            else:
                await conn.execute(SQL["env_put"], name, value)
        await conn.execute(SQL["env_notify"])  # delivered at commit


async def _connect_for_env(url: str) -> Any:
    try:
        conn = await asyncpg.connect(url, server_settings={"application_name": f"{APPLICATION_NAME}-cli"}, timeout=10)
        await conn.execute(ENV_TABLE)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ValueError, asyncio.TimeoutError) as e:
        raise EngineError("DatabaseUnavailable", f"Cannot use the PostgreSQL database {describe_url(url)}: "
                          f"{_redact(str(e) or type(e).__name__, url)}") from None
    return conn


async def env_vars_at(url: str) -> dict[str, str]:
    """The environment variables stored in the database at `url` (the `env` command, no node needed)."""
    conn = await _connect_for_env(url)
    try:
        return await _env_vars(conn)
    finally:
        await conn.close()


async def update_env_at(url: str, changes: list[tuple[str, str | None]]) -> None:
    """Set (value) or remove (None) variables in the database at `url`; running nodes hear of it."""
    conn = await _connect_for_env(url)
    try:
        await _update_env(conn, changes)
    finally:
        await conn.close()


def listen_forever(store: PostgresPersistence, on_notify: Callable[[str | None], None],
                   on_connected: Callable[[], None]) -> asyncio.Task[None]:
    """Keep a LISTEN connection open (reconnecting with backoff); `on_notify` on every notification,
    `on_connected` after each (re)connect (the caller catches up on what it may have missed).
    Environment variable changes (ENV_CHANNEL) call `store.on_env_change`, also after a reconnect."""

    async def run() -> None:
        delay = 0.05
        while True:
            conn = None
            try:
                conn = await store.connect()
                lost = asyncio.get_running_loop().create_future()
                conn.add_termination_listener(lambda _c: lost.done() or lost.set_result(None))
                await conn.add_listener(NOTIFY_CHANNEL, lambda _c, _pid, _ch, payload: on_notify(payload))
                await conn.add_listener(ENV_CHANNEL, lambda *_: store.env_changed())
                delay = 0.05
                on_connected()
                store.env_changed()
                while not lost.done():
                    try:
                        await asyncio.wait_for(asyncio.shield(lost), 5.0)
                    except asyncio.TimeoutError:
                        await conn.execute("SELECT 1")  # a dead connection shows up here
                        on_notify(None)  # and a periodic catch-up, in case a notification was missed
            except asyncio.CancelledError:
                if conn is not None:
                    conn.terminate()
                raise
            except Exception as e:
                log.warning("PostgreSQL LISTEN connection lost (%s); reconnecting", _redact(str(e), store.url))
            if conn is not None:
                conn.terminate()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    task = asyncio.get_running_loop().create_task(run(), name="pg-listen")
    store._listener = task
    return task


# A blob older than this with no row is an orphan (an upload cut off before its commit): no upload
# takes this long between storing its bytes and committing its row.
BLOB_ORPHAN_AGE_NS = 3600 * 10**9


class PostgresBlobStore(BlobStore):
    """File storage's bytes in the `blobs` table, so a file stored through one node is served by
    every node. A `put` is its own committed statement (durable when it returns), as the blob
    store contract asks: the `_storage` row follows in a commit of its own."""

    def __init__(self, persistence: PostgresPersistence) -> None:
        self._store = persistence

    async def put(self, key: str, data: bytes) -> None:
        with reachable():
            await self._store.pool.execute(
                "INSERT INTO blobs (key, data, created) VALUES ($1, $2, $3) "
                "ON CONFLICT (key) DO UPDATE SET data = EXCLUDED.data", check_blob_key(key), data, time.time_ns())

    async def get(self, key: str) -> bytes | None:
        with reachable():
            return await self._store.pool.fetchval("SELECT data FROM blobs WHERE key = $1", check_blob_key(key))

    async def delete(self, key: str) -> bool:
        with reachable():
            done = await self._store.pool.execute("DELETE FROM blobs WHERE key = $1", check_blob_key(key))
        return done.endswith(" 1")

    async def orphan_candidates(self) -> list[str]:
        with reachable():
            rows = await self._store.pool.fetch("SELECT key FROM blobs WHERE created < $1",
                                                time.time_ns() - BLOB_ORPHAN_AGE_NS)
        return [row[0] for row in rows]
