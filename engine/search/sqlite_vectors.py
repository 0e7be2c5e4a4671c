"""Vector indexes on SQLite: a table of float32 vectors (the truth, written in the commit's
transaction) and an in-memory usearch HNSW graph over it (the accelerator).

Table `vectors_N` per vector index N: `key` (INTEGER PRIMARY KEY, also the graph's key), `doc_id`
(UNIQUE), `vec` (float32 little-endian), and one column `f<i>` per filter field holding the value's
equality key, each with a B-tree index.

The graph follows the table: every durable group commit applies its vector changes to it before
the write returns (`SqliteVectorIndexes.committed`), so a snapshot taken afterwards and the graph
agree. At start it is loaded from `<db>.vectors/N.usearch` if that file was saved (on a clean
shutdown) at exactly the database's commit timestamp; otherwise (a crash, a restore, a first start)
it is rebuilt from the table in a worker thread while the server already serves: until then, and
for every search the graph cannot answer well, the search is exact.

Search (`SqliteVectorReader.search`):
- exact (brute force in NumPy) when the candidates, all rows or those passing the filters (their
  keys from the filter columns' B-trees), are at most `exact_max` (10 000 by default): over the
  graph's copies of their vectors, the winners then re-read and re-scored from the snapshot (over
  the snapshot's rows while the graph is being built); results equal brute-force cosine;
- otherwise the graph: the k nearest, over-fetched and widened (x4) until `limit` of them pass the
  filters, then re-checked and re-scored against the snapshot's rows (a row the snapshot does not
  hold is dropped; scores are exact cosine of the stored vectors).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .backend import SearchOp, VectorReader, VectorRow

__all__ = ["SqliteVectorIndexes", "SqliteVectorReader", "Ann", "exact_top"]

log = logging.getLogger("engine.search")

EXACT_MAX = int(os.environ.get("ENGINE_VECTOR_EXACT_MAX", "10000"))
CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128


def _table(index_id: int) -> str:
    return f"vectors_{int(index_id)}"


def create_vector_index(conn: sqlite3.Connection, index_id: int, filters: int) -> None:
    cols = "".join(f", f{i} BLOB" for i in range(filters))
    conn.execute(f"CREATE TABLE IF NOT EXISTS {_table(index_id)} (key INTEGER PRIMARY KEY, doc_id TEXT NOT NULL"
                 f" UNIQUE, vec BLOB NOT NULL{cols})")
    for i in range(filters):
        conn.execute(f"CREATE INDEX IF NOT EXISTS {_table(index_id)}_f{i} ON {_table(index_id)} (f{i})")


def drop_vector_index(conn: sqlite3.Connection, index_id: int) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {_table(index_id)}")


def exact_top(query: np.ndarray, keys: list[Any], matrix: np.ndarray, limit: int) -> list[tuple[Any, float]]:
    """The `limit` rows of `matrix` most cosine-similar to `query`, best first (ties: key order)."""
    if not keys or limit <= 0:
        return []
    qn = float(np.linalg.norm(query))
    norms = np.linalg.norm(matrix, axis=1)
    dots = matrix @ query
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = np.where((norms > 0) & (qn > 0), dots / (norms * np.float32(qn)), np.float32(0.0)).astype(np.float32)
    n = len(keys)
    if limit < n:
        part = np.argpartition(-scores, limit - 1)[:limit]
        # Keep every row tied with the last one kept, so ties are broken by key, not by chance.
        cut = scores[part].min()
        part = np.nonzero(scores >= cut)[0]
    else:
        part = np.arange(n)
    ranked = sorted(((-float(scores[i]), keys[i]) for i in part), key=lambda t: (t[0], t[1]))
    return [(k, -s) for s, k in ranked[:limit]]


class Ann:
    """The HNSW graph of one vector index, plus each key's filter values (for post-filtering)."""

    def __init__(self, dimensions: int) -> None:
        from usearch.index import Index

        self.dimensions = dimensions
        self.index = Index(ndim=dimensions, metric="cos", dtype="f32", connectivity=CONNECTIVITY,
                           expansion_add=EXPANSION_ADD, expansion_search=EXPANSION_SEARCH)
        self.filters: dict[int, tuple[bytes, ...]] = {}
        self.ready = False
        self.pending: list[tuple[int, bytes | None, tuple[bytes, ...]]] | None = None  # while building

    def __len__(self) -> int:
        return len(self.filters)

    def put(self, key: int, vector: bytes | None, filters: tuple[bytes, ...]) -> None:
        if self.pending is not None:
            self.pending.append((key, vector, filters))
            return
        self._apply(key, vector, filters)

    def put_many(self, changes: dict[int, tuple[bytes | None, tuple[bytes, ...]]]) -> None:
        """Several keys at once: one multi-threaded insertion for the new vectors."""
        if self.pending is not None or len(changes) < 8:
            for key, (vector, filters) in changes.items():
                self.put(key, vector, filters)
            return
        for key in changes:
            if key in self.filters:
                self.index.remove(key)
                del self.filters[key]
        added = [(key, vector, filters) for key, (vector, filters) in changes.items() if vector is not None]
        if added:
            keys = np.fromiter((k for k, _, _ in added), dtype=np.uint64, count=len(added))
            matrix = np.frombuffer(b"".join(v for _, v, _ in added), dtype="<f4").reshape(len(added), self.dimensions)
            self.index.add(keys, matrix, threads=max(1, min(4, os.cpu_count() or 1)))
            for key, _, filters in added:
                self.filters[key] = filters

    def _apply(self, key: int, vector: bytes | None, filters: tuple[bytes, ...]) -> None:
        if key in self.filters:
            self.index.remove(key)
            del self.filters[key]
        if vector is not None:
            self.index.add(key, np.frombuffer(vector, dtype="<f4"))
            self.filters[key] = filters

    def build(self, keys: np.ndarray, matrix: np.ndarray, filters: dict[int, tuple[bytes, ...]]) -> None:
        """Fill an empty graph (a worker thread may run this)."""
        if len(keys):
            self.index.add(keys, matrix, threads=max(1, min(4, os.cpu_count() or 1)))
        self.filters.update(filters)

    def finish_build(self) -> None:
        pending, self.pending = self.pending or [], None
        for key, vector, filters in pending:
            self._apply(key, vector, filters)
        self.ready = True

    def nearest(self, query: np.ndarray, k: int) -> list[int]:
        if not self.filters or k <= 0:
            return []
        self.index.expansion_search = max(EXPANSION_SEARCH, 2 * k)
        found = self.index.search(query, min(k, len(self.filters)))
        return [int(x) for x in found.keys]

    def save(self, path: Path, stamp: int) -> None:
        self.index.save(str(path))
        meta = {"ts": stamp, "filters": {str(k): [f.hex() for f in v] for k, v in self.filters.items()}}
        path.with_suffix(".json").write_text(json.dumps(meta))

    @classmethod
    def load(cls, path: Path, dimensions: int, stamp: int) -> Ann | None:
        meta_path = path.with_suffix(".json")
        try:
            meta = json.loads(meta_path.read_text())
            if meta.get("ts") != stamp:
                return None
            ann = cls(dimensions)
            ann.index.load(str(path))
            ann.filters = {int(k): tuple(bytes.fromhex(f) for f in v) for k, v in meta["filters"].items()}
            if len(ann.index) != len(ann.filters):
                return None
            ann.ready = True
            return ann
        except (OSError, ValueError, KeyError, RuntimeError):
            return None


class SqliteVectorIndexes:
    """The vector side of the SQLite search store: tables, graphs, and their upkeep."""

    def __init__(self, db_path: Path | None) -> None:
        self.dir = db_path.with_name(db_path.name + ".vectors") if db_path is not None else None
        self.anns: dict[int, Ann] = {}
        self.dimensions: dict[int, int] = {}
        self.filter_counts: dict[int, int] = {}
        self.exact_max = EXACT_MAX
        self._staged: list[tuple[int, int, bytes | None, tuple[bytes, ...]]] = []
        self._builds: dict[int, asyncio.Task[None]] = {}
        self._lock = threading.Lock()

    # -- registry ------------------------------------------------------------------------------
    def known(self, index_id: int, dimensions: int, filters: int) -> None:
        self.dimensions[index_id] = dimensions
        self.filter_counts[index_id] = filters
        if index_id not in self.anns:
            self.anns[index_id] = Ann(dimensions)
            self.anns[index_id].ready = True  # empty and in step (a new index); `start_build` resets

    def forget(self, index_id: int) -> None:
        self.anns.pop(index_id, None)
        self.dimensions.pop(index_id, None)
        self.filter_counts.pop(index_id, None)
        task = self._builds.pop(index_id, None)
        if task is not None:
            task.cancel()
        if self.dir is not None:
            for suffix in (".usearch", ".json"):
                try:
                    (self.dir / f"{index_id}{suffix}").unlink()
                except OSError:
                    pass

    # -- writes (inside the persistence's transaction, on its writer thread) -------------------
    def write(self, conn: sqlite3.Connection, ops: Iterable[SearchOp]) -> None:
        for op in ops:
            table = _table(op.index_id)
            entry = op.entry
            row = conn.execute(f"SELECT key FROM {table} WHERE doc_id = ?", (op.doc_id,)).fetchone()
            if entry is None:
                if row is not None:
                    conn.execute(f"DELETE FROM {table} WHERE key = ?", (row[0],))
                    self._staged.append((op.index_id, row[0], None, ()))
                continue
            assert isinstance(entry, VectorRow)
            cols = ", ".join(f"f{i}" for i in range(len(entry.filters)))
            if row is None:
                marks = ", ".join("?" for _ in entry.filters)
                cur = conn.execute(f"INSERT INTO {table} (doc_id, vec{', ' + cols if cols else ''}) VALUES "
                                   f"(?, ?{', ' + marks if marks else ''})", (op.doc_id, entry.vector, *entry.filters))
                key = int(cur.lastrowid or 0)
            else:
                key = row[0]
                sets = "".join(f", f{i} = ?" for i in range(len(entry.filters)))
                conn.execute(f"UPDATE {table} SET vec = ?{sets} WHERE key = ?", (entry.vector, *entry.filters, key))
            self._staged.append((op.index_id, key, entry.vector, entry.filters))

    def committed(self) -> None:
        staged, self._staged = self._staged, []
        final: dict[int, dict[int, tuple[bytes | None, tuple[bytes, ...]]]] = {}
        for index_id, key, vector, filters in staged:  # the last write of a key in the group wins
            final.setdefault(index_id, {})[key] = (vector, filters)
        for index_id, changes in final.items():
            ann = self.anns.get(index_id)
            if ann is not None:
                ann.put_many(changes)

    def rolled_back(self) -> None:
        self._staged = []

    # -- the graphs at start ---------------------------------------------------------------------
    def start_build(self, index_id: int, db_path: Path, stamp: int) -> None:
        """Load the saved graph if it matches the database, else rebuild it in the background."""
        dims = self.dimensions[index_id]
        if self.dir is not None:
            loaded = Ann.load(self.dir / f"{index_id}.usearch", dims, stamp)
            if loaded is not None:
                self.anns[index_id] = loaded
                return
        ann = Ann(dims)
        ann.pending = []  # commits from now on are replayed once the build is done
        self.anns[index_id] = ann
        self._builds[index_id] = asyncio.get_running_loop().create_task(
            self._build(index_id, ann, db_path), name=f"vector-index-{index_id}")

    async def _build(self, index_id: int, ann: Ann, db_path: Path) -> None:
        dims = self.dimensions[index_id]
        nfilters = self.filter_counts[index_id]

        def work() -> int:
            conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute("BEGIN")
                cols = "".join(f", f{i}" for i in range(nfilters))
                rows = conn.execute(f"SELECT key, vec{cols} FROM {_table(index_id)}").fetchall()
                conn.execute("COMMIT")
            finally:
                conn.close()
            keys = np.fromiter((r[0] for r in rows), dtype=np.uint64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dims) \
                if rows else np.zeros((0, dims), dtype=np.float32)
            ann.build(keys, matrix, {r[0]: tuple(r[2:]) for r in rows})
            return len(rows)

        try:
            count = await asyncio.to_thread(work)
        except asyncio.CancelledError:
            raise
        except Exception:  # the table stays the truth: searches keep being exact
            log.exception("Building the vector graph of index %d failed; searches stay exact", index_id)
            return
        ann.finish_build()
        self._builds.pop(index_id, None)
        if count:
            log.info("Vector index %d: graph of %d vectors built", index_id, count)

    async def wait_built(self) -> None:
        """Until every graph being rebuilt is ready (tests; benchmarks)."""
        while self._builds:
            await asyncio.gather(*list(self._builds.values()), return_exceptions=True)

    def save_all(self, stamp: int) -> None:
        if self.dir is None:
            return
        for index_id, ann in self.anns.items():
            if not ann.ready:
                continue
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                ann.save(self.dir / f"{index_id}.usearch", stamp)
            except (OSError, RuntimeError):
                log.warning("Could not save the vector graph of index %d; it is rebuilt at the next start", index_id)

    def close(self) -> None:
        for task in self._builds.values():
            task.cancel()
        self._builds.clear()


class SqliteVectorReader(VectorReader):
    """One vector index through a snapshot's read transaction (see the module docstring)."""

    def __init__(self, conn: sqlite3.Connection, index_id: int, indexes: SqliteVectorIndexes) -> None:
        self._conn = conn
        self._id = index_id
        self._table = _table(index_id)
        self._indexes = indexes
        self._dims = indexes.dimensions[index_id]

    async def count(self) -> int:
        return self._conn.execute(f"SELECT COUNT(*) FROM {self._table}").fetchone()[0]

    def _where(self, filters: dict[int, list[bytes]]) -> tuple[str, list[bytes]]:
        parts, args = [], []
        for ordinal, values in sorted(filters.items()):
            parts.append(f"f{int(ordinal)} IN ({', '.join('?' for _ in values)})")
            args.extend(values)
        return " OR ".join(parts), args

    def _rows(self, where: str, args: list[Any], limit: int | None) -> list[tuple[int, str, bytes]]:
        sql = f"SELECT key, doc_id, vec FROM {self._table}" + (f" WHERE {where}" if where else "")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return self._conn.execute(sql, args).fetchall()

    def _exact(self, query: np.ndarray, rows: list[tuple[int, str, bytes]], limit: int) -> list[tuple[str, float]]:
        if not rows:
            return []
        matrix = np.frombuffer(b"".join(r[2] for r in rows), dtype="<f4").reshape(len(rows), self._dims)
        ids = [r[1] for r in rows]
        return exact_top(query, ids, matrix, limit)

    def _exact_by_keys(self, query: np.ndarray, keys: list[int], ann: Ann | None,
                       limit: int) -> list[tuple[str, float]] | None:
        """Brute force over the graph's copies of these keys' vectors, then the winners re-read and
        re-scored from the snapshot; None when the graph cannot serve (being built, out of step)."""
        if ann is None or not ann.ready or ann.pending is not None:
            return None
        if not keys:
            return []
        filters = ann.filters
        if any(k not in filters for k in keys):
            return None
        vectors: Any = ann.index.get(np.asarray(keys, dtype=np.uint64))
        matrix = np.stack(list(vectors))
        best = [k for k, _ in exact_top(query, keys, matrix, limit)]
        rows = []
        for start in range(0, len(best), 500):
            chunk = best[start:start + 500]
            rows += self._conn.execute(f"SELECT key, doc_id, vec FROM {self._table} WHERE key IN "
                                       f"({', '.join('?' for _ in chunk)})", chunk).fetchall()
        if len(rows) != len(best):
            return None
        return self._exact(query, rows, limit)

    async def search(self, vector: Any, limit: int, filters: dict[int, list[bytes]]) -> list[tuple[str, float]]:
        query = np.asarray(vector, dtype=np.float32)
        exact_max = self._indexes.exact_max
        where, args = self._where(filters)
        ann = self._indexes.anns.get(self._id)
        approximate = ann is not None and ann.ready and len(ann) > exact_max
        if filters or not approximate:
            # Exact when few enough vectors qualify: their keys come from the filter columns' B-trees.
            sql = f"SELECT key FROM {self._table}" + (f" WHERE {where}" if where else "")
            if approximate:
                sql += f" LIMIT {exact_max + 1}"
            keys = [r[0] for r in self._conn.execute(sql, args)]
            if not approximate or len(keys) <= exact_max:
                served = self._exact_by_keys(query, keys, ann, limit)
                if served is not None:
                    return served
                return self._exact(query, self._rows(where, args, None), limit)
        assert ann is not None
        wanted = {o: set(v) for o, v in filters.items()}

        def passes(key: int) -> bool:
            if not wanted:
                return True
            values = ann.filters.get(key)
            return values is not None and any(values[o] in vals for o, vals in wanted.items() if o < len(values))

        k = limit
        total = len(ann)
        while True:
            keys = [key for key in ann.nearest(query, k) if passes(key)]
            if len(keys) >= limit or k >= total:
                break
            k = min(total, k * 4)
        if not keys:
            return []
        cols = "".join(f", f{i}" for i in range(self._indexes.filter_counts[self._id]))
        found: list[tuple[int, str, bytes]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            for row in self._conn.execute(f"SELECT key, doc_id, vec{cols} FROM {self._table} WHERE key IN ({marks})",
                                          chunk):
                fvals = row[3:]
                if wanted and not any(fvals[o] in vals for o, vals in wanted.items() if o < len(fvals)):
                    continue
                found.append(row[:3])
        return self._exact(query, found, limit)
