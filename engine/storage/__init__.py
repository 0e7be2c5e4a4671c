"""Storage: the persistence contract and its implementations.

- `base`: the contract (`Persistence`, `Snapshot`, `CommitRecord`) every store implements.
- `sqlite`: the embedded default (one file, WAL, one writer thread, readers inline).
- `postgres`: PostgreSQL, which several engine nodes share (engine.cluster commits on it).
- `sql`: SQLite's statements, written once in neutral form (sqlglot renders them).

`open_persistence(location)` picks the store from where it lives: a file path (or ":memory:") is
SQLite; a `postgresql://` URL is PostgreSQL. Anything else is refused with the reason.
"""

from __future__ import annotations

import os
import urllib.parse

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
        from .postgres import PostgresPersistence, describe_url

        try:
            parts = urllib.parse.urlsplit(text)
            parts.port  # noqa: B018  (raises on a port that is not a number)
        except ValueError as e:
            raise EngineError("UnsupportedDatabase", f"Cannot use {describe_url(text)} as a database: {e}.") from None
        if not parts.hostname and "host=" not in parts.query:
            raise EngineError("UnsupportedDatabase", f"Cannot use {describe_url(text)} as a database: the URL "
                              "names no host (postgresql://user:password@host:port/database).")
        if not parts.path.strip("/"):
            raise EngineError("UnsupportedDatabase", f"Cannot use {describe_url(text)} as a database: the URL "
                              "names no database (postgresql://user:password@host:port/database).")
        return PostgresPersistence(text, **options)  # type: ignore[arg-type]
    raise EngineError("UnsupportedDatabase", f"Cannot use {scheme}:// as a database: give a SQLite file path "
                      "or a postgresql://user:password@host:port/database URL.")
