"""Storage: the persistence contract and its implementations.

- `base`: the contract (`Persistence`, `Snapshot`, `CommitRecord`) every store implements.
- `sqlite`: the embedded default (one file, WAL, one writer thread, readers inline).
- `sql`: the statements, written once and rendered per dialect with sqlglot.

`open_persistence(location)` picks the store from where it lives: a file path (or ":memory:") is
SQLite; a `postgresql://` URL is PostgreSQL. Anything else is refused with the reason.
"""

from __future__ import annotations

import os

from ..errors import EngineError
from .base import CommitRecord, Persistence, Row, Snapshot
from .sqlite import DatabaseLock, DocCache, SqlitePersistence, database_holder, read_only_dump

__all__ = ["CommitRecord", "Persistence", "Row", "Snapshot", "SqlitePersistence", "DatabaseLock", "DocCache",
           "database_holder", "read_only_dump", "open_persistence", "is_url"]


def is_url(location: str | os.PathLike[str]) -> bool:
    text = str(location)
    return "://" in text


def open_persistence(location: str | os.PathLike[str], **options: object) -> Persistence:
    """The store at `location` (not opened yet)."""
    text = str(location)
    if not is_url(text):
        return SqlitePersistence(text, **options)  # type: ignore[arg-type]
    scheme = text.split("://", 1)[0].lower()
    if scheme in ("postgres", "postgresql"):
        raise EngineError("UnsupportedDatabase", "PostgreSQL storage is not available in this build.")
    raise EngineError("UnsupportedDatabase", f"Cannot use {scheme}:// as a database: give a SQLite file path "
                      "or a postgresql://user:password@host:port/database URL.")
