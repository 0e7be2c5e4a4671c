"""The tail: writes of commits that are sequenced but may not be in the read snapshot yet.

Mutations run against the *latest sequenced* state: the shared durable snapshot with the tail laid
over it (`TailView`). A mutation whose function finishes without ever suspending — the common case,
since SQLite reads never suspend — runs inside one event-loop step, so nothing can be sequenced
between its first read and its commit: it cannot conflict, however contended its documents are.
A function that does suspend (`asyncio.gather`, a table created on first write, ...) has its view
frozen at its first suspension (a private copy of the tail over the same durable snapshot) and is
validated by OCC against whatever was sequenced meanwhile (engine.committer).

Queries never read the tail: they read durable snapshots only, so a client never sees data that a
failed disk write could take back. A mutation that read the tail answers its client only once its
own commit is durable, which implies every commit before it is.

Invariants:
- For each document id, index key and mutation-result key written by a commit that may not be
  durable yet, the tail holds its *latest* sequenced state and the ts of the commit that set it.
  Everything else reads as in any durable snapshot taken at or after the oldest tail commit.
- Laying the tail over a snapshot that already contains some of its commits changes nothing: per
  id and key, the tail states the final value.
- `trim(ts)` drops what every snapshot at or after `ts` already holds. It happens only when a new
  view is opened, never while an unfrozen view is in use (that view's run is one loop step).
"""

from __future__ import annotations

from bisect import insort
from collections import deque

from .overlay import OverlaySnapshot
from .storage.base import CommitRecord, Snapshot

__all__ = ["Tail", "TailView"]

DocState = tuple[int, "int | None", "bytes | None"]  # (ts, table number, stored JSON or None = deleted)
KeyState = tuple[int, "str | None"]  # (ts, document id or None = no entry)


class Tail:
    __slots__ = ("docs", "keys", "sorted", "results", "_commits")

    def __init__(self) -> None:
        self.docs: dict[str, DocState] = {}
        self.keys: dict[int, dict[bytes, KeyState]] = {}
        self.sorted: dict[int, list[bytes]] = {}  # per index, the keys of `keys[index]` in order
        self.results: dict[tuple[str, int], tuple[int, bytes]] = {}
        # What each commit touched, oldest first, so trim() costs what it removes.
        self._commits: deque[tuple[int, list[str], list[tuple[int, bytes]], list[tuple[str, int]]]] = deque()

    def __len__(self) -> int:
        return len(self._commits)

    def add(self, record: CommitRecord) -> None:
        """A commit was sequenced. Its entry puts/deletes are the stored-index changes."""
        ts = record.ts
        docs = self.docs
        ids: list[str] = []
        for doc_id, table, raw in record.doc_puts:
            docs[doc_id] = (ts, table, raw)
            ids.append(doc_id)
        for doc_id in record.doc_deletes:
            docs[doc_id] = (ts, None, None)
            ids.append(doc_id)
        touched: list[tuple[int, bytes]] = []
        for index_id, key in record.entry_deletes:
            self._put_key(index_id, key, (ts, None))
            touched.append((index_id, key))
        for index_id, key, doc_id in record.entry_puts:
            self._put_key(index_id, key, (ts, doc_id))
            touched.append((index_id, key))
        results: list[tuple[str, int]] = []
        for session_id, request_id, value in record.mutation_results:
            self.results[(session_id, request_id)] = (ts, value)
            results.append((session_id, request_id))
        self._commits.append((ts, ids, touched, results))

    def _put_key(self, index_id: int, key: bytes, state: KeyState) -> None:
        by_key = self.keys.get(index_id)
        if by_key is None:
            by_key = self.keys[index_id] = {}
            self.sorted[index_id] = []
        if key not in by_key:
            insort(self.sorted[index_id], key)
        by_key[key] = state

    def trim(self, ts: int) -> None:
        """Forget every state whose latest write is at or before `ts` (a snapshot at `ts` has it)."""
        commits = self._commits
        if not commits or commits[0][0] > ts:
            return
        docs, keys, results = self.docs, self.keys, self.results
        changed: set[int] = set()
        while commits and commits[0][0] <= ts:
            _, ids, touched, result_keys = commits.popleft()
            for doc_id in ids:
                state = docs.get(doc_id)
                if state is not None and state[0] <= ts:
                    del docs[doc_id]
            for index_id, key in touched:
                by_key = keys.get(index_id)
                if by_key is not None:
                    state2 = by_key.get(key)
                    if state2 is not None and state2[0] <= ts:
                        del by_key[key]
                        changed.add(index_id)
            for rk in result_keys:
                state3 = results.get(rk)
                if state3 is not None and state3[0] <= ts:
                    del results[rk]
        for index_id in changed:
            by_key = keys[index_id]
            if by_key:
                self.sorted[index_id] = [k for k in self.sorted[index_id] if k in by_key]
            else:
                del keys[index_id]
                del self.sorted[index_id]

    def clear(self) -> None:
        """Drop everything (the commits it held failed to persist)."""
        self.docs.clear()
        self.keys.clear()
        self.sorted.clear()
        self.results.clear()
        self._commits.clear()


class TailView(OverlaySnapshot):
    """The latest sequenced state at `ts`: a durable snapshot with the tail over it (see the module
    docstring). Reads the live tail until `freeze()`, then a private copy of it."""

    __slots__ = ("base", "ts", "_docs", "_keys", "_sorted", "_results", "frozen")

    def __init__(self, base: Snapshot, tail: Tail, ts: int) -> None:
        self.base = base
        self.ts = ts
        self._docs = tail.docs
        self._keys = tail.keys
        self._sorted = tail.sorted
        self._results = tail.results
        self.frozen = False

    def freeze(self) -> None:
        """Keep this view at `ts` from now on, whatever is sequenced later."""
        if self.frozen:
            return
        self.frozen = True
        self._docs = dict(self._docs)
        self._keys = {i: dict(k) for i, k in self._keys.items()}
        self._sorted = {i: list(k) for i, k in self._sorted.items()}
        self._results = dict(self._results)

    def _doc_state(self, doc_id: str) -> tuple[bool, tuple[int, bytes] | None]:
        state = self._docs.get(doc_id)
        if state is None:
            return False, None
        return True, (None if state[2] is None else (state[1], state[2]))  # type: ignore[return-value]

    def _key_state(self, index_id: int, key: bytes) -> str | None:
        return self._keys[index_id][key][1]

    async def mutation_result(self, session_id: str, request_id: int) -> tuple[int, bytes] | None:
        state = self._results.get((session_id, request_id))
        if state is not None:
            return state
        return await self.base.mutation_result(session_id, request_id)
