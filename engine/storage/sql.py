"""The SQLite store's SQL, written once in a neutral form and rendered with sqlglot.

Every statement engine.storage.sqlite runs is listed here (SQLite's dialect, `?` placeholders);
`render(dialect)` transpiles them once at start-up. The PostgreSQL store does not use these: its
statements differ in substance, not just spelling (BIGINT timestamps, byte-order collation,
`$n` placeholders, a whole group commit as one statement over arrays, the clock row lock), so they
are written directly for PostgreSQL in engine.storage.postgres.
"""

from __future__ import annotations

from functools import lru_cache

import sqlglot

__all__ = ["SCHEMA", "STATEMENTS", "render"]

# Tables: documents hold the latest version of each document as Convex-encoded JSON; index_entries
# hold one row per (index, full key) -> document; the key bytes are order-preserving
# (engine.index_keys), so a B-tree range on (index_id, key) answers any with_index range directly.
SCHEMA = [
    "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS tables_ (name TEXT PRIMARY KEY, number INTEGER NOT NULL UNIQUE)",
    "CREATE TABLE IF NOT EXISTS indexes_ (id INTEGER PRIMARY KEY, table_name TEXT NOT NULL,"
    " name TEXT NOT NULL, fields TEXT NOT NULL, UNIQUE (table_name, name))",
    "CREATE TABLE IF NOT EXISTS documents (id TEXT PRIMARY KEY, table_number INTEGER NOT NULL,"
    " ts INTEGER NOT NULL, value BLOB NOT NULL)",
    "CREATE INDEX IF NOT EXISTS documents_by_table ON documents (table_number)",
    "CREATE TABLE IF NOT EXISTS index_entries (index_id INTEGER NOT NULL, key BLOB NOT NULL,"
    " doc_id TEXT NOT NULL, PRIMARY KEY (index_id, key))",
    "CREATE TABLE IF NOT EXISTS mutation_results (session_id TEXT NOT NULL, request_id INTEGER NOT NULL,"
    " ts INTEGER NOT NULL, result BLOB NOT NULL, PRIMARY KEY (session_id, request_id))",
]

STATEMENTS = {
    "meta_get": "SELECT v FROM meta WHERE k = ?",
    "meta_put": "INSERT INTO meta (k, v) VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
    "tables_all": "SELECT name, number FROM tables_",
    "table_add": "INSERT INTO tables_ (name, number) VALUES (?, ?)",
    "table_renumber": "UPDATE tables_ SET number = ? WHERE name = ?",
    "indexes_all": "SELECT id, table_name, name, fields FROM indexes_",
    "index_id_of": "SELECT id FROM indexes_ WHERE table_name = ? AND name = ?",
    "index_add": "INSERT INTO indexes_ (id, table_name, name, fields) VALUES (?, ?, ?, ?)",
    "index_drop": "DELETE FROM indexes_ WHERE id = ?",
    "index_clear": "DELETE FROM index_entries WHERE index_id = ?",
    "doc_get": "SELECT table_number, value FROM documents WHERE id = ?",
    "doc_put": "INSERT INTO documents (id, table_number, ts, value) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET ts = excluded.ts, value = excluded.value",
    "doc_delete": "DELETE FROM documents WHERE id = ?",
    "docs_of_table": "SELECT id, value FROM documents WHERE table_number = ? ORDER BY id",
    "count_of_table": "SELECT COUNT(*) FROM documents WHERE table_number = ?",
    "table_any": "SELECT 1 FROM documents WHERE table_number = ? LIMIT 1",
    "index_any": "SELECT 1 FROM index_entries WHERE index_id = ? LIMIT 1",
    "entry_put": "INSERT INTO index_entries (index_id, key, doc_id) VALUES (?, ?, ?)",
    "entry_delete": "DELETE FROM index_entries WHERE index_id = ? AND key = ?",
    "scan_asc": "SELECT e.key, e.doc_id, d.value FROM index_entries AS e JOIN documents AS d ON d.id = e.doc_id"
    " WHERE e.index_id = ? AND e.key >= ? AND e.key < ? ORDER BY e.key ASC",
    "scan_desc": "SELECT e.key, e.doc_id, d.value FROM index_entries AS e JOIN documents AS d ON d.id = e.doc_id"
    " WHERE e.index_id = ? AND e.key >= ? AND e.key < ? ORDER BY e.key DESC",
    # Index pages: rows of [lo, hi) in key order, at most LIMIT of them.
    "page_asc": "SELECT e.key, e.doc_id, d.value FROM index_entries AS e JOIN documents AS d ON d.id = e.doc_id"
    " WHERE e.index_id = ? AND e.key >= ? AND e.key < ? ORDER BY e.key ASC LIMIT ?",
    "page_desc": "SELECT e.key, e.doc_id, d.value FROM index_entries AS e JOIN documents AS d ON d.id = e.doc_id"
    " WHERE e.index_id = ? AND e.key >= ? AND e.key < ? ORDER BY e.key DESC LIMIT ?",
    # Index-only pages: the SQLite store's document cache supplies the documents.
    "page_keys_asc": "SELECT key, doc_id FROM index_entries WHERE index_id = ? AND key >= ? AND key < ?"
    " ORDER BY key ASC LIMIT ?",
    "page_keys_desc": "SELECT key, doc_id FROM index_entries WHERE index_id = ? AND key >= ? AND key < ?"
    " ORDER BY key DESC LIMIT ?",
    "mutation_result_get": "SELECT ts, result FROM mutation_results WHERE session_id = ? AND request_id = ?",
    "mutation_result_put": "INSERT INTO mutation_results (session_id, request_id, ts, result) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (session_id, request_id) DO NOTHING",
    # Expiring them (engine.session_cleanup): the oldest first. Rows are appended in commit order, so
    # rowid order is ts order; a chunk is read whole and deleted up to its first row still kept.
    "mutation_results_oldest": "SELECT rowid, ts FROM mutation_results ORDER BY rowid LIMIT ?",
    "mutation_results_delete": "DELETE FROM mutation_results WHERE rowid = ?",
    # Snapshot import (engine.snapshot_zip) replaces everything in one transaction.
    "documents_clear": "DELETE FROM documents",
    "entries_clear": "DELETE FROM index_entries",
    "mutation_results_clear": "DELETE FROM mutation_results",
    "tables_clear": "DELETE FROM tables_",
    "indexes_clear": "DELETE FROM indexes_",
}


@lru_cache(maxsize=None)
def render(dialect: str = "sqlite") -> tuple[tuple[str, ...], dict[str, str]]:
    """(schema statements, named statements) rendered for `dialect` ("sqlite", "postgres", ...)."""

    def one(sql: str) -> str:
        return sqlglot.transpile(sql, read="sqlite", write=dialect)[0]

    schema = [one(s) for s in SCHEMA]
    if dialect == "sqlite":
        # Clustered storage for the two hot tables: a WITHOUT ROWID table is its own primary-key
        # B-tree, so an index range is one B-tree walk. A storage option, not SQL semantics.
        schema = [s + " WITHOUT ROWID" if s.startswith(_CLUSTERED) else s for s in schema]
    return tuple(schema), {name: one(s) for name, s in STATEMENTS.items()}


_CLUSTERED = ("CREATE TABLE IF NOT EXISTS documents", "CREATE TABLE IF NOT EXISTS index_entries")
