"""Full-text indexes on SQLite: one FTS5 table per search index, written in the commit's transaction.

Layout (per index id N):
- `search_fts_N` — FTS5, `detail=none`, the `ascii` tokenizer with "_" as a token character:
  `body` holds the document's word tokens (already Convex-tokenized by engine.search.tokens, so FTS5
  only splits on the spaces between them) followed by one token per filter field
  (`_<ordinal>_<hash of the value>`, which no word token can equal: words never contain "_").
  Unindexed columns: `doc_id`, `ctime` (creation time), `ntok` (word tokens, the BM25 length).
- `search_vocab_N` — `fts5vocab(row)`: each term and how many documents hold it.
- `search_docs` (index id, doc id) -> FTS rowid and length; `search_stats` per index: documents and
  word tokens (BM25's N and average length), kept by deltas in the same transaction.

Every document of the table has a row (one without a string in the search field has an empty
body), as in Convex, whose BM25 statistics count every document of the index.

FTS5 answers "which documents hold any of these terms and all of these filter tokens" (its
doclists, in C); ranking is computed by engine.search.text from the rows' tokens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from .backend import SearchOp, TextDoc, TextReader

__all__ = ["create_text_index", "drop_text_index", "write_text_ops", "SqliteTextReader", "TEXT_DDL"]

TEXT_DDL = [
    "CREATE TABLE IF NOT EXISTS search_docs (index_id INTEGER NOT NULL, doc_id TEXT NOT NULL,"
    " rid INTEGER NOT NULL, ntok INTEGER NOT NULL, PRIMARY KEY (index_id, doc_id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS search_stats (index_id INTEGER PRIMARY KEY, docs INTEGER NOT NULL,"
    " tokens INTEGER NOT NULL)",
]

_MAX_TERM = "\U0010ffff"  # sorts after every character a token can hold


def _fts(index_id: int) -> str:
    return f"search_fts_{int(index_id)}"


def _vocab(index_id: int) -> str:
    return f"search_vocab_{int(index_id)}"


def create_text_index(conn: sqlite3.Connection, index_id: int) -> None:
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {_fts(index_id)} USING fts5(body, doc_id UNINDEXED, "
                 f"ctime UNINDEXED, ntok UNINDEXED, tokenize = \"ascii tokenchars '_'\", detail = none)")
    conn.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {_vocab(index_id)} USING fts5vocab({_fts(index_id)}, row)")
    conn.execute("INSERT INTO search_stats (index_id, docs, tokens) VALUES (?, 0, 0)"
                 " ON CONFLICT (index_id) DO UPDATE SET docs = 0, tokens = 0", (index_id,))


def drop_text_index(conn: sqlite3.Connection, index_id: int) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {_vocab(index_id)}")
    conn.execute(f"DROP TABLE IF EXISTS {_fts(index_id)}")
    conn.execute("DELETE FROM search_docs WHERE index_id = ?", (index_id,))
    conn.execute("DELETE FROM search_stats WHERE index_id = ?", (index_id,))


def write_text_ops(conn: sqlite3.Connection, ops: Iterable[SearchOp]) -> None:
    """Upsert or delete each op's row (idempotent), adjusting the index statistics."""
    deltas: dict[int, list[int]] = {}
    for op in ops:
        index_id, doc_id, entry = op.index_id, op.doc_id, op.entry
        fts = _fts(index_id)
        d = deltas.get(index_id)
        if d is None:
            d = deltas[index_id] = [0, 0]
        row = conn.execute("SELECT rid, ntok FROM search_docs WHERE index_id = ? AND doc_id = ?",
                           (index_id, doc_id)).fetchone()
        if row is not None:
            conn.execute(f"DELETE FROM {fts} WHERE rowid = ?", (row[0],))
            d[0] -= 1
            d[1] -= row[1]
        if entry is None:
            if row is not None:
                conn.execute("DELETE FROM search_docs WHERE index_id = ? AND doc_id = ?", (index_id, doc_id))
            continue
        assert isinstance(entry, TextDoc)
        body = " ".join(entry.tokens + entry.filter_tokens)
        ntok = len(entry.tokens)
        cur = conn.execute(f"INSERT INTO {fts} (body, doc_id, ctime, ntok) VALUES (?, ?, ?, ?)",
                           (body, doc_id, entry.creation_time, ntok))
        conn.execute("INSERT INTO search_docs (index_id, doc_id, rid, ntok) VALUES (?, ?, ?, ?) ON CONFLICT"
                     " (index_id, doc_id) DO UPDATE SET rid = excluded.rid, ntok = excluded.ntok",
                     (index_id, doc_id, cur.lastrowid, ntok))
        d[0] += 1
        d[1] += ntok
    for index_id, (docs, tokens) in deltas.items():
        if docs or tokens:
            conn.execute("UPDATE search_stats SET docs = docs + ?, tokens = tokens + ? WHERE index_id = ?",
                         (docs, tokens, index_id))


def _quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


class SqliteTextReader(TextReader):
    """Reads of one FTS5 index through a snapshot's read transaction (coroutines that never suspend:
    SQLite answers in the calling thread, like the snapshot's own inline reads)."""

    __slots__ = ("_conn", "_id", "_fts", "_vocab")

    def __init__(self, conn: sqlite3.Connection, index_id: int) -> None:
        self._conn = conn
        self._id = index_id
        self._fts = _fts(index_id)
        self._vocab = _vocab(index_id)

    async def stats(self) -> tuple[int, int]:
        row = self._conn.execute("SELECT docs, tokens FROM search_stats WHERE index_id = ?", (self._id,)).fetchone()
        return (row[0], row[1]) if row is not None else (0, 0)

    async def doc_freqs(self, terms: Iterable[str]) -> dict[str, int]:
        sql = f"SELECT doc FROM {self._vocab} WHERE term = ?"
        out = {}
        for term in terms:
            row = self._conn.execute(sql, (term,)).fetchone()
            out[term] = row[0] if row is not None and row[0] else 0
        return out

    async def prefix_terms(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        if limit <= 0:
            return []
        cur = self._conn.execute(f"SELECT term, doc FROM {self._vocab} WHERE term >= ? AND term < ? ORDER BY term",
                                 (prefix, prefix + _MAX_TERM))
        out: list[tuple[str, int]] = []
        try:
            for term, doc in cur:
                if doc:
                    out.append((term, doc))
                    if len(out) >= limit:
                        break
        finally:
            cur.close()
        return out

    async def matches(self, terms: list[str], filter_tokens: list[str], *,
                      filters_after: bool = False) -> Iterable[tuple[str, float, list[str]]]:
        if not terms:
            return iter(())
        expr = "(" + " OR ".join(_quote(t) for t in terms) + ")"
        if filter_tokens and not filters_after:
            expr += "".join(" AND " + _quote(t) for t in filter_tokens)
        rows = self._conn.execute(f"SELECT doc_id, ctime, ntok, body FROM {self._fts} WHERE {self._fts} MATCH ?",
                                  (expr,)).fetchall()
        if filter_tokens and filters_after:
            # A doclist intersection with a filter value held by most of the index costs more than
            # checking the few documents the terms found (their filter tokens follow their words).
            wanted = set(filter_tokens)
            return ((doc_id, ctime, words[:ntok]) for doc_id, ctime, ntok, body in rows
                    if wanted.issubset((words := body.split(" "))[ntok:]))
        # The word tokens come first in `body`; a document without filter fields has nothing after.
        return ((doc_id, ctime, body.split(" ", ntok)[:ntok] if ntok else []) for doc_id, ctime, ntok, body in rows)
