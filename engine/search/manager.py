"""The deployment's search and vector indexes: registered from the schema, backfilled in the
background, dropped when the schema drops them.

    dep.search_indexes = SearchIndexes(dep)
    await dep.search_indexes.open()                 # at start, once the committer runs
    await dep.search_indexes.apply_schema(schema)   # dev mode, after new code was swapped in

Lifecycle of an index:
1. Declared in schema.py and not stored (or stored with another definition): it gets a fresh id,
   its storage is created and registered "backfilling" (engine.search.backend.SearchStore.register)
   and it joins `TableInfo.search`; from that moment every commit maintains it.
2. A background task fills it from the table in chunks: each chunk reads the next documents by
   creation time on the latest sequenced state and is sequenced as a commit of its own in the
   same event-loop step (so nothing can slip between the read and the commit), carrying the
   entries and the new cursor. Entries are upserts, so a document written by a live commit before
   or after its chunk ends up as that commit left it. Progress goes to the log every few seconds.
3. The chunk that reaches the end marks it "ready" (when durable) and writes the index's READY_KEY:
   queries that failed with IndexBackfillingError re-run.
A restart in the middle resumes from the stored cursor. An index the schema no longer declares is
detached first (commits stop maintaining it), then dropped once every commit that still could is
durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..catalog import BY_CREATION_TIME
from ..committer import Busy, Conflict
from ..errors import EngineError
from ..progress import progress
from ..reads import successor
from ..storage.base import after
from ..transaction import Transaction
from ..values import decode_json
from .backend import SearchOp, SearchStore, StateOp
from .maintenance import text_entry, vector_entry
from .spec import BACKFILLING, READY, IndexSpec, SearchIndexInfo, VectorIndexInfo, spec_from_json
from .text import READY_KEY

if TYPE_CHECKING:
    from ..deployment import Deployment

__all__ = ["SearchIndexes", "CHUNK"]

log = logging.getLogger("engine.search")

CHUNK = 500  # documents per backfill commit
PROGRESS_EVERY_S = 2.0
_FULL_HI = b"\xff"


def declared(schema: Any) -> dict[tuple[str, str], tuple[str, dict[str, Any]]]:
    """{(table, index): (kind, config)} of every search and vector index the schema declares."""
    out: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}
    if schema is None:
        return out
    for table, definition in schema.tables.items():
        for name, conf in definition.search_indexes.items():
            out[(table, name)] = ("search", conf)
        for name, conf in definition.vector_indexes.items():
            out[(table, name)] = ("vector", conf)
    return out


def _make(index_id: int, table: str, name: str, kind: str, conf: dict[str, Any]) -> IndexSpec:
    if kind == "search":
        return SearchIndexInfo(index_id, table, name, conf["searchField"], tuple(conf["filterFields"]))
    return VectorIndexInfo(index_id, table, name, conf["vectorField"], int(conf["dimensions"]),
                           tuple(conf["filterFields"]))


async def _chunk(view: Any, index_id: int, lo: bytes) -> tuple[list[tuple[bytes, str, bytes]], bool]:
    """The next CHUNK rows of the index from `lo`, and whether the range ends with them."""
    rows: list[tuple[bytes, str, bytes]] = []
    at = lo
    while len(rows) < CHUNK:
        if view.inline_reads:
            page, resume = view.scan_page_now(index_id, at, _FULL_HI, False, CHUNK - len(rows))
        else:
            page, resume = await view.scan_page(index_id, at, _FULL_HI, False, CHUNK - len(rows))
        rows.extend(page)
        if resume is None:
            return rows[:CHUNK], len(rows) <= CHUNK
        at = after(resume)
    return rows[:CHUNK], False


class SearchIndexes:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._lock = asyncio.Lock()

    @property
    def store(self) -> SearchStore:
        return self.dep.persistence.search

    def all(self) -> list[IndexSpec]:
        return [info for t in self.dep.catalog.by_name.values() for info in t.search.values()]

    # -- start ---------------------------------------------------------------------------------
    async def open(self) -> None:
        if self._unserved(declared(self.dep.app.schema)):
            return
        # A shared store: nodes starting together take turns, so an index is registered once and
        # the others attach it.
        async with self.dep.persistence.startup_lock():
            await self._open()

    async def _open(self) -> None:
        catalog = self.dep.catalog
        stored = await self.store.load()
        if stored:
            catalog.reserve_index_ids(max(s.id for s in stored))
        wanted = declared(self.dep.app.schema)
        stamp = self.dep.committer.durable_ts
        cursors: dict[int, bytes | None] = {}
        stale: list[int] = []
        for st in stored:
            info = spec_from_json(st.id, st.table, st.name, st.spec, st.state)
            table = catalog.by_name.get(st.table)
            want = wanted.get((st.table, st.name))
            if table is None or want is None or _make(0, st.table, st.name, *want).definition() != info.definition():
                stale.append(st.id)
                continue
            table.search[st.name] = info
            self.store.attach(info, stamp)
            cursors[info.id] = st.cursor
        for index_id in stale:
            await self.store.drop(index_id)
        for info in self.all():
            if not info.ready:  # a backfill an earlier run left unfinished: resume it
                self._start(info, cursors.get(info.id))
        async with self._lock:
            await self._add_missing(wanted)

    async def _add_missing(self, wanted: dict[tuple[str, str], tuple[str, dict[str, Any]]]) -> None:
        catalog = self.dep.catalog
        if self.store.unbuilt:  # a schema that no longer declares an index the store could not build
            declared_now = {f"{t}.{n}" for t, n in wanted}
            self.store.unbuilt = {k: v for k, v in self.store.unbuilt.items() if k in declared_now}
        for (table_name, name), (kind, conf) in wanted.items():
            table = await catalog.ensure_table(table_name)
            if name in table.search:
                continue
            if f"{table_name}.{name}" in self.store.unbuilt:
                continue
            reason = self.store.cannot_build(_make(0, table_name, name, kind, conf))
            if reason is not None:  # e.g. PostgreSQL without pgvector: the other indexes still work
                unbuilt = dict(self.store.unbuilt)
                unbuilt[f"{table_name}.{name}"] = reason
                self.store.unbuilt = unbuilt
                log.warning('%s index "%s.%s" is not built: %s', kind.capitalize(), table_name, name, reason)
                continue
            info = _make(catalog.allocate_index_id(), table_name, name, kind, conf)
            await self.store.register(info)
            table.search[name] = info  # from the next commit on, writes maintain it
            log.info('%s index "%s" added: backfilling it in the background.', kind.capitalize(), info.printable)
            self._start(info, None)

    def _unserved(self, wanted: dict[tuple[str, str], tuple[str, dict[str, Any]]]) -> bool:
        """A store without search (engine.search.backend.UnsupportedSearchStore): nothing is
        registered or maintained, the deployment serves, and queries on these indexes fail with
        SearchIndexesUnavailable. Says so in the log, once per schema."""
        reason = self.store.unavailable
        if reason is None:
            return False
        if wanted:
            names = ", ".join(f"{t}.{n}" for t, n in sorted(wanted))
            log.warning("%d search/vector index(es) declared but not built (%s): %s", len(wanted), names, reason)
        return True

    # -- schema changes while serving (dev mode) ---------------------------------------------------
    async def apply_schema(self, schema: Any) -> None:
        async with self._lock:
            wanted = declared(schema)
            if self._unserved(wanted):
                return
            catalog = self.dep.catalog
            gone: list[IndexSpec] = []
            for table in catalog.by_name.values():
                for name, info in list(table.search.items()):
                    want = wanted.get((table.name, name))
                    if want is None or _make(0, table.name, name, *want).definition() != info.definition():
                        del table.search[name]  # synchronous: later commits no longer maintain it
                        gone.append(info)
            if gone:
                await self.dep.committer.wait_settled(self.dep.committer.sequenced_ts)
                for info in gone:
                    task = self._tasks.pop(info.id, None)
                    if task is not None:
                        task.cancel()
                    await self.store.drop(info.id)
                    log.info('%s index "%s" dropped.', info.kind.capitalize(), info.printable)
            await self._add_missing(wanted)

    # -- backfill ------------------------------------------------------------------------------
    def _start(self, info: IndexSpec, cursor: bytes | None) -> None:
        self._tasks[info.id] = asyncio.get_running_loop().create_task(
            self._backfill(info, cursor), name=f"backfill-{info.printable}")

    async def wait_ready(self) -> None:
        """Until every backfill has finished (tests; benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    async def _backfill(self, info: IndexSpec, cursor: bytes | None) -> None:
        try:
            delay = 0.2
            while True:
                try:
                    # A shared store: one process at a time backfills an index (the others wait, and
                    # take over from the stored cursor if it stops).
                    async with self.store.backfill_lease(info, cursor) as (go, cursor):
                        if go:
                            await self._fill(info, cursor)
                        elif info.ready:
                            log.info('%s index "%s" is ready (backfilled by another node).', info.kind.capitalize(),
                                     info.printable)
                    return
                except EngineError as e:
                    # A networked store's database away (a restart): wait for it, then go on from
                    # the stored cursor (the lease reads it again).
                    if e.code != "DatabaseUnavailable":
                        raise
                    log.warning('Backfilling index "%s": the database is unavailable (%s); retrying.',
                                info.printable, type(e).__name__)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception('Backfilling index "%s" failed; it stays unavailable until the next start.', info.printable)
        finally:
            if self._tasks.get(info.id) is asyncio.current_task():
                del self._tasks[info.id]

    async def _fill(self, info: IndexSpec, cursor: bytes | None) -> None:
        dep = self.dep
        committer = dep.committer
        catalog = dep.catalog
        table = catalog.by_name[info.table]
        total = await self.store.documents_in_table(table.number)
        done = 0
        started = last_log = time.monotonic()
        resumed = " (resuming)" if cursor is not None else ""
        log.info('Backfilling %s index "%s": %d documents%s.', info.kind, info.printable, total, resumed)
        failures = 0
        # A bar on a terminal (engine.progress), beside the log lines below for logs and pipes.
        with progress(f'{info.kind.capitalize()} index "{info.printable}"', total=total, unit=" docs") as bar:
            while True:
                if table.search.get(info.name) is not info:
                    return  # dropped meanwhile
                source = table.indexes[BY_CREATION_TIME]
                view = await committer.latest_view()
                txn = Transaction(catalog, view, writable=False)
                try:
                    lo = successor(cursor) if cursor is not None else b""
                    rows, finished = await _chunk(view, source.id, lo)
                    # On a store whose reads never suspend, this read and the commit below happen in
                    # one event-loop step: nothing can commit in between. Elsewhere OCC decides.
                    txn.reads.add(source.id, lo, _FULL_HI if finished else successor(rows[-1][0]))
                    ops: list[Any] = []
                    for _, doc_id, raw in rows:
                        doc = decode_json(raw)
                        if isinstance(info, SearchIndexInfo):
                            ops.append(SearchOp(info.id, doc_id, text_entry(info, doc)[0]))
                        else:
                            entry = vector_entry(info, doc)
                            if entry is not None:
                                ops.append(SearchOp(info.id, doc_id, entry))
                    last = rows[-1][0] if rows else cursor
                    ops.append(StateOp(info.id, READY if finished else BACKFILLING, last, info))
                    if finished:
                        txn.extra_keys.append((info.id, READY_KEY))
                    try:
                        _, durable = committer.sequence(txn, lambda rec: rec.search.extend(ops))
                    except Busy as busy:
                        await busy.released
                        continue
                    except Conflict:  # a store whose reads suspend: something wrote into the chunk
                        continue
                finally:
                    txn.close()
                try:
                    await durable
                except Conflict:  # a store whose commits validate late (several nodes): read the chunk again
                    continue
                except Exception as e:
                    if isinstance(e, EngineError) and e.code == "DatabaseUnavailable":
                        raise  # (_backfill waits for the database)
                    failures += 1
                    if failures > 5:
                        raise
                    log.warning('Backfilling index "%s": a commit failed; retrying.', info.printable)
                    await asyncio.sleep(min(5.0, 0.2 * 2 ** failures))
                    continue
                cursor = last
                done += len(rows)
                bar.update(len(rows))
                info.progress = (done, total)
                now = time.monotonic()
                if finished:
                    log.info('%s index "%s" is ready (%d documents in %.1f s).', info.kind.capitalize(), info.printable,
                             done, now - started)
                    return
                if now - last_log >= PROGRESS_EVERY_S:
                    last_log = now
                    pct = f" ({100 * done // total}%)" if total else ""
                    log.info('Backfilling %s index "%s": %d of %d documents%s.', info.kind, info.printable, done,
                             total, pct)
                await asyncio.sleep(0)  # let clients in between chunks

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
