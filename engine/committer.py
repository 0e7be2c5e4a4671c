"""The committer: sequences transactions (OCC validation, timestamp), then persists them in groups.

Sequencing happens on the event loop, synchronously, so it is atomic: validate the transaction's
read set against every write-log entry newer than its view, assign the next timestamp, append the
written keys to the write log, lay its writes over the tail (engine.tail) and queue the record. A
single writer task drains the queue and persists everything queued so far in one SQLite transaction
(group commit); each caller's future resolves once its commit is durable.

Two kinds of view can be validated: `latest_view()` (the latest *sequenced* state, what mutations
run on; a function that never suspends cannot conflict there) and a plain durable snapshot (queries,
engine system transactions). Both are checked the same way: nothing sequenced after the view's ts
may have written a key the transaction read.

The clock: timestamps are nanoseconds since the epoch, strictly increasing, never behind the
persisted high-water mark, and a client can never push them: a timestamp it reports having seen
(Connect's maxObservedTimestamp) moves the clock forward only within MAX_CLOCK_SKEW_NS of this
machine's clock. A stored high-water mark more than a day ahead (written by an engine that let
clients push it) is set back to now at start (`sane_start_ts`); closer than that, the machine's
clock went back and the stored mark is continued from.

Failure: if a group commit fails (disk full, I/O error), its transactions fail, and every commit
sequenced after it — which may have read its writes through the tail — is aborted (`CommitAborted`,
which the runner treats as a conflict: it re-runs). Views that saw the failed commits are refused
at validation (the tail's generation moved on).

Write-log retention follows its readers: entries are kept back to the oldest open view and the
slowest watermark (subscriptions, scheduler), and never more than `max_retained` of them; a view
older than what is retained conflicts (its mutation re-runs on a fresh view).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from . import metrics
from .aio import cancel_and_wait
from .history import History
from .storage import CommitRecord, Persistence
from .tail import Tail, TailView
from .transaction import Transaction
from .write_log import WriteLog

__all__ = ["Committer", "Conflict", "CommitAborted", "Busy", "MAX_CLOCK_SKEW_NS", "MAX_START_AHEAD_NS",
           "sane_start_ts"]

log = logging.getLogger("engine.committer")

# How far ahead of this machine's clock a client-reported timestamp may move the commit clock. A
# client that saw timestamps of a server whose clock was a little ahead (a restart elsewhere, a
# clock step) is served; anything further ahead is ignored rather than trusted.
MAX_CLOCK_SKEW_NS = 10_000_000_000


# At start, a persisted high-water mark up to this far ahead of the machine's clock is continued
# from (the clock went back: timestamps must still only grow); further ahead, it can only have been
# pushed there by a client under an engine that trusted client timestamps, and is set back to now.
MAX_START_AHEAD_NS = 86_400 * 10**9


def sane_start_ts(stored: int, now_ns: int | None = None) -> int:
    """The clock to start from, given the persisted high-water mark."""
    now = time.time_ns() if now_ns is None else now_ns
    return now if stored > now + MAX_START_AHEAD_NS else stored


class Conflict(Exception):
    """The transaction read something a later commit wrote; it must re-run."""

    def __init__(self, ts: int) -> None:
        super().__init__(ts)
        self.ts = ts


class CommitAborted(Conflict):
    """A commit sequenced after one that failed to persist: it may have read that one's writes.
    Nothing of it was persisted; the mutation can run again."""


class Busy(Exception):
    """Another transaction holds the sequencer exclusively; wait for `released`, then sequence again."""

    def __init__(self, released: asyncio.Future[None]) -> None:
        super().__init__("sequencer busy")
        self.released = released


class Committer:
    def __init__(self, persistence: Persistence, write_log: WriteLog, start_ts: int, *,
                 max_retained: int = 100_000) -> None:
        self._persistence = persistence
        self.write_log = write_log
        self.history = History(start_ts)  # what recent commits overwrote: reads at a past ts
        self.tail = Tail()  # what recent commits wrote, until every snapshot has it
        self.generation = 0  # bumped when commits fail: views of an older generation are refused
        self.last_ts = start_ts  # the timestamp clock: highest handed out (or observed)
        self.sequenced_ts = start_ts  # highest commit queued
        self.durable_ts = start_ts  # highest commit persisted
        self.settled_ts = start_ts  # highest commit whose fate (persisted or failed) is known
        self.max_retained = max_retained
        self._queue: list[tuple[CommitRecord, asyncio.Future[int]]] = []
        self._wake = asyncio.Event()
        self._durable = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[int], None]] = []  # called with each new durable ts
        # Readers of the write log report how far they have read; entries before all of them go.
        self.watermarks: list[Callable[[], int]] = []
        self._open_views: dict[int, int] = {}  # view ts -> number of open views at it
        self._exclusive: object | None = None
        self._exclusive_released: asyncio.Future[None] | None = None
        self.conflicts = 0  # OCC conflicts seen (every kind), for metrics and tests

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="committer")

    async def stop(self) -> None:
        await self.wait_settled(self.sequenced_ts)
        await cancel_and_wait(self._task)
        self._task = None

    # -- the clock -------------------------------------------------------------------------------
    def next_ts(self) -> int:
        ts = max(time.time_ns(), self.last_ts + 1)
        self.last_ts = ts
        return ts

    def advance_to(self, ts: int) -> bool:
        """Never hand out a timestamp at or below `ts` (a client saw it). Refused (False) when `ts`
        is more than MAX_CLOCK_SKEW_NS ahead of this machine's clock."""
        if ts > time.time_ns() + MAX_CLOCK_SKEW_NS:
            return False
        self.last_ts = max(self.last_ts, ts)
        return True

    # -- views -----------------------------------------------------------------------------------
    async def latest_view(self, owner: object | None = None) -> _OpenView:
        """The latest sequenced state, for a mutation. Close it when done. On a store whose reads
        never suspend this never suspends either (engine.tail relies on it). `owner`: the owner of
        an exclusive run asking (engine.cluster gives it a view under the cluster-wide lock)."""
        base = await self._persistence.snapshot()
        self.tail.trim(base.ts)
        view = _OpenView(base, self.tail, self.sequenced_ts, self)
        return view

    def _view_opened(self, ts: int) -> None:
        self._open_views[ts] = self._open_views.get(ts, 0) + 1

    def _view_closed(self, ts: int) -> None:
        left = self._open_views[ts] - 1
        if left:
            self._open_views[ts] = left
        else:
            del self._open_views[ts]

    # -- exclusive sequencing (a mutation that kept conflicting) -----------------------------------
    def acquire_exclusive(self, owner: object) -> asyncio.Future[None] | None:
        """Make `owner` the only one allowed to sequence, or return a future to wait on first."""
        if self._exclusive is not None and self._exclusive is not owner:
            assert self._exclusive_released is not None
            return self._exclusive_released
        self._exclusive = owner
        self._exclusive_released = asyncio.get_running_loop().create_future()
        return None

    def release_exclusive(self, owner: object) -> None:
        if self._exclusive is owner:
            self._exclusive = None
            released, self._exclusive_released = self._exclusive_released, None
            if released is not None and not released.done():
                released.set_result(None)

    # -- sequencing ------------------------------------------------------------------------------
    def validate(self, txn: Transaction) -> None:
        generation = getattr(txn.snapshot, "generation", None)
        if generation is not None and generation != self.generation:
            self.conflicts += 1
            raise Conflict(self.sequenced_ts)  # it may have read commits that then failed
        if not self.write_log.covers(txn.ts):
            self.conflicts += 1
            raise Conflict(self.write_log.horizon)
        if txn.ts >= self.sequenced_ts:
            return  # nothing sequenced since its view: the common case for mutations
        for ts, keys in self.write_log.since(txn.ts):
            if txn.reads.overlaps(keys):
                self.conflicts += 1
                raise Conflict(ts)

    def sequence(self, txn: Transaction, extra: Callable[[CommitRecord], None] | None = None, *,
                 owner: object | None = None) -> tuple[int, asyncio.Future[int]]:
        """Validate and enqueue; returns (commit ts, future resolved when durable). Raises Conflict,
        or Busy while another owner sequences exclusively."""
        if self._exclusive is not None and self._exclusive is not owner:
            assert self._exclusive_released is not None
            raise Busy(self._exclusive_released)
        self.validate(txn)
        ts = self.next_ts()
        record, keys, (docs_before, entry_changes) = txn.to_commit(ts)
        if extra is not None:
            extra(record)
        self.write_log.append(ts, keys)
        self.history.append(ts, docs_before, entry_changes)
        self.tail.add(record)
        self.sequenced_ts = ts
        self._trim_write_log()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((record, future))
        self._wake.set()
        return ts, future

    def _trim_write_log(self) -> None:
        wl = self.write_log
        if len(wl) < 1024 and wl.keys_held < 1_000_000:  # a few commits may carry many keys (search)
            return
        keep_after = min(self._open_views, default=self.sequenced_ts)
        for mark in self.watermarks:
            keep_after = min(keep_after, mark())
        wl.trim(keep_after, max_entries=self.max_retained)

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
                    self._abort_queued(batch[-1][0].ts)
                else:
                    metrics.commits_durable(len(batch))
                    self.durable_ts = batch[-1][0].ts
                    for rec, fut in batch:
                        if not fut.done():
                            fut.set_result(rec.ts)
                    for listener in self.listeners:
                        listener(self.durable_ts)
                self.settled_ts = max(self.settled_ts, batch[-1][0].ts)
                async with self._durable:
                    self._durable.notify_all()

    def _abort_queued(self, failed_ts: int) -> None:
        """After a failed group: later commits may have read its writes through the tail."""
        queued, self._queue = self._queue, []
        for rec, fut in queued:
            if not fut.done():
                fut.set_exception(CommitAborted(failed_ts))
        self.tail.clear()
        self.generation += 1
        self.settled_ts = max(self.settled_ts, self.sequenced_ts)


class _OpenView(TailView):
    """A TailView the committer counts while it is open (write-log retention), stamped with the
    tail's generation (refused at validation if commits it could see failed meanwhile)."""

    __slots__ = ("generation", "_committer")

    def __init__(self, base, tail: Tail, ts: int, committer: Committer) -> None:
        super().__init__(base, tail, ts)
        self.generation = committer.generation
        self._committer = committer
        committer._view_opened(ts)

    def close(self) -> None:
        committer = self._committer
        if committer is not None:
            self._committer = None  # type: ignore[assignment]
            committer._view_closed(self.ts)
            super().close()
