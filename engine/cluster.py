"""The cluster committer: sequencing when several engine nodes share one PostgreSQL database.

Same contract as engine.committer (sequence, futures, write log, history, listeners, watermarks,
exclusive runs), different mechanics, because every node writes:

- Timestamps come from the database, not this process. The writer task takes the queued
  transactions, opens a PostgreSQL transaction and locks the one `clock` row (`FOR UPDATE`): that
  row lock serializes the commits of every node, so commit order is timestamp order. Under it, it
  reads the `commits` rows other nodes wrote since this node last looked (their written keys and
  undo information) into the local write log and history, validates each queued transaction's read
  set against everything committed after its snapshot (a failing one gets Conflict: the runner
  re-runs it), gives the others ts = max(now, clock + 1, last + 1), increasing, writes documents,
  index entries, results, commit rows and the clock in one statement, and commits. The future of
  each transaction resolves to that FINAL timestamp (the one `sequence` returns is provisional).
- Other nodes learn about commits by LISTEN/NOTIFY (payload: the new max ts; keys never travel in
  a notification) and by tailing `commits`: on a notification, every few seconds, and after a
  reconnect, a node reads the rows after what it has ingested, in ts order, appends them to its
  write log and history and fires `listeners` with the new durable ts (subscriptions invalidate).
  Ingest and commit take one asyncio lock, so the write log stays in timestamp order. A snapshot
  newer than what the node has ingested waits for an ingest first (PostgresPersistence.catch_up):
  the write log and history always cover every snapshot handed out.
- Mutations run on durable snapshots (no tail: PostgreSQL reads suspend). A mutation that keeps
  conflicting runs exclusively: its view is read inside a commit transaction that already holds
  the clock lock (no node can commit meanwhile), and it commits in that same transaction, so it
  cannot conflict.
- No leader: any node can stop at any moment. A commit either committed (its row is there and
  the others ingest it) or did not; an acknowledged commit is always committed.

What failures do: a group whose PostgreSQL transaction fails (connection lost, server restart)
fails its callers with the error (an ambiguous COMMIT may still have landed: it is then ingested
like another node's commit, and an idempotent replay returns its stored result); the writer
reconnects for the next group. Nothing of a failed group enters the write log.

Actions in progress (NodeLiveness): a scheduled action or a cron's action is marked inProgress in
a commit before it starts, and runs on one node. Every node writes a heartbeat row (`nodes`: the
database's clock, and the job ids it is running) every `timeout / 5` seconds. A run recorded in
progress that no node heard from within `timeout` claims, for `3/5 timeout` in a row (longer than
a heartbeat interval, so a run just started is claimed before anyone decides), is recorded failed
by whichever node sees it first (an OCC transaction: one of them commits it): a scheduled job
turns `failed`, a cron job records its run failed and is planned again. A node that stops
gracefully deletes its row. So a killed node's runs are settled within about 2 x timeout; a live
node that cannot reach the database for longer than that loses its runs the same way (the action
finishes, its outcome is not recorded: an action still runs at most once).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import msgspec

from . import metrics
from .aio import cancel_and_wait
from .committer import Busy, Committer, Conflict, _OpenView
from .reads import ReadSet
from .storage import CommitRecord
from .storage.postgres import CONNECTION_ERRORS, CommitSession, PostgresPersistence, listen_forever, unavailable
from .transaction import Transaction
from .write_log import WriteLog

__all__ = ["ClusterCommitter", "COMMIT_RETENTION_NS", "NodeLiveness", "NODE_TIMEOUT_S"]

log = logging.getLogger("engine.cluster")

# Commit rows are kept this long (a node that cannot read for longer treats everything as changed).
COMMIT_RETENTION_NS = 10 * 60 * 10**9
TRIM_EVERY_S = 30.0
POLL_EVERY_S = 5.0  # (the LISTEN connection's keep-alive doubles as a periodic catch-up)
# A node not heard from for this long is gone: another node records its actions in progress failed.
NODE_TIMEOUT_S = 10.0

_Payload = tuple[list[tuple[int, bytes]], list[tuple[str, int, bytes | None]],
                 list[tuple[int, bytes | None, bytes | None, str]]]
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Payload).decode


@dataclass(slots=True)
class _Pending:
    record: CommitRecord
    keys: list[tuple[int, bytes]]
    docs_before: list[Any]
    entry_changes: list[Any]
    reads: ReadSet
    view_ts: int
    provisional: int  # the ts `sequence` returned: settled once this transaction's fate is known


class _Locked:
    """An exclusive run's commit session (holds the node lock and the clock lock)."""

    __slots__ = ("session", "owner", "committing")

    def __init__(self, session: CommitSession, owner: object) -> None:
        self.session = session
        self.owner = owner
        self.committing = False


class ClusterCommitter(Committer):
    def __init__(self, persistence: PostgresPersistence, write_log: WriteLog, start_ts: int, *,
                 max_retained: int = 100_000) -> None:
        super().__init__(persistence, write_log, start_ts, max_retained=max_retained)
        self._store = persistence
        self._node_lock = asyncio.Lock()  # commit and ingest take turns (write log order)
        self._conn: Any = None  # the writer's own connection
        self.ingested_ts = start_ts  # every commit up to here is in the write log and history
        self._pending: list[tuple[_Pending, asyncio.Future[int]]] = []
        self._locked: _Locked | None = None
        self._ingest_wake = asyncio.Event()
        self._notified = 0
        self._ingester: asyncio.Task[None] | None = None
        self._ingest_conn: Any = None  # the ingest loop's own connection (never the pool's)
        self._last_trim = time.monotonic()
        persistence.caught_up_ts = start_ts
        persistence.catch_up = self.catch_up

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cluster-committer")
        self._ingester = asyncio.create_task(self._ingest_loop(), name="cluster-ingest")
        listen_forever(self._store, self._on_notify, self._ingest_wake.set)

    async def stop(self) -> None:
        await self.wait_settled(self.sequenced_ts)
        await cancel_and_wait(self._task, self._ingester)
        self._task = self._ingester = None
        self._store.catch_up = None
        for conn in (self._conn, self._ingest_conn):
            if conn is not None:
                conn.terminate()
        self._conn = self._ingest_conn = None

    # -- views -----------------------------------------------------------------------------------
    async def latest_view(self, owner: object | None = None) -> _OpenView:
        """A durable snapshot (PostgreSQL reads suspend: there is no tail). For the owner of an
        exclusive run, a view inside a commit transaction holding the cluster-wide clock lock."""
        if owner is not None and owner is self._exclusive:
            return await self._locked_view(owner)
        base = await self._store.snapshot()
        return _OpenView(base, self.tail, base.ts, self)

    async def _locked_view(self, owner: object) -> _OpenView:
        await self._node_lock.acquire()
        session: CommitSession | None = None
        try:
            session = CommitSession(self._store, await self._writer_conn())
            clock = await session.begin()
            if clock > self.ingested_ts:
                self._ingest(*await session.commits_after(self.ingested_ts), at_least=clock)
        except BaseException as e:
            await self._abandon(session)
            self._node_lock.release()
            if isinstance(e, CONNECTION_ERRORS):
                raise unavailable(e) from None
            raise
        self._locked = _Locked(session, owner)
        return _OpenView(session.snapshot(clock), self.tail, clock, self)

    def release_exclusive(self, owner: object) -> None:
        locked = self._locked
        super().release_exclusive(owner)
        if locked is not None and locked.owner is owner and not locked.committing:
            self._locked = None
            asyncio.get_running_loop().create_task(self._end_locked(locked.session))

    async def _end_locked(self, session: CommitSession) -> None:
        try:
            await self._abandon(session)
        finally:
            self._node_lock.release()

    async def _abandon(self, session: CommitSession | None) -> None:
        if session is None:
            return
        try:
            await session.rollback()
        except Exception:
            self._drop_conn()

    # -- sequencing ------------------------------------------------------------------------------
    def _check(self, reads: ReadSet, view_ts: int, batch: list[tuple[_Pending, Any]]) -> int | None:
        """The ts of a commit after `view_ts` that wrote something `reads` covers, or None."""
        wl = self.write_log
        if not wl.covers(view_ts):
            return wl.horizon
        for ts, keys in wl.since(view_ts):
            if reads.overlaps(keys):
                return ts
        for p, _ in batch:  # accepted earlier in this group: newer than any view
            if reads.overlaps(p.keys):
                return p.record.ts
        return None

    def validate(self, txn: Transaction) -> None:
        conflict = self._check(txn.reads, txn.ts, [])
        if conflict is not None:
            self.conflicts += 1
            raise Conflict(conflict)

    def sequence(self, txn: Transaction, extra=None, *, owner: object | None = None) -> tuple[int, asyncio.Future[int]]:
        """Check against what this node knows (a conflict it can see fails at once) and queue;
        the future resolves to the final commit ts once committed (Conflict if a commit of another
        node got there first)."""
        if self._exclusive is not None and self._exclusive is not owner:
            assert self._exclusive_released is not None
            raise Busy(self._exclusive_released)
        self.validate(txn)
        ts = self.next_ts()  # provisional: an upper bound for wait_settled, not the commit ts
        record, keys, (docs_before, entry_changes) = txn.to_commit(ts)
        if extra is not None:
            extra(record)
        pending = _Pending(record, keys, docs_before, entry_changes, txn.reads, txn.ts, ts)
        self.sequenced_ts = ts
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        locked = self._locked
        if locked is not None and owner is not None and locked.owner is owner:
            locked.committing = True
            self._locked = None
            asyncio.get_running_loop().create_task(self._commit_locked(locked.session, pending, future))
        else:
            self._pending.append((pending, future))
            self._wake.set()
        return ts, future

    # -- the writer ------------------------------------------------------------------------------
    async def _writer_conn(self) -> Any:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self._store.connect()
        return self._conn

    def _drop_conn(self) -> None:
        if self._conn is not None:
            self._conn.terminate()
            self._conn = None

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                async with self._node_lock:
                    batch, self._pending = self._pending, []
                    await self._commit_group(batch)

    async def _commit_group(self, batch: list[tuple[_Pending, asyncio.Future[int]]]) -> None:
        accepted: list[tuple[_Pending, asyncio.Future[int]]] = []
        session: CommitSession | None = None
        top = max(p.provisional for p, _ in batch)  # every queued transaction up to here is in `batch`
        try:
            session = CommitSession(self._store, await self._writer_conn())
            clock = await session.begin()
            if clock > self.ingested_ts:
                self._ingest(*await session.commits_after(self.ingested_ts), at_least=clock)
            for pending, fut in batch:
                if fut.done():
                    continue
                conflict = self._check(pending.reads, pending.view_ts, accepted)
                if conflict is not None:
                    self.conflicts += 1
                    fut.set_exception(Conflict(conflict))
                    continue
                clock = max(time.time_ns(), clock + 1, self.last_ts + 1)
                self.last_ts = clock
                pending.record.ts = clock
                accepted.append((pending, fut))
            if not accepted:
                await session.rollback()
                self._settle(top)
                return
            await session.apply([p.record for p, _ in accepted],
                                [_encode((p.keys, p.docs_before, p.entry_changes)) for p, _ in accepted],
                                self._store.node_id)
            if time.monotonic() - self._last_trim > TRIM_EVERY_S:
                self._last_trim = time.monotonic()
                await session.trim(clock - COMMIT_RETENTION_NS)
            await session.commit()
        except Exception as e:  # connection lost, server restart: fail this group, keep serving
            log.warning("group commit of %d transactions failed: %s", len(batch), e)
            self._store.search.rolled_back()
            await self._abandon(session)
            error = unavailable(e) if isinstance(e, CONNECTION_ERRORS) else e
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(error)
            self._settle(top)
            return
        self._committed(accepted, top)

    async def _commit_locked(self, session: CommitSession, pending: _Pending, fut: asyncio.Future[int]) -> None:
        """Commit an exclusive run in the transaction its view was read in (nothing can have
        committed since: it holds the clock lock)."""
        try:
            try:
                ts = max(time.time_ns(), session.clock + 1, self.last_ts + 1, self.ingested_ts + 1)
                self.last_ts = ts
                pending.record.ts = ts
                await session.apply([pending.record],
                                    [_encode((pending.keys, pending.docs_before, pending.entry_changes))],
                                    self._store.node_id)
                await session.commit()
            except Exception as e:
                log.warning("exclusive commit failed: %s", e)
                self._store.search.rolled_back()
                await self._abandon(session)
                if not fut.done():
                    fut.set_exception(unavailable(e) if isinstance(e, CONNECTION_ERRORS) else e)
                self._settle(pending.provisional)
                return
            self._committed([(pending, fut)], pending.provisional)
        finally:
            self._node_lock.release()

    def _committed(self, accepted: list[tuple[_Pending, asyncio.Future[int]]], top: int) -> None:
        self._store.search.committed([p.record for p, _ in accepted])  # index states, before any reader
        for p, _ in accepted:
            self.write_log.append(p.record.ts, p.keys)
            self.history.append(p.record.ts, p.docs_before, p.entry_changes)
        last = accepted[-1][0].record.ts
        self.ingested_ts = self._store.caught_up_ts = last
        self.durable_ts = last
        metrics.commits_durable(len(accepted))
        for p, fut in accepted:
            if not fut.done():
                fut.set_result(p.record.ts)
        self._trim_write_log()
        self._settle(max(last, top))
        for listener in self.listeners:
            listener(self.durable_ts)

    def _settle(self, ts: int) -> None:
        self.settled_ts = max(self.settled_ts, ts)
        asyncio.get_running_loop().create_task(self._notify_settled())

    async def _notify_settled(self) -> None:
        async with self._durable:
            self._durable.notify_all()

    def _trim_write_log(self) -> None:
        wl = self.write_log
        if len(wl) < 1024:
            return
        keep_after = min(self._open_views, default=self.ingested_ts)
        for mark in self.watermarks:
            keep_after = min(keep_after, mark())
        wl.trim(keep_after, max_entries=self.max_retained)

    # -- ingesting other nodes' commits ------------------------------------------------------------
    def _on_notify(self, payload: str | None = None) -> None:
        if payload:
            try:
                self._notified = max(self._notified, int(payload))
            except ValueError:
                pass
            if self._notified <= self.ingested_ts:
                return  # our own commit (or one already read)
        self._ingest_wake.set()

    async def _ingest_loop(self) -> None:
        while True:
            await self._ingest_wake.wait()
            self._ingest_wake.clear()
            try:
                if self._ingest_conn is None or self._ingest_conn.is_closed():
                    self._ingest_conn = await self._store.connect()
                conn = self._ingest_conn
                # The clock first: every commit up to it is visible to the read that follows.
                target = await self._store.clock_on(conn)
                await self.catch_up(target, lambda after: self._store.commits_after_on(conn, after))
            except Exception as e:  # the database is away: the listener reconnects and wakes us
                log.warning("reading other nodes' commits failed: %s", e)
                if self._ingest_conn is not None:
                    self._ingest_conn.terminate()
                    self._ingest_conn = None
                await asyncio.sleep(0.2)

    async def catch_up(self, ts: int, read: Any) -> None:
        """Make sure every commit up to `ts` is in the write log and history; `read(after)` returns
        the commit rows after `after` from a read that sees every commit up to `ts`."""
        if self.ingested_ts >= ts:
            return
        async with self._node_lock:
            if self.ingested_ts >= ts:
                return
            horizon, rows = await read(self.ingested_ts)
            self._ingest(horizon, rows, at_least=ts)

    def _ingest(self, horizon: int, rows: list[tuple[int, bytes]], *, at_least: int) -> None:
        """Append commits read from `commits` (in ts order). Every commit up to `at_least` was
        visible to the read that returned `rows`, so the node is caught up to it afterwards."""
        before = self.ingested_ts
        search = self._store.search
        if horizon > self.ingested_ts:  # rows we never read were trimmed: treat as unknown changes
            log.warning("this node missed commits that were trimmed meanwhile; live queries re-run")
            self.write_log.horizon = max(self.write_log.horizon, horizon)
            self.history.horizon = max(self.history.horizon, horizon)
        for ts, payload in rows:
            if ts <= self.ingested_ts:
                continue
            keys, docs_before, entry_changes = _decode(payload)
            search.ingested(keys)  # e.g. another node's backfill finished: the index is ready here too
            self.write_log.append(ts, keys)
            self.history.append(ts, docs_before, entry_changes)
            self.ingested_ts = ts
        self.ingested_ts = max(self.ingested_ts, at_least, horizon)
        self._store.caught_up_ts = self.ingested_ts
        self.last_ts = max(self.last_ts, self.ingested_ts)
        if self.ingested_ts > before:
            self.durable_ts = max(self.durable_ts, self.ingested_ts)
            self._trim_write_log()
            self._settle(self.ingested_ts)
            for listener in self.listeners:
                listener(self.durable_ts)


class NodeLiveness:
    """Heartbeats, and settling the actions in progress of nodes that stopped (see the module
    docstring). `check()` is one round; `start()` runs one every `timeout_s / 5` seconds."""

    def __init__(self, dep: Any, timeout_s: float = NODE_TIMEOUT_S) -> None:
        if not timeout_s > 0:
            raise ValueError("the node timeout must be positive")
        self.dep = dep
        self.timeout_s = float(timeout_s)
        self.every_s = self.timeout_s / 5
        self.grace_s = 3 * self.every_s
        self._suspects: dict[tuple[str, str], tuple[Any, float]] = {}  # (loop, key) -> (marker, first seen)
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def _loops(self) -> list[Any]:
        return [self.dep.scheduler, self.dep.crons]

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="node-liveness")

    async def pause(self) -> None:
        """End the periodic rounds (the heartbeat row stays; `check()` still works): for tests
        that drive the rounds with their own time."""
        await cancel_and_wait(self._task)
        self._task = None

    async def stop(self) -> None:
        await self.pause()
        try:
            await self.dep.persistence.leave()
        except Exception as e:  # the database is away: the row expires on its own
            log.info("could not remove this node's heartbeat (%s)", e)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
                if self._failing:
                    log.info("node heartbeats are back")
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: heartbeats resume when it is back
                if not self._failing:
                    log.warning("node heartbeat failed (%s); retrying", e)
                self._failing = True
            await asyncio.sleep(self.every_s)

    def suspected(self) -> list[str]:
        """The runs the last round found unclaimed (recorded failed if that lasts `grace_s`)."""
        return [key for _, key in self._suspects]

    async def check(self, now: float | None = None) -> list[str]:
        """Heartbeat, then record failed the runs nobody alive has claimed for `grace_s`; the keys
        it recorded. `now`: monotonic seconds (tests may pass their own)."""
        moment = time.monotonic() if now is None else now
        loops = self._loops()
        mine = sorted({key for loop in loops for key in loop.running_keys()})
        claimed = await self.dep.persistence.heartbeat(mine, self.timeout_s)
        if claimed is None:
            return []
        suspects: dict[tuple[str, str], tuple[Any, float]] = {}
        lost: list[str] = []
        for loop in loops:
            runs = await loop.in_progress()
            running = set(loop.running_keys())  # after the read: a run started meanwhile is ours
            for key, marker in runs:
                if key in claimed or key in running:
                    continue
                seen = self._suspects.get((loop.name, key))
                first = seen[1] if seen is not None and seen[0] == marker else moment
                if moment - first >= self.grace_s:
                    if await loop.record_lost(key, marker):
                        lost.append(key)
                    continue
                suspects[(loop.name, key)] = (marker, first)
        self._suspects = suspects
        return lost
