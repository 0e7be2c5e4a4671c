"""The write log: for each recent commit, its timestamp and every index key it wrote.

A key is written when a document enters, leaves or changes inside an index range, so for each
changed document the log holds its old and new key in every index of its table (including `by_id`).
OCC validation asks "did anything committed after my snapshot touch what I read?"; the subscription
layer asks "which live read sets contain these keys?". Both read this one log.

Entries are appended when a commit is sequenced (before it is durable), in timestamp order, and are
pruned by count; a snapshot older than the oldest retained entry can no longer be validated, which
the committer treats as a conflict (the mutation re-runs on a fresh snapshot).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

__all__ = ["WriteLog"]

WrittenKeys = list[tuple[int, bytes]]


class WriteLog:
    def __init__(self, start_ts: int, *, retain: int = 50_000) -> None:
        self._ts: list[int] = []
        self._keys: list[WrittenKeys] = []
        self._retain = retain
        # Every commit with ts <= horizon that is no longer in the log.
        self.horizon = start_ts

    @property
    def latest_ts(self) -> int:
        return self._ts[-1] if self._ts else self.horizon

    def append(self, ts: int, keys: WrittenKeys) -> None:
        assert not self._ts or ts > self._ts[-1], "write log timestamps must increase"
        self._ts.append(ts)
        self._keys.append(keys)
        if len(self._ts) > self._retain * 2:
            cut = len(self._ts) - self._retain
            self.horizon = self._ts[cut - 1]
            del self._ts[:cut]
            del self._keys[:cut]

    def covers(self, ts: int) -> bool:
        """True if every commit after `ts` is still in the log."""
        return ts >= self.horizon

    def since(self, ts: int, until: int | None = None) -> Iterator[tuple[int, WrittenKeys]]:
        """Commits with ts in (ts, until]."""
        start = bisect_right(self._ts, ts)
        stop = len(self._ts) if until is None else bisect_right(self._ts, until)
        for i in range(start, stop):
            yield self._ts[i], self._keys[i]
