"""The write log: for each recent commit, its timestamp and every index key it wrote.

A key is written when a document enters, leaves or changes inside an index range, so for each
changed document the log holds its old and new key in every index of its table (including `by_id`).
OCC validation asks "did anything committed after my snapshot touch what I read?"; the subscription
layer asks "which live read sets contain these keys?". Both read this one log.

Entries are appended when a commit is sequenced (before it is durable), in timestamp order. The
committer trims them once every reader is past them (`trim`); a view older than the oldest retained
entry can no longer be validated, which the committer treats as a conflict (the mutation re-runs on
a fresh view), and a subscription watermark older than it means "assume everything changed".
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

__all__ = ["WriteLog"]

WrittenKeys = list[tuple[int, bytes]]
_EMPTY: WrittenKeys = []


class WriteLog:
    def __init__(self, start_ts: int) -> None:
        self._ts: list[int] = []
        self._keys: list[WrittenKeys] = []
        self._start = 0  # entries before this index are dropped (compacted in batches)
        self.keys_held = 0  # written keys in the retained entries (search indexes write many per commit)
        # index id -> ts of the latest commit that wrote a key of it (never trimmed): lets a
        # listener that cares about one index skip the log when nothing touched it.
        self.last_written: dict[int, int] = {}
        # Every commit with ts <= horizon that is no longer in the log.
        self.horizon = start_ts

    def __len__(self) -> int:
        return len(self._ts) - self._start

    @property
    def latest_ts(self) -> int:
        return self._ts[-1] if len(self._ts) > self._start else self.horizon

    def append(self, ts: int, keys: WrittenKeys) -> None:
        assert not self._ts or ts > self._ts[-1], "write log timestamps must increase"
        self._ts.append(ts)
        self._keys.append(keys)
        self.keys_held += len(keys)
        last = self.last_written
        for index_id, _ in keys:
            last[index_id] = ts

    def trim(self, keep_after: int, *, max_entries: int) -> None:
        """Drop entries with ts <= keep_after, and the oldest beyond `max_entries` in any case."""
        ts_list = self._ts
        cut = bisect_right(ts_list, keep_after, lo=self._start)
        cut = max(cut, len(ts_list) - max_entries)
        if cut <= self._start:
            return
        self.horizon = max(self.horizon, ts_list[cut - 1])
        for i in range(self._start, cut):
            self.keys_held -= len(self._keys[i])
            self._keys[i] = _EMPTY
        self._start = cut
        if cut > 4096 and cut * 2 > len(ts_list):  # compact: the dropped prefix is the larger part
            del ts_list[:cut]
            del self._keys[:cut]
            self._start = 0

    def covers(self, ts: int) -> bool:
        """True if every commit after `ts` is still in the log."""
        return ts >= self.horizon

    def since(self, ts: int, until: int | None = None) -> Iterator[tuple[int, WrittenKeys]]:
        """Commits with ts in (ts, until]."""
        start = bisect_right(self._ts, ts, lo=self._start)
        stop = len(self._ts) if until is None else bisect_right(self._ts, until, lo=self._start)
        for i in range(start, stop):
            yield self._ts[i], self._keys[i]
