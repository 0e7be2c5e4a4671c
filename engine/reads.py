"""Read sets: what a function read, as half-open key intervals [lo, hi) per index.

One record, two uses: the committer checks a mutation's read set against the keys written since its
snapshot (optimistic concurrency control), and the subscription layer checks a query's read set
against each commit's written keys (invalidation). A `db.get(id)` is a point interval on the table's
`by_id` index; a scan is the interval it actually walked (cut short where `take`/`first` stopped).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator

__all__ = ["ReadSet", "point", "successor"]


def successor(key: bytes) -> bytes:
    """The smallest key greater than `key` (keys are byte strings)."""
    return key + b"\x00"


def _lo(interval: tuple[bytes, bytes]) -> bytes:
    return interval[0]


def point(key: bytes) -> tuple[bytes, bytes]:
    return key, successor(key)


class ReadSet:
    __slots__ = ("_by_index", "_sorted")

    def __init__(self) -> None:
        self._by_index: dict[int, list[tuple[bytes, bytes]]] = {}
        self._sorted = True

    def add(self, index_id: int, lo: bytes, hi: bytes) -> None:
        if lo < hi:
            self._by_index.setdefault(index_id, []).append((lo, hi))
            self._sorted = False

    def update(self, other: ReadSet) -> None:
        for index_id, intervals in other._by_index.items():
            self._by_index.setdefault(index_id, []).extend(intervals)
        self._sorted = False

    def _normalize(self) -> None:
        """Sort and merge overlapping intervals, so a lookup is one bisect per index."""
        for index_id, intervals in self._by_index.items():
            intervals.sort()
            merged: list[tuple[bytes, bytes]] = []
            for lo, hi in intervals:
                if merged and lo <= merged[-1][1]:
                    if hi > merged[-1][1]:
                        merged[-1] = (merged[-1][0], hi)
                else:
                    merged.append((lo, hi))
            self._by_index[index_id] = merged
        self._sorted = True

    def contains(self, index_id: int, key: bytes) -> bool:
        if not self._sorted:
            self._normalize()
        intervals = self._by_index.get(index_id)
        if not intervals:
            return False
        # Merged intervals are disjoint and sorted: the only candidate is the last with lo <= key.
        i = bisect_right(intervals, key, key=_lo) - 1
        return i >= 0 and key < intervals[i][1]

    def overlaps(self, written: Iterable[tuple[int, bytes]]) -> bool:
        return any(self.contains(index_id, key) for index_id, key in written)

    def __iter__(self) -> Iterator[tuple[int, bytes, bytes]]:
        if not self._sorted:
            self._normalize()
        for index_id, intervals in self._by_index.items():
            for lo, hi in intervals:
                yield index_id, lo, hi

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_index.values())

    def __repr__(self) -> str:
        return f"ReadSet({list(self)!r})"
