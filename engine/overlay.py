"""A snapshot with some documents and index keys stated differently: the one mechanism behind
reads of newer state (engine.tail: commits not yet durable laid over the durable snapshot) and
older state (engine.history: recent commits undone over the latest snapshot).

An overlay holds, for some document ids, their state (stored JSON, or None = absent), and for some
keys of some indexes, their state (the document id the entry points at, or None = no entry). For
anything it does not mention, the base snapshot is right. Reads merge the two: a `get` asks the
overlay first; a `scan_page` reads a page of the base, drops the keys the overlay decides, swaps in
the overlay's version of documents that changed without moving, and merges the overlay's entries
that fall inside the page's span — so pages stay in key order and resuming after the page's last
base key loses nothing.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any

from .storage.base import Row, Snapshot

__all__ = ["OverlaySnapshot"]

DocState = tuple[int, bytes] | None  # (table number, stored JSON), or None: the document does not exist
KeyState = str | None  # the document id the entry points at, or None: no entry


class OverlaySnapshot(Snapshot):
    """Subclasses set `base`, `ts` and the three maps (or override the lookups)."""

    base: Snapshot
    _docs: dict[str, Any]  # doc id -> DocState (subclasses may store more; see _doc_state)
    _keys: dict[int, dict[bytes, Any]]  # index id -> key -> KeyState (or a tuple ending in it)
    _sorted: dict[int, list[bytes]]  # index id -> the keys of _keys[index], sorted

    @property
    def inline_reads(self) -> bool:  # type: ignore[override]
        return self.base.inline_reads

    def _doc_state(self, doc_id: str) -> tuple[bool, DocState]:
        """(whether the overlay decides this document, its state)."""
        state = self._docs.get(doc_id, _MISSING)
        if state is _MISSING:
            return False, None
        return True, state

    def _key_state(self, index_id: int, key: bytes) -> KeyState:
        return self._keys[index_id][key]

    async def get(self, doc_id: str) -> tuple[int, bytes] | None:
        decided, state = self._doc_state(doc_id)
        if decided:
            return state
        return await self.base.get(doc_id)

    def get_now(self, doc_id: str) -> tuple[int, bytes] | None:
        """`get` without a coroutine, over a base that reads inline (has `get_now`)."""
        decided, state = self._doc_state(doc_id)
        if decided:
            return state
        return self.base.get_now(doc_id)  # type: ignore[attr-defined]

    async def scan_page(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                        limit: int) -> tuple[list[Row], bytes | None]:
        rows, resume = await self.base.scan_page(index_id, lo, hi, desc, limit)
        if not self._keys.get(index_id) and not self._docs:
            return rows, resume
        pending = self._pending(index_id, lo, hi, desc, resume)
        values = {d: await self.base.get(d) for d in self._undecided(pending)}
        return self._merge(rows, pending, desc, values), resume

    def scan_page_now(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                      limit: int) -> tuple[list[Row], bytes | None]:
        """`scan_page` without a coroutine, over a base that reads inline."""
        rows, resume = self.base.scan_page_now(index_id, lo, hi, desc, limit)  # type: ignore[attr-defined]
        if not self._keys.get(index_id):
            if not self._docs:
                return rows, resume
            # Only documents that changed without moving: swap their values in.
            out: list[Row] = []
            state_of = self._doc_state
            for row in rows:
                decided, state = state_of(row[1])
                if not decided:
                    out.append(row)
                elif state is not None:
                    out.append((row[0], row[1], state[1]))
            return out, resume
        pending = self._pending(index_id, lo, hi, desc, resume)
        values = {d: self.base.get_now(d) for d in self._undecided(pending)}  # type: ignore[attr-defined]
        return self._merge(rows, pending, desc, values), resume

    def _pending(self, index_id: int, lo: bytes, hi: bytes, desc: bool,
                 resume: bytes | None) -> list[tuple[bytes, KeyState]]:
        """The overlay's keys inside a page's span, in scan order: the whole range when the base
        is done, else up to (and including) the base page's last key."""
        by_key = self._keys.get(index_id)
        if not by_key:
            return []
        keys = self._sorted[index_id]
        if desc:
            start = bisect_left(keys, lo if resume is None else resume)
            stop = bisect_left(keys, hi)
        else:
            start = bisect_left(keys, lo)
            stop = bisect_left(keys, hi) if resume is None else bisect_left(keys, resume + b"\x00")
        pending = [(k, self._key_state(index_id, k)) for k in keys[start:stop]]
        if desc:
            pending.reverse()
        return pending

    def _undecided(self, pending: list[tuple[bytes, KeyState]]) -> list[str]:
        """Documents the pending entries point at whose value the overlay does not hold."""
        return [d for _, d in pending if d is not None and not self._doc_state(d)[0]]

    def _merge(self, rows: list[Row], pending: list[tuple[bytes, KeyState]], desc: bool,
               values: dict[str, tuple[int, bytes] | None]) -> list[Row]:
        out: list[Row] = []
        p, n = 0, len(pending)
        for row in rows:
            key = row[0]
            while p < n and ((pending[p][0] > key) if desc else (pending[p][0] < key)):
                self._emit(pending[p], values, out)
                p += 1
            if p < n and pending[p][0] == key:
                self._emit(pending[p], values, out)  # the overlay decides this key
                p += 1
                continue
            decided, state = self._doc_state(row[1])
            if not decided:
                out.append(row)
            elif state is not None:  # changed without moving in this index
                out.append((key, row[1], state[1]))
        while p < n:
            self._emit(pending[p], values, out)
            p += 1
        return out

    def _emit(self, entry: tuple[bytes, KeyState], values: dict[str, tuple[int, bytes] | None],
              out: list[Row]) -> None:
        key, doc_id = entry
        if doc_id is None:
            return
        decided, state = self._doc_state(doc_id)
        found = state if decided else values.get(doc_id)
        if found is not None:
            out.append((key, doc_id, found[1]))

    async def mutation_result(self, session_id: str, request_id: int) -> tuple[int, bytes] | None:
        return await self.base.mutation_result(session_id, request_id)

    def close(self) -> None:
        self.base.close()


_MISSING: Any = object()
