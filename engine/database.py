"""`ctx.db`: the database as application functions see it.

`DatabaseReader` is what queries get; `DatabaseWriter` adds insert/patch/replace/delete for
mutations. Both are thin: they resolve tables and ids through the catalog and delegate every read
and write to the `Transaction`, which records the read set and stages the writes.
"""

from __future__ import annotations

from typing import Any

from .errors import EngineError
from .ids import decode_id
from .query_builder import Query
from .transaction import Transaction

__all__ = ["DatabaseReader", "DatabaseWriter"]


class DatabaseReader:
    def __init__(self, txn: Transaction) -> None:
        self._txn = txn

    async def _reader(self, table: str):  # -> (Transaction, TableInfo | None)
        if not isinstance(table, str):
            raise EngineError("InvalidTableName", f"Expected a table name string, got {type(table).__name__}.")
        info = self._txn.catalog.table(table)
        if info is None:
            # Reading a table nobody has written yet: register it so the read is recorded (an
            # insert later must invalidate this query) — it reads as empty.
            info = await self._txn.catalog.ensure_table(table)
        return self._txn, info

    async def get(self, doc_id: str) -> dict[str, Any] | None:
        if isinstance(doc_id, str) and decode_id(doc_id) is None:
            raise EngineError("InvalidId", f"Invalid argument `id` for `db.get`: {doc_id!r} is not a document ID.")
        return self._txn.get(doc_id)

    def query(self, table: str) -> Query:
        return Query(self, table)

    def normalize_id(self, table: str, doc_id: Any) -> str | None:
        if not isinstance(doc_id, str):
            return None
        return doc_id if self._txn.catalog.table_of_id(doc_id) == table else None


class DatabaseWriter(DatabaseReader):
    async def _table_for_insert(self, table: str):
        _, info = await self._reader(table)
        return info

    async def insert(self, table: str, value: dict[str, Any]) -> str:
        info = await self._table_for_insert(table)
        return self._txn.insert(info, value)

    async def patch(self, doc_id: str, fields: dict[str, Any]) -> None:
        self._txn.patch(doc_id, fields)

    async def replace(self, doc_id: str, value: dict[str, Any]) -> None:
        self._txn.replace(doc_id, value)

    async def delete(self, doc_id: str) -> None:
        self._txn.delete(doc_id)
