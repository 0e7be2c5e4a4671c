"""Recent history: read the database as it was at a timestamp of the last ~30 seconds.

Storage keeps one version of each document. To answer `/api/query_at_ts` (what the npm
ConvexHttpClient's `consistentQuery` uses: one timestamp for a series of queries) the committer
also keeps, for every recent commit, what it overwrote:

- each written document's previous value (the raw stored bytes, or None if the commit created it),
- each changed entry of a stored index: (index, old key, new key, document id).

A view at `ts` is the latest snapshot with the commits after `ts` undone on the fly. For a document
or an index key, the *first* commit after `ts` that touched it knows its state at `ts`: a key whose
first change deleted it was there (pointing at that document), a key whose first change put it was
not. Nothing is copied up front: `get` looks the id up in the undo map, `scan` filters the latest
index range and merges back the keys that were there at `ts`, in key order.

Retention is a time window (Convex keeps about 30 s) and a byte budget, whichever is smaller; a
timestamp older than what is retained cannot be read. Commits enter in timestamp order when they
are sequenced. A commit that then fails to persist is harmless here: its previous values were the
true state at its timestamp (OCC checked it), and its own puts never reached the snapshot.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .overlay import OverlaySnapshot
from .storage.base import Snapshot

__all__ = ["History", "HistoricalSnapshot", "Undo"]

DocBefore = tuple[str, int, "bytes | None"]  # (doc id, table number, previous stored value)
EntryChange = tuple[int, "bytes | None", "bytes | None", str]  # (index id, old key, new key, doc id)


@dataclass(slots=True)
class Undo:
    ts: int
    docs: list[DocBefore]
    entries: list[EntryChange]
    size: int


class History:
    def __init__(self, start_ts: int, *, window_ns: int = 30_000_000_000, max_bytes: int = 64 << 20) -> None:
        self.window_ns = window_ns
        self.max_bytes = max_bytes
        self._undos: deque[Undo] = deque()
        self._bytes = 0
        # Every commit after `horizon` is retained: a view at ts >= horizon can be built.
        self.horizon = start_ts

    def append(self, ts: int, docs: list[DocBefore], entries: list[EntryChange]) -> None:
        size = 64 + sum(80 + len(doc_id) + (len(raw) if raw is not None else 0) for doc_id, _, raw in docs)
        size += sum(96 + len(old or b"") + len(new or b"") for _, old, new, _ in entries)
        self._undos.append(Undo(ts, docs, entries, size))
        self._bytes += size
        oldest_kept = ts - self.window_ns
        while self._undos and (self._undos[0].ts < oldest_kept or self._bytes > self.max_bytes):
            dropped = self._undos.popleft()
            self._bytes -= dropped.size
            self.horizon = dropped.ts

    def covers(self, ts: int) -> bool:
        return ts >= self.horizon

    @property
    def retained_bytes(self) -> int:
        return self._bytes

    def view(self, base: Snapshot, ts: int) -> Snapshot:
        """`base` (a snapshot at or after `ts`) as it was at `ts`. Needs `covers(ts)`."""
        if base.ts <= ts:
            return base
        if not self.covers(ts):
            raise ValueError(f"history starts after {ts}")
        docs: dict[str, tuple[int, bytes] | None] = {}
        keys: dict[int, dict[bytes, str | None]] = {}
        # Newest first, overwriting: what remains is the first change after ts of each id and key.
        # The cost follows the commits after ts, not the size of the history. (Within one commit a
        # key appears at most once: keys end with the document id.)
        for undo in reversed(self._undos):
            if undo.ts <= ts:
                break
            if undo.ts > base.ts:
                continue  # sequenced after the snapshot was taken: not in it
            for doc_id, table_number, raw in undo.docs:
                docs[doc_id] = (table_number, raw) if raw is not None else None
            for index_id, old_key, new_key, doc_id in undo.entries:
                by_key = keys.get(index_id)
                if by_key is None:
                    by_key = keys[index_id] = {}
                if old_key is not None:
                    by_key[old_key] = doc_id  # first change deleted it: it was there at ts
                if new_key is not None:
                    by_key[new_key] = None  # first change put it: it was not
        return HistoricalSnapshot(base, ts, docs, keys)


class HistoricalSnapshot(OverlaySnapshot):
    """A snapshot read through an undo overlay (see the module docstring)."""

    __slots__ = ("base", "ts", "_docs", "_keys", "_sorted")

    def __init__(self, base: Snapshot, ts: int, docs: dict[str, tuple[int, bytes] | None],
                 keys: dict[int, dict[bytes, str | None]]) -> None:
        self.base = base
        self.ts = ts
        self._docs = docs
        self._keys = keys
        self._sorted = {index_id: sorted(by_key) for index_id, by_key in keys.items()}
