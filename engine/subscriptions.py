"""Subscriptions: which live queries a commit touches, re-running each distinct one once.

Three pieces:

- `IntervalIndex` — every live query's read set, bucketed by index and by the longest common prefix
  of each interval's two ends that falls on a value boundary. Any key inside [lo, hi) starts with
  that prefix, so for a written key K only the buckets named by K's own value-boundary prefixes can
  hold an interval containing K: one dict lookup per indexed field (at most ~18), then a check of
  the few intervals in those buckets. The cost of finding the affected queries follows the keys
  written and the queries near them, never the number of subscriptions.
- `QueryEntry` — one distinct (function, args, journal, identity) query with its latest result,
  pre-encoded once so every socket holding it splices the same bytes into its Transition. A query
  that never read `ctx.auth` is shared by every identity.
- `SubscriptionManager` — the one place Transitions are computed. Each round opens one snapshot at
  ts S, collects the queries invalidated by every commit in (last round, S], re-runs each once at S,
  applies the query-set and identity changes sessions asked for (also at S), and hands each touched
  session its modifications for a Transition ending at S. Everything in one Transition is therefore
  evaluated at one snapshot, and every query not re-run is known unchanged up to S.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import msgspec

from .aio import cancel_and_wait
from .index_keys import boundaries
from .reads import ReadSet
from .runner import Auth, QueryEvaluation, request_id
from .values import to_wire

if TYPE_CHECKING:
    from .deployment import Deployment
    from .registration import RegisteredFunction
    from .sync import SyncSession

__all__ = ["IntervalIndex", "QueryEntry", "SubscriptionManager"]

log = logging.getLogger("engine.subscriptions")
_enc = msgspec.json.Encoder(order="sorted")


def _bucket_prefix(lo: bytes, hi: bytes) -> bytes:
    """The longest prefix of `lo` that both ends share and that ends on a value boundary."""
    n = 0
    limit = min(len(lo), len(hi))
    while n < limit and lo[n] == hi[n]:
        n += 1
    best = 0
    for b in boundaries(lo):
        if b > n:
            break
        best = b
    return lo[:best]


class IntervalIndex:
    """Read-set intervals of live queries, findable from a written key in O(fields) lookups."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[int, bytes], dict[QueryEntry, list[tuple[bytes, bytes]]]] = {}
        self._per_index: dict[int, int] = {}  # index id -> buckets on it (skip unwatched indexes)
        self.size = 0

    def add(self, entry: QueryEntry, reads: ReadSet) -> None:
        keys = []
        for index_id, lo, hi in reads:
            bucket_key = (index_id, _bucket_prefix(lo, hi))
            bucket = self._buckets.get(bucket_key)
            if bucket is None:
                bucket = self._buckets[bucket_key] = {}
                self._per_index[index_id] = self._per_index.get(index_id, 0) + 1
            intervals = bucket.get(entry)
            if intervals is None:
                bucket[entry] = intervals = []
                keys.append(bucket_key)
            intervals.append((lo, hi))
            self.size += 1
        entry.bucket_keys = keys

    def remove(self, entry: QueryEntry) -> None:
        for bucket_key in entry.bucket_keys:
            bucket = self._buckets.get(bucket_key)
            if bucket is None:
                continue
            intervals = bucket.pop(entry, None)
            if intervals:
                self.size -= len(intervals)
            if not bucket:
                del self._buckets[bucket_key]
                left = self._per_index[bucket_key[0]] - 1
                if left:
                    self._per_index[bucket_key[0]] = left
                else:
                    del self._per_index[bucket_key[0]]
        entry.bucket_keys = []

    def affected(self, index_id: int, key: bytes, out: set[QueryEntry]) -> None:
        if index_id not in self._per_index:
            return  # no live query reads this index: nothing to parse or look up
        buckets = self._buckets
        for b in boundaries(key):
            bucket = buckets.get((index_id, key[:b]))
            if bucket is None:
                continue
            for entry, intervals in bucket.items():
                if entry in out:
                    continue
                for lo, hi in intervals:
                    if lo <= key < hi:
                        out.add(entry)
                        break


class QueryEntry:
    """One distinct live query and its latest result (pre-encoded)."""

    __slots__ = ("key", "fn", "path", "args", "auth", "journal", "shared", "tail", "failed",
                 "subscribers", "bucket_keys", "ts", "__weakref__")

    def __init__(self, key: tuple, fn: RegisteredFunction | None, path: str, args: Any, auth: Auth,
                 journal: str | None) -> None:
        self.key = key
        self.fn = fn
        self.path = path
        self.args = args
        self.auth = auth
        self.journal = journal
        self.shared = False
        self.tail = b""
        self.failed = False
        self.subscribers: dict[SyncSession, set[int]] = {}
        self.bucket_keys: list[tuple[int, bytes]] = []
        self.ts = 0

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def fragment(self, query_id: int) -> bytes:
        kind = b"QueryFailed" if self.failed else b"QueryUpdated"
        return b'{"type":"%s","queryId":%d%s' % (kind, query_id, self.tail)

    def set_result(self, ev: QueryEvaluation | None, error_message: str | None = None,
                   error_data: Any = None, has_data: bool = False) -> bool:
        """Store a new result; True if what clients see changed."""
        journal = ev.journal if ev is not None else None
        lines = ev.log_lines if ev is not None else []
        if ev is not None and ev.ok:
            failed = False
            tail = b',"value":%s,"logLines":%s,"journal":%s}' % (
                _enc.encode(ev.wire), _enc.encode(lines), _enc.encode(journal))
        else:
            failed = True
            data = b',"errorData":%s' % _enc.encode(to_wire(error_data)) if has_data else b""
            tail = b',"errorMessage":%s,"logLines":%s,"journal":%s%s}' % (
                _enc.encode(error_message), _enc.encode(lines), _enc.encode(journal), data)
        if journal is not None:
            self.journal = journal
        changed = tail != self.tail or failed != self.failed
        self.tail = tail
        self.failed = failed
        return changed


class SubscriptionManager:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.index = IntervalIndex()
        self.entries: dict[tuple, QueryEntry] = {}
        self.processed_ts = dep.committer.durable_ts
        self._wake = asyncio.Event()
        self._pending: set[SyncSession] = set()
        self._task: asyncio.Task[None] | None = None
        self._pinger: asyncio.Task[None] | None = None
        self.rounds = 0
        self.sessions: set[SyncSession] = set()
        # App-level Ping after this much outbound silence (JS reconnects after 60 s without a message).
        self.ping_interval = 15.0
        self._in_round = False
        self._idle = asyncio.Condition()  # notified after every round (see `settled`)
        self._settle_waiters = 0  # callers inside `settled`
        dep.committer.listeners.append(self._on_commit)
        dep.committer.watermarks.append(lambda: self.processed_ts)  # keep the write log we still read

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="subscriptions")
        self._pinger = asyncio.create_task(self._ping_idle(), name="sync-keepalive")

    async def stop(self) -> None:
        await cancel_and_wait(self._task, self._pinger)
        self._task = self._pinger = None

    async def _ping_idle(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.ping_interval / 4))
            now = time.monotonic()
            for session in list(self.sessions):
                session.ping_if_idle(now, self.ping_interval)

    def _on_commit(self, ts: int) -> None:
        if not self.entries and not self._pending and not self._in_round and not self._wake.is_set():
            # Nothing is subscribed: no read set can contain what was written. Skip the round
            # (and tell `settled` waiters, who would otherwise wait for a round that never runs).
            self.processed_ts = max(self.processed_ts, ts)
            if self._settle_waiters:  # a task per commit only while someone waits in `settled`
                asyncio.get_running_loop().create_task(self._notify_idle())
            return
        self._wake.set()

    def request(self, session: SyncSession) -> None:
        """A session has query-set/identity changes or needs a Transition (after a mutation)."""
        self._pending.add(session)
        self._wake.set()

    def forget(self, session: SyncSession) -> None:
        self._pending.discard(session)
        self.sessions.discard(session)
        for entry in list(session.queries.values()):
            self._detach(session, entry)
        session.queries.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            self._in_round = True
            try:
                await self.round()
            except Exception:  # never let one bad round stop reactivity for everyone
                log.exception("subscription round failed")
            self._in_round = False
            async with self._idle:
                self._idle.notify_all()

    async def _notify_idle(self) -> None:
        async with self._idle:
            self._idle.notify_all()

    async def settled(self, ts: int | None = None) -> None:
        """Wait until every commit up to `ts` (default: the latest durable one) has gone through a
        finished round and no session is waiting for one: every Transition owed so far is queued in
        its session's outbox. Tests wait on this instead of sleeping."""
        target = self.dep.committer.durable_ts if ts is None else ts
        self._settle_waiters += 1
        try:
            async with self._idle:
                await self._idle.wait_for(lambda: self.processed_ts >= target and not self._in_round
                                          and not self._wake.is_set() and not self._pending)
        finally:
            self._settle_waiters -= 1

    # -- one round -------------------------------------------------------------------------------
    async def round(self) -> None:
        # The sessions asking for a Transition now (after a mutation: at or after its commit) are
        # taken BEFORE the snapshot, so it holds what they wait for. One asking while the round
        # runs (its reads may suspend: PostgreSQL) waits for the next round and its newer snapshot.
        pending, self._pending = self._pending, set()
        try:
            snapshot = await self.dep.persistence.snapshot()
        except BaseException:
            self._pending |= pending
            for session in pending:
                session.flush_soon()
            raise
        try:
            ts = snapshot.ts
            affected = self.affected_since(self.processed_ts, ts)
            self.processed_ts = max(self.processed_ts, ts)
            touched: dict[SyncSession, dict[int, bytes]] = {}
            for entry in affected:
                if self.entries.get(entry.key) is not entry:
                    continue  # retired (new code loaded); its subscribers are moving to a new entry
                if await self._rerun(entry, snapshot):
                    for session, query_ids in entry.subscribers.items():
                        frags = touched.setdefault(session, {})
                        for qid in query_ids:
                            frags[qid] = entry.fragment(qid)
            for session in pending:
                if session.closed:
                    continue
                frags = touched.setdefault(session, {})
                try:
                    await session.apply_pending(self, snapshot, frags)
                except Exception:  # one session's failure must not cost the others their updates
                    log.exception("applying a session's query-set change failed")
                    touched.pop(session, None)
                    session.fail(1011, "InternalServerError")
            self.rounds += 1
            for session, frags in touched.items():
                if not session.closed:
                    session.push_transition(ts, frags)
        finally:
            snapshot.close()
            for session in pending:  # a mutation's response waits for this round: never leave it queued
                session.flush_soon()

    async def code_changed(self) -> None:
        """New code was loaded (dev mode): every live query re-runs on it, and every session is sent
        whatever changed. A path that no longer exists becomes a QueryFailed for its subscribers."""
        # Retire every entry: sessions re-subscribing create fresh ones on the new code, and an old
        # entry goes away when its last subscriber has moved.
        self.entries.clear()
        for session in list(self.sessions):
            if not session.closed and session.queries:
                session.resubscribe_all = True
                self.request(session)

    def affected_since(self, after_ts: int, until_ts: int) -> set[QueryEntry]:
        """Live queries whose read sets contain a key written by a commit in (after_ts, until_ts]."""
        affected: set[QueryEntry] = set()
        write_log = self.dep.committer.write_log
        if not write_log.covers(after_ts):
            # Commits we never looked at are gone from the log (it was cut at its size bound):
            # assume every live query changed.
            return set(self.entries.values())
        for _, keys in write_log.since(after_ts, until_ts):
            for index_id, key in keys:
                self.index.affected(index_id, key, affected)
        return affected

    # -- entries -----------------------------------------------------------------------------------
    async def _rerun(self, entry: QueryEntry, snapshot: Any) -> bool:
        ev = await self.dep.runner.evaluate_query(entry.fn, entry.args, entry.auth, snapshot, entry.journal)  # type: ignore[arg-type]
        if entry.shared and ev.used_auth:
            # The function now depends on who asks: give every subscriber its own entry.
            await self._split(entry, snapshot)
            return False
        return self._store(entry, ev)

    def _store(self, entry: QueryEntry, ev: QueryEvaluation) -> bool:
        self.index.remove(entry)
        self.index.add(entry, ev.reads)
        entry.ts = ev.ts
        if ev.ok:
            return entry.set_result(ev)
        from .deployment import MISSING, failure_outcome  # (a cycle at module level) only on failure

        outcome = failure_outcome(ev.error, request_id(), entry.path, ev.log_lines,  # type: ignore[arg-type]
                                  self.dep.app.root)
        message = outcome.error_message or ""
        has_data = outcome.error_data is not MISSING
        return entry.set_result(ev, error_message=message, error_data=outcome.error_data if has_data else None,
                                has_data=has_data)

    async def _split(self, entry: QueryEntry, snapshot: Any) -> None:
        subscribers = list(entry.subscribers.items())
        self._drop(entry)
        for session, query_ids in subscribers:
            for qid in query_ids:
                new = await self.subscribe(session, qid, entry.path, entry.fn, entry.args, session.auth,
                                           entry.journal, snapshot, force_own=True)
                session.queries[qid] = new
                session.changed_queries.add(qid)
                self.request(session)

    def _drop(self, entry: QueryEntry) -> None:
        self.index.remove(entry)
        if self.entries.get(entry.key) is entry:
            del self.entries[entry.key]
        entry.subscribers.clear()

    def _detach(self, session: SyncSession, entry: QueryEntry, query_id: int | None = None) -> None:
        ids = entry.subscribers.get(session)
        if ids is None:
            return
        if query_id is None:
            ids.clear()
        else:
            ids.discard(query_id)
        if not ids:
            del entry.subscribers[session]
        if not entry.subscribers:
            self._drop(entry)

    async def subscribe(self, session: SyncSession, query_id: int, path: str, fn: RegisteredFunction | None,
                        args: Any, auth: Auth, journal: str | None, snapshot: Any, *,
                        force_own: bool = False, error: str | None = None) -> QueryEntry:
        """Attach (session, query_id) to the entry for this query, creating and running it at
        `snapshot` if no live entry exists."""
        args_key = _enc.encode(to_wire(args)) if error is None else b""
        shared_key = (path, args_key, journal)
        own_key = (path, args_key, journal, _identity_key(auth))
        entry = None if force_own else self.entries.get(shared_key)
        if entry is None:
            entry = self.entries.get(own_key)
        if entry is None:
            if fn is None:
                entry = QueryEntry(own_key, None, path, args, auth, journal)
                entry.set_result(None, error_message=error)
                self.entries[own_key] = entry
            else:
                ev = await self.dep.runner.evaluate_query(fn, args, auth, snapshot, journal)
                shared = not ev.used_auth and not force_own
                key = shared_key if shared else own_key
                entry = QueryEntry(key, fn, path, args, auth, journal)
                entry.shared = shared
                self.entries[key] = entry
                self._store(entry, ev)
        entry.subscribers.setdefault(session, set()).add(query_id)
        return entry

    def unsubscribe(self, session: SyncSession, query_id: int, entry: QueryEntry) -> None:
        self._detach(session, entry, query_id)

    @property
    def live_queries(self) -> int:
        return len(self.entries)


def _identity_key(auth: Auth) -> Any:
    if auth.identity is not None:
        return (auth.admin, auth.identity.get("tokenIdentifier") or repr(sorted(auth.identity.items())))
    return (auth.admin, None)

