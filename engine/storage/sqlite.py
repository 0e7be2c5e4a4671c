"""SQLite, the embedded default store (engine.storage.base's contract): the only module that talks to
SQLite (and the only importer of aiosqlite).

Concurrency model:
- One writer. All writes go through `SqlitePersistence.write()` on a single aiosqlite connection
  (its own thread), one SQLite transaction per group commit. Nothing else writes.
- Many readers. A `Snapshot` is a read transaction on a pooled plain sqlite3 connection used from the
  event-loop thread; SQLite's WAL gives it a stable view while the writer commits. Reads are short
  B-tree walks, so running them inline costs less than a thread hop per read.
- The snapshot's `ts` is read from `meta` inside the same read transaction, so the data it sees is
  exactly the state after the commit with that timestamp.
- Reads never suspend (`inline_reads`): the coroutines of the contract complete at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import struct
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from ..errors import EngineError
from .base import CommitRecord, Persistence, Row, Snapshot, after, resume_key
from .sql import render

if TYPE_CHECKING:
    from ..search.sqlite_store import SqliteSearchStore

__all__ = ["DatabaseLock", "DocCache", "SqlitePersistence", "database_holder", "read_only_dump"]

log = logging.getLogger("engine.storage")
_U32 = struct.Struct("=I")


# The store checkpoints the WAL itself (SqlitePersistence._checkpoint, on the writer's thread) once
# the group commits since the last one appended this many frames (pages) to the log, whatever the
# number of commits that carried them; SQLite's automatic checkpoint is off (see `open`).
CHECKPOINT_EVERY_FRAMES = 3_300
FALLBACK_CHECKPOINT_WRITES = 32
# The WAL file is truncated to this size when the log restarts.
WAL_SIZE_LIMIT = 64 << 20


# A group commit of at most this many rows (documents, index entries, results) is written on the
# event loop's thread (SqlitePersistence._write_locked).
INLINE_WRITE_ROWS = 2000


def _rows(rec: CommitRecord) -> int:
    return (len(rec.doc_puts) + len(rec.doc_deletes) + len(rec.entry_puts) + len(rec.entry_deletes)
            + len(rec.mutation_results))


def _checkpoint_passive(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


class DocCache:
    """The latest durable value of recently used documents, valid for a snapshot whose ts equals
    `version`. Written through by every group commit and filled by reads at that ts.

    Why: every commit makes each reader connection drop its SQLite page cache at its next read
    transaction, and the pages of recently written documents live in the WAL (read(), not mmap):
    a `with_index(...).first()` re-read ~8 pages per call. Here a hot document is a dict lookup.
    Bounded by bytes; when full, the oldest inserted entries go first (writes re-insert, so
    documents that keep changing stay)."""

    __slots__ = ("rows", "size", "max_bytes", "version")

    ENTRY_OVERHEAD = 120  # dict slot, tuple, key string (an estimate; the bound is on the total)

    def __init__(self, max_bytes: int) -> None:
        self.rows: dict[str, tuple[int, bytes]] = {}
        self.size = 0
        self.max_bytes = max_bytes
        self.version = -1  # no snapshot matches until the store says which ts it holds

    def put(self, doc_id: str, row: tuple[int, bytes]) -> None:
        rows = self.rows
        old = rows.pop(doc_id, None)
        if old is not None:
            self.size -= len(old[1]) + self.ENTRY_OVERHEAD
        rows[doc_id] = row
        self.size += len(row[1]) + self.ENTRY_OVERHEAD
        if self.size > self.max_bytes:
            self._evict()

    def drop(self, doc_id: str) -> None:
        old = self.rows.pop(doc_id, None)
        if old is not None:
            self.size -= len(old[1]) + self.ENTRY_OVERHEAD

    def _evict(self) -> None:
        # One pass from the oldest entry. (Popping `next(iter(rows))` in a loop is quadratic: each
        # `iter` walks the slots the previous pops left empty; with ~200 000 entries one eviction
        # stalled the event loop for a second, past a query's time limit.)
        rows = self.rows
        target = self.max_bytes * 3 // 4
        size = self.size
        gone = []
        for doc_id, row in rows.items():
            if size <= target:
                break
            size -= len(row[1]) + self.ENTRY_OVERHEAD
            gone.append(doc_id)
        for doc_id in gone:
            del rows[doc_id]
        self.size = size

    def apply(self, batch: list[CommitRecord]) -> None:
        """A group commit landed: the documents it wrote, at its last ts."""
        if self.max_bytes <= 0:
            return
        for rec in batch:
            for doc_id, table, value in rec.doc_puts:
                self.put(doc_id, (table, value))
            for doc_id in rec.doc_deletes:
                self.drop(doc_id)
        self.version = batch[-1].ts

    def reset(self, version: int) -> None:
        self.rows.clear()
        self.size = 0
        self.version = version


_MISSES_BEFORE_JOIN = 2  # a cold scan stops fetching documents one by one and joins instead


class _SharedRead:
    """One read transaction on a pooled connection, shared by every snapshot taken while no commit
    has landed since it began (opening one per function call was ~7% of a small mutation). Closed
    when it is no longer current and its last user lets go."""

    __slots__ = ("owner", "conn", "ts", "gen", "refs")

    def __init__(self, owner: SqlitePersistence, conn: sqlite3.Connection) -> None:
        self.owner = owner
        self.conn: sqlite3.Connection = conn
        self.gen = owner._write_gen
        self.refs = 0
        conn.execute("BEGIN")
        row = conn.execute(owner._stmts["meta_get"], ("ts",)).fetchone()
        self.ts = row[0] if row else 0

    def release(self) -> None:
        self.refs -= 1
        if self.refs == 0 and self.owner._shared is not self:
            self.close()

    def close(self) -> None:
        if self.conn is None:
            return
        # Pages are read whole (fetchall), so no statement is left unfinished to keep this read
        # transaction -- and its old view -- alive past COMMIT.
        self.conn.execute("COMMIT")
        self.owner._release(self.conn)
        self.conn = None  # type: ignore[assignment]


class _SqliteSnapshot(Snapshot):
    __slots__ = ("_read", "_conn", "_stmts", "ts", "_cache")
    inline_reads = True

    def __init__(self, read: _SharedRead) -> None:
        read.refs += 1
        self._read: _SharedRead = read
        self._conn = read.conn
        self._stmts = read.owner._stmts
        self._cache = read.owner.cache
        self.ts = read.ts

    async def get(self, doc_id: str) -> tuple[int, bytes] | None:
        return self.get_now(doc_id)

    def get_now(self, doc_id: str) -> tuple[int, bytes] | None:
        cache = self._cache
        if cache.version == self.ts:  # the cache holds exactly this snapshot's state
            row = cache.rows.get(doc_id)
            if row is not None:
                return row
            row = self._conn.execute(self._stmts["doc_get"], (doc_id,)).fetchone()
            if row is not None:
                cache.put(doc_id, row)
            return row
        return self._conn.execute(self._stmts["doc_get"], (doc_id,)).fetchone()

    async def scan_page(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                        limit: int) -> tuple[list[Row], bytes | None]:
        return self.scan_page_now(index_id, lo, hi, desc, limit)

    def scan_page_now(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                      limit: int) -> tuple[list[Row], bytes | None]:
        st, conn, cache, ts = self._stmts, self._conn, self._cache, self.ts
        out: list[Row] = []
        if cache.version == ts:
            # Keys from the index, documents from the cache; a cold range (a few misses) reads the
            # rest of the page with the join instead of one lookup per row.
            keys = conn.execute(st["page_keys_desc" if desc else "page_keys_asc"], (index_id, lo, hi, limit)).fetchall()
            rows = cache.rows
            misses = 0
            for n, (key, doc_id) in enumerate(keys):
                row = rows.get(doc_id)
                if row is None:
                    misses += 1
                    if misses > _MISSES_BEFORE_JOIN and len(keys) - n > _MISSES_BEFORE_JOIN:
                        rest = (lo, after(key)) if desc else (key, hi)  # from this row on
                        out.extend(conn.execute(st["page_desc" if desc else "page_asc"],
                                                (index_id, *rest, limit - n)).fetchall())
                        return out, resume_key(out, limit)
                    row = conn.execute(st["doc_get"], (doc_id,)).fetchone()
                    cache.put(doc_id, row)
                out.append((key, doc_id, row[1]))
            return out, resume_key(out, limit)
        out = conn.execute(st["page_desc" if desc else "page_asc"], (index_id, lo, hi, limit)).fetchall()
        return out, resume_key(out, limit)

    async def mutation_result(self, session_id: str, request_id: int) -> tuple[int, bytes] | None:
        return self._conn.execute(self._stmts["mutation_result_get"], (session_id, request_id)).fetchone()

    def close(self) -> None:
        if self._read is not None:
            self._read.release()
            self._read = None  # type: ignore[assignment]


class DatabaseLock:
    """One process owns a database file: an exclusive `flock` on `<db>.lock`, held while the store
    is open (the kernel drops it when the process dies, kill -9 included). The file says who holds
    it — pid, and once it serves, its URL — so a refusal can name the holder."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self, purpose: str) -> None:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise EngineError("DatabaseInUse", f"The database {self.path.with_suffix('')} is in use by another "
                              f"engine process ({holder}); stop it first, or use its URL (--url).",
                              status=409) from None
        self._fd = fd
        self.describe(purpose=purpose)

    def describe(self, **info: Any) -> None:
        """Record what this holder is doing (`url=...` once serving)."""
        if self._fd is None:
            return
        import json

        current = {"pid": os.getpid()}
        try:
            current.update(json.loads(os.pread(self._fd, 4096, 0) or b"{}"))
        except ValueError:
            pass
        current.update(info, pid=os.getpid())
        data = json.dumps(current).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None


def _read_holder(fd: int) -> str:
    import json

    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        info = {}
    parts = [f"pid {info['pid']}"] if "pid" in info else []
    if info.get("url"):
        parts.append(f"serving {info['url']}")
    elif info.get("purpose"):
        parts.append(str(info["purpose"]))
    return ", ".join(parts) or "unknown holder"


def database_holder(db_path: str | os.PathLike[str]) -> str | None:
    """Who holds `db_path` (a description), or None when no process does."""
    import fcntl

    lock = Path(db_path).with_name(Path(db_path).name + ".lock")
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class SqlitePersistence(Persistence):
    """SQLite in WAL mode. `path=":memory:"` uses a private temporary file, removed on close:
    snapshot isolation between the writer and readers needs WAL, which needs a file."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL",
                 mmap_bytes: int = 0, cache_bytes: int = 32 << 20, writer_cache_bytes: int = 2 << 20,
                 purpose: str = "open") -> None:
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if str(path) == ":memory:":
            self._tempdir = tempfile.TemporaryDirectory(prefix="convex-mem-")
            path = Path(self._tempdir.name) / "db.sqlite3"
        self.path = Path(path)
        # NORMAL in WAL mode survives a process crash (kill -9): a commit is in the OS page cache
        # before write() returns. FULL also survives power loss, at an fsync per group commit.
        self._synchronous = synchronous
        # Snapshot readers may map the first `mmap_bytes` of the file instead of read()ing each page
        # their private cache misses. Off by default: a read transaction that begins after any
        # commit drops the connection's mapping with its page cache, so under steady writes every
        # page is a fresh page fault (bench.transfer_inprocess: ~11% more CPU per transfer mapped,
        # `--mmap-bytes`), while only a read-mostly database gains (bench.core --mmap-bytes: the
        # 10-row query on 1 000 000 rows 0.095 ms mapped, 0.108 ms read()). See README "Choices".
        self._mmap_bytes = mmap_bytes
        # The writer's page cache keeps every page it wrote until the cache is full, and writes keep
        # adding pages (each idempotent mutation stores its result): a 64 MiB cache grew the
        # server's RSS by ~160 bytes per mutation for as long as a soak ran. SQLite's default size
        # (2 MiB) levels off within minutes; the pages it drops are in the OS page cache anyway.
        self._writer_cache_bytes = writer_cache_bytes
        self._schema, self._stmts = render("sqlite")
        self._writer: aiosqlite.Connection | None = None
        self._write_gen = 0  # bumped after every write: a shared read transaction older than it is stale
        self.cache = DocCache(cache_bytes)  # latest durable documents (0 bytes turns it off)
        self._shared: _SharedRead | None = None
        self._idle: list[sqlite3.Connection] = []
        self._all: list[sqlite3.Connection] = []
        # The writer connection has one user at a time: a catalog change (dev-mode reload, a new
        # table) must never interleave its statements with a group commit's open transaction.
        self._write_lock = asyncio.Lock()
        self._frames_at_checkpoint = 0  # the log's frame count when the last checkpoint ran
        self._writes_since_checkpoint = self._rows_since_checkpoint = 0  # (without a wal-index)
        self._shm_fd: int | None = None  # <db>-shm, read for the log's frame count (_log_frames)
        self.lock = DatabaseLock(self.path)
        self._purpose = purpose
        from ..search.sqlite_store import SqliteSearchStore  # (engine.search imports storage types)

        self.sqlite_search: SqliteSearchStore = SqliteSearchStore(self)
        self.search = self.sqlite_search

    # -- lifecycle -----------------------------------------------------------------------------
    async def open(self) -> None:
        """Open the file, owning it (EngineError DatabaseInUse when another process does)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock.acquire(self._purpose)
        try:
            # check_same_thread=False: small group commits run on the event loop's thread (see
            # _write_locked); everything else on aiosqlite's, never both at once (_write_lock).
            self._writer = await aiosqlite.connect(self.path, isolation_level=None, check_same_thread=False)
        except BaseException:
            self.lock.release()
            raise
        # wal_autocheckpoint=0: SQLite's own checkpoint runs inside a COMMIT once the log holds
        # 1 000 pages, so on the event loop (small group commits are written there), and then in
        # every commit after it: two fdatasyncs and a copy of the group's pages with the loop
        # blocked. The store's checkpoint (`_after_write`) runs on the writer's thread instead,
        # under the write lock, so it copies the whole log and the next write restarts it.
        for pragma in ("journal_mode=WAL", f"synchronous={self._synchronous}", "foreign_keys=OFF",
                       "busy_timeout=10000", f"cache_size={-(self._writer_cache_bytes >> 10)}",
                       f"journal_size_limit={WAL_SIZE_LIMIT}", "wal_autocheckpoint=0"):
            await self._writer.execute(f"PRAGMA {pragma}")
        for ddl in self._schema:
            await self._writer.execute(ddl)
        await self.search.open()

    async def close(self) -> None:
        self.search.close()
        self._shared = None
        for conn in self._all:
            conn.close()
        self._all.clear()
        self._idle.clear()
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._shm_fd is not None:
            os.close(self._shm_fd)
            self._shm_fd = None
        self.lock.release()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    # -- reads ---------------------------------------------------------------------------------
    inline_reads = True

    async def snapshot(self, *, private: bool = False) -> Snapshot:
        return self.snapshot_now(private=private)

    def snapshot_now(self, *, private: bool = False) -> _SqliteSnapshot:
        """The latest durable state. Snapshots taken between two writes share one read transaction;
        a `private` one has a connection of its own (for use from another thread)."""
        if private:
            return _SqliteSnapshot(_SharedRead(self, self._idle.pop() if self._idle else self._new_reader()))
        shared = self._shared
        if shared is None or shared.gen != self._write_gen:
            conn = self._idle.pop() if self._idle else self._new_reader()
            fresh = _SharedRead(self, conn)
            self._shared = fresh
            if shared is not None and shared.refs == 0:
                shared.close()
            shared = fresh
        return _SqliteSnapshot(shared)

    def _stale(self) -> None:
        """A write landed: the next snapshot opens a new read transaction."""
        self._write_gen += 1
        shared = self._shared
        if shared is not None and shared.refs == 0:
            self._shared = None
            shared.close()

    def _new_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA query_only=1")
        conn.execute("PRAGMA cache_size=-32768")
        if self._mmap_bytes:
            conn.execute(f"PRAGMA mmap_size={int(self._mmap_bytes)}")
        self._all.append(conn)
        return conn

    def _release(self, conn: sqlite3.Connection) -> None:
        if len(self._idle) < 32:
            self._idle.append(conn)
        else:
            self._all.remove(conn)
            conn.close()

    async def table_documents(self, table_number: int) -> AsyncIterator[tuple[str, bytes]]:
        snap = self.snapshot_now()
        try:
            cursor = snap._conn.execute(self._stmts["docs_of_table"], (table_number,))
            try:
                while rows := cursor.fetchmany(1000):
                    for row in rows:
                        yield row
            finally:
                cursor.close()
        finally:
            snap.close()

    async def table_is_empty(self, table_number: int) -> bool:
        return self._first_row("table_any", table_number) is None

    async def index_is_empty(self, index_id: int) -> bool:
        return self._first_row("index_any", index_id) is None

    def _first_row(self, statement: str, arg: int) -> Any:
        # Rare (start-up checks): a private read of the current state, not the shared snapshot.
        conn = self._idle.pop() if self._idle else self._new_reader()
        try:
            cursor = conn.execute(self._stmts[statement], (arg,))
            try:
                return cursor.fetchone()
            finally:
                cursor.close()
        finally:
            self._release(conn)

    # -- writes --------------------------------------------------------------------------------
    async def write(self, batch: list[CommitRecord]) -> None:
        """Apply a group of commits atomically, in order, in one SQLite transaction."""
        async with self._write_lock:
            self._drop_idle_shared()
            try:
                rows = await self._write_locked(batch)
                self.cache.apply(batch)
                self.search.committed(batch)  # vector graphs and index states follow, before readers
            except BaseException:
                self.cache.reset(-1)  # we cannot tell what the store holds now: trust nothing cached
                self.search.rolled_back()
                raise
            finally:
                self._stale()
            await self._after_write(rows)

    def _log_frames(self) -> int:
        """The frames in the WAL now: mxFrame of the wal-index header, which SQLite keeps in the
        memory-mapped `<db>-shm` file (its WAL format: a native-order u32 at byte 16). Read with one
        pread under the write lock, so no commit is changing it. -1 if it cannot be read."""
        try:
            if self._shm_fd is None:
                self._shm_fd = os.open(f"{self.path}-shm", os.O_RDONLY)
            head = os.pread(self._shm_fd, 4, 16)
        except OSError:
            return -1
        return _U32.unpack(head)[0] if len(head) == 4 else -1

    async def _after_write(self, rows: int) -> None:
        """After a committed write of `rows` rows (under the write lock): checkpoint once the log
        has grown by CHECKPOINT_EVERY_FRAMES since the last checkpoint. (The log restarts from
        frame 0 after a complete one; if old readers kept it from restarting, it grows on and is
        copied again after as many new frames.) Without a readable wal-index: every
        FALLBACK_CHECKPOINT_WRITES writes, or once they wrote CHECKPOINT_EVERY_FRAMES rows."""
        frames = self._log_frames()
        self._writes_since_checkpoint += 1
        self._rows_since_checkpoint += rows
        if frames < 0:
            due = (self._writes_since_checkpoint >= FALLBACK_CHECKPOINT_WRITES
                   or self._rows_since_checkpoint >= CHECKPOINT_EVERY_FRAMES)
        else:
            if frames < self._frames_at_checkpoint:  # the log restarted
                self._frames_at_checkpoint = 0
            due = frames - self._frames_at_checkpoint >= CHECKPOINT_EVERY_FRAMES
        if due:
            self._frames_at_checkpoint = max(frames, 0)
            self._writes_since_checkpoint = self._rows_since_checkpoint = 0
            try:
                await self._checkpoint()
            except sqlite3.Error:  # the write is committed: a failed copy must not fail it
                log.warning("WAL checkpoint failed; the next one retries", exc_info=True)

    def _drop_idle_shared(self) -> None:
        """End the shared read transaction if no snapshot uses it: SQLite restarts the WAL from its
        beginning only when a write begins while no reader still reads from the WAL."""
        shared = self._shared
        if shared is not None and shared.refs == 0:
            self._shared = None
            shared.close()

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database file. A checkpoint run while a read transaction of an
        older state is open never copies the whole log, and a log never fully copied is never
        restarted: under steady writes, with SQLite's automatic checkpoint alone, the WAL grew
        without bound (550 MB in two minutes at 250 mutations/s). Run right after a write whose
        old readers are gone, with the next write waiting for it (the write lock), this one copies
        everything, and the next write restarts the log (journal_size_limit truncates the file)."""
        w = self._writer
        assert w is not None
        self._drop_idle_shared()
        await w._execute(_checkpoint_passive, w._conn)

    async def _write_locked(self, batch: list[CommitRecord]) -> int:
        w = self._writer
        assert w is not None, "persistence is not open"
        # A small group commit runs right here, on the event loop: in WAL mode with
        # synchronous=NORMAL a commit is a few page writes into the OS cache, no fsync, and done on
        # the writer thread it cost 6x more (7.7 ms vs 1.3 ms for ~15 transfers under load): that
        # thread re-takes the GIL after every statement, each time waiting for the busy event loop
        # to let go of it. A large one (an import, a bulk mutation) would hold the loop too long: it
        # is one function run on aiosqlite's connection thread (one round trip per group;
        # aiosqlite's `execute` queues a function the same way, `_execute` is that mechanism,
        # pinned by our version range). Checkpoints, which fsync, always run there too.
        rows = sum(_rows(rec) for rec in batch)
        rows += sum(self.sqlite_search.write_rows(rec.search) for rec in batch if rec.search)
        if rows <= INLINE_WRITE_ROWS:
            self._write_batch(w._conn, batch)
        else:
            await w._execute(self._write_batch, w._conn, batch)
        return rows

    def _write_batch(self, conn: sqlite3.Connection, batch: list[CommitRecord]) -> None:
        st = self._stmts
        conn.execute("BEGIN IMMEDIATE")
        try:
            for rec in batch:
                # Deletes before puts: an entry whose key changed is removed from its old place.
                if rec.entry_deletes:
                    conn.executemany(st["entry_delete"], rec.entry_deletes)
                if rec.doc_deletes:
                    conn.executemany(st["doc_delete"], [(d,) for d in rec.doc_deletes])
                if rec.doc_puts:
                    conn.executemany(st["doc_put"], [(i, t, rec.ts, v) for i, t, v in rec.doc_puts])
                if rec.entry_puts:
                    conn.executemany(st["entry_put"], rec.entry_puts)
                if rec.mutation_results:
                    conn.executemany(st["mutation_result_put"],
                                     [(sid, r, rec.ts, v) for sid, r, v in rec.mutation_results])
                if rec.search:
                    self.search.write(conn, rec.search)
            conn.execute(st["meta_put"], ("ts", batch[-1].ts))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- catalog -------------------------------------------------------------------------------
    async def load_catalog(self) -> tuple[int, dict[str, int], dict[tuple[str, str], tuple[int, list[str]]]]:
        w = self._writer
        assert w is not None
        st = self._stmts
        row = await (await w.execute(st["meta_get"], ("ts",))).fetchone()
        tables = {name: number for name, number in await w.execute_fetchall(st["tables_all"])}
        indexes = {
            (table, name): (index_id, fields.split("\x1f") if fields else [])
            for index_id, table, name, fields in await w.execute_fetchall(st["indexes_all"])
        }
        max_ts = row[0] if row else 0
        self.cache.reset(max_ts)
        return max_ts, tables, indexes

    async def add_table(self, name: str, number: int) -> None:
        assert self._writer is not None
        async with self._write_lock:
            await self._writer.execute(self._stmts["table_add"], (name, number))
            self._stale()

    async def renumber_tables(self, numbers: dict[str, int]) -> None:
        """Give (empty) tables new numbers, in one transaction (a live import: engine.transfers)."""
        assert self._writer is not None
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                for i, name in enumerate(numbers):  # through unused negatives: numbers are UNIQUE
                    await self._writer.execute(self._stmts["table_renumber"], (-1 - i, name))
                for name, number in numbers.items():
                    await self._writer.execute(self._stmts["table_renumber"], (number, name))
                await self._writer.execute("COMMIT")
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise

    async def add_index(self, index_id: int, table: str, name: str, fields: list[str]) -> None:
        assert self._writer is not None
        async with self._write_lock:
            await self._writer.execute(self._stmts["index_add"], (index_id, table, name, "\x1f".join(fields)))
            self._stale()

    async def drop_index(self, index_id: int) -> None:
        assert self._writer is not None
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            await self._writer.execute(self._stmts["index_clear"], (index_id,))
            await self._writer.execute(self._stmts["index_drop"], (index_id,))
            await self._writer.execute("COMMIT")
            self._stale()

    async def run_on_writer(self, fn: Any, *args: Any, transaction: bool = True) -> Any:
        """Run `fn(connection, *args)` on the writer's thread (one trip), inside one transaction
        unless `transaction=False`; readers opened afterwards see what it wrote."""
        w = self._writer
        assert w is not None, "persistence is not open"

        def call(conn: sqlite3.Connection) -> Any:
            if not transaction:
                return fn(conn, *args)
            conn.execute("BEGIN IMMEDIATE")
            try:
                out = fn(conn, *args)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return out

        async with self._write_lock:
            try:
                return await w._execute(call, w._conn)
            finally:
                self._stale()

    async def expire_mutation_results(self, before_ts: int, limit: int) -> int:
        st = self._stmts

        def expire(conn: sqlite3.Connection) -> int:
            old = []
            for rowid, ts in conn.execute(st["mutation_results_oldest"], (limit,)).fetchall():
                if ts >= before_ts:
                    break
                old.append((rowid,))
            conn.executemany(st["mutation_results_delete"], old)
            return len(old)

        return await self.run_on_writer(expire)

    async def put_entries(self, entries: list[tuple[int, bytes, str]]) -> None:
        assert self._writer is not None
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            await self._writer.executemany(self._stmts["entry_put"], entries)
            await self._writer.execute("COMMIT")
            self._stale()
            await self._after_write(len(entries))  # an index backfill writes these in pages

    async def restore(self, ts: int, tables: dict[str, int], indexes: list[tuple[int, str, str, list[str]]],
                      docs: list[tuple[str, int, bytes]], entries: list[tuple[int, bytes, str]]) -> None:
        """Replace everything (catalog, documents, index entries; stored mutation results are
        dropped) in ONE SQLite transaction: a snapshot import lands whole or not at all."""
        w = self._writer
        assert w is not None, "persistence is not open"
        st = self._stmts
        async with self._write_lock:
            await w.execute("BEGIN IMMEDIATE")
            try:
                for name in ("documents_clear", "entries_clear", "mutation_results_clear", "tables_clear",
                             "indexes_clear"):
                    await w.execute(st[name])
                await w.executemany(st["table_add"], list(tables.items()))
                await w.executemany(st["index_add"], [(i, t, n, "\x1f".join(f)) for i, t, n, f in indexes])
                await w.executemany(st["doc_put"], [(i, t, ts, v) for i, t, v in docs])
                await w.executemany(st["entry_put"], entries)
                await w._execute(self.sqlite_search.reset, w._conn)  # search indexes are backfilled anew
                await w.execute(st["meta_put"], ("ts", ts))
                await w.execute("COMMIT")
                self.cache.reset(ts)
            except BaseException:
                await w.execute("ROLLBACK")
                self.cache.reset(-1)
                raise
            finally:
                self._stale()
            await self._after_write(len(docs) + len(entries))


def read_only_dump(db_path: str | os.PathLike[str], table: str | None = None,
                   limit: int | None = None, order: str = "desc") -> dict[str, int] | list[bytes]:
    """For `python -m engine data`: {table: document count}, or the raw JSON of a table's documents
    by creation time (`order` "desc": newest first, as `npx convex data` lists them)."""
    uri = f"file:{Path(db_path).resolve()}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        _, stmts = render("sqlite")
        tables = dict(conn.execute(stmts["tables_all"]).fetchall())
        if table is None:
            return {name: conn.execute(stmts["count_of_table"], (num,)).fetchone()[0]
                    for name, num in sorted(tables.items()) if not name.startswith("_")}
        if table not in tables:
            raise KeyError(table)
        index = conn.execute(stmts["index_id_of"], (table, "by_creation_time")).fetchone()
        if index is not None:
            rows = conn.execute(stmts["scan_desc" if order == "desc" else "scan_asc"], (index[0], b"", b"\xff"))
            rows = ((doc_id, value) for _, doc_id, value in rows)
        else:
            rows = conn.execute(stmts["docs_of_table"], (tables[table],))
        out = []
        for _, value in rows:
            out.append(value)
            if limit is not None and len(out) >= limit:
                break
        return out
    finally:
        conn.close()
