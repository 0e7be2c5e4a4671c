"""The committer: sequences transactions (OCC validation, timestamp), then persists them in groups.

Sequencing happens on the event loop, synchronously, so it is atomic: validate the transaction's
read set against every write-log entry newer than its snapshot, assign the next timestamp, append
the written keys to the write log, and queue the record. A single writer task drains the queue and
persists everything queued so far in one SQLite transaction (group commit); each caller's future
resolves once its commit is durable. Timestamps are nanoseconds since the epoch, strictly
increasing, and never behind the persisted high-water mark, so they survive restarts.

Snapshots only ever show durable data, so a failed group commit invalidates nothing that was
validated after it: those transactions never read its writes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .history import History
from .storage import CommitRecord, Persistence
from .transaction import Transaction
from .write_log import WriteLog

__all__ = ["Committer", "Conflict"]

log = logging.getLogger("engine.committer")


class Conflict(Exception):
    """The transaction read something a later commit wrote; it must re-run."""

    def __init__(self, ts: int) -> None:
        super().__init__(ts)
        self.ts = ts


class Committer:
    def __init__(self, persistence: Persistence, write_log: WriteLog, start_ts: int) -> None:
        self._persistence = persistence
        self.write_log = write_log
        self.history = History(start_ts)  # what recent commits overwrote: reads at a past ts
        self.last_ts = start_ts  # the timestamp clock: highest handed out (or observed)
        self.sequenced_ts = start_ts  # highest commit queued
        self.durable_ts = start_ts  # highest commit persisted
        self.settled_ts = start_ts  # highest commit whose fate (persisted or failed) is known
        self._queue: list[tuple[CommitRecord, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._durable = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[int], None]] = []  # called with each new durable ts

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="committer")

    async def stop(self) -> None:
        await self.wait_settled(self.sequenced_ts)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def next_ts(self) -> int:
        ts = max(time.time_ns(), self.last_ts + 1)
        self.last_ts = ts
        return ts

    def advance_to(self, ts: int) -> None:
        """Never hand out a timestamp at or below `ts` (a client saw a later one)."""
        self.last_ts = max(self.last_ts, ts)

    def validate(self, txn: Transaction) -> None:
        if not self.write_log.covers(txn.ts):
            raise Conflict(self.write_log.horizon)
        for ts, keys in self.write_log.since(txn.ts):
            if txn.reads.overlaps(keys):
                raise Conflict(ts)

    def sequence(self, txn: Transaction, extra: Callable[[CommitRecord], None] | None = None
                 ) -> tuple[int, asyncio.Future[int]]:
        """Validate and enqueue; returns (commit ts, future resolved when durable). Raises Conflict."""
        self.validate(txn)
        ts = self.next_ts()
        record, keys, (docs_before, entry_changes) = txn.to_commit(ts)
        if extra is not None:
            extra(record)
        self.write_log.append(ts, keys)
        self.history.append(ts, docs_before, entry_changes)
        self.sequenced_ts = ts
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        self._wake.set()
        return ts, future

    async def wait_settled(self, ts: int) -> None:
        """Wait until every commit up to `ts` is persisted or has failed."""
        if self.settled_ts >= ts:
            return
        async with self._durable:
            await self._durable.wait_for(lambda: self.settled_ts >= ts)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._persistence.write([rec for rec, _ in batch])
                except Exception as e:  # disk full, I/O error: fail this group, keep serving
                    log.exception("group commit of %d transactions failed", len(batch))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                else:
                    self.durable_ts = batch[-1][0].ts
                    for rec, fut in batch:
                        if not fut.done():
                            fut.set_result(rec.ts)
                    for listener in self.listeners:
                        listener(self.durable_ts)
                self.settled_ts = batch[-1][0].ts
                async with self._durable:
                    self._durable.notify_all()
