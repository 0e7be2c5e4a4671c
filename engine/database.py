"""`ctx.db`: the database as application functions see it.

`DatabaseReader` is what queries get; `DatabaseWriter` adds insert/patch/replace/delete for
mutations; `ctx.db.system` (`SystemDatabaseReader`) reads the engine's system tables, which app
code can never write and `ctx.db` refuses to touch. All are thin: they resolve tables and ids
through the catalog and delegate every read and write to the `Transaction`, which records the read
set and stages the writes.
"""

from __future__ import annotations

from typing import Any

from .errors import EngineError
from .ids import FIRST_USER_TABLE_NUMBER, decode_id
from .model import Doc, Id
from .query_builder import Query
from .transaction import Transaction

__all__ = ["DatabaseReader", "DatabaseWriter", "SystemDatabaseReader"]

_NO_ID: Any = object()  # "no second argument": the id-only forms


class DatabaseReader:
    _system_tables = False  # which side of the user/system divide this reader serves

    def __init__(self, txn: Transaction) -> None:
        self._txn = txn

    @property
    def system(self) -> SystemDatabaseReader:
        """`ctx.db.system`: read-only access to system tables (`_scheduled_functions`, ...)."""
        return SystemDatabaseReader(self._txn)

    def _check_side(self, info: Any) -> None:
        # Convex's texts (isolate async_syscall.rs `system_table_guard`).
        if info is not None and info.system != self._system_tables:
            if info.system:
                raise EngineError("SystemTableError", "System tables can only be accessed with db.system.")
            raise EngineError("SystemTableError", "User tables cannot be accessed with db.system.")

    async def _reader(self, table: str):  # -> (Transaction, TableInfo | None)
        if not isinstance(table, str):
            raise EngineError("InvalidTableName", f"Expected a table name string, got {type(table).__name__}.")
        info = self._txn.catalog.table(table)
        if info is not None and info.private:
            info = None  # the engine's own bookkeeping: no function can see it (Convex's private tables)
        if info is None:
            # Reading a table nobody has written yet: register it so the read is recorded (an
            # insert later must invalidate this query) — it reads as empty.
            if self._system_tables:
                raise EngineError("TableNotFound", f'There is no system table "{table}".')
            info = await self._txn.catalog.ensure_table(table)
        self._check_side(info)
        return self._txn, info

    def _resolve(self, verb: str, table_or_id: Any, doc_id: Any) -> Any:
        """`db.verb(table, id)` (convex 1.48's recommended form) or `db.verb(id)`: the id, checked
        to belong to `table` when one is named."""
        if doc_id is _NO_ID:
            return table_or_id
        table = table_or_id
        if not isinstance(table, str):
            raise EngineError("InvalidTableName", f"`db.{verb}(table, id)` needs a table name string first, "
                              f"got {type(table).__name__}.")
        if isinstance(doc_id, str):
            found = self._txn.catalog.table_of_id(doc_id)
            if found != table:
                if decode_id(doc_id) is None:
                    raise EngineError("InvalidId", f"Invalid argument `id` for `db.{verb}`: {doc_id!r} is not a "
                                      "document ID.")
                raise EngineError("InvalidId", f'Invalid argument `id` for `db.{verb}`: {doc_id!r} is an ID of '
                                  f'table "{found}", not "{table}".')
        return doc_id

    async def get(self, table_or_id: str, doc_id: Any = _NO_ID) -> Doc[Any] | None:
        """`db.get(table, id)` or `db.get(id)`: the document (a plain dict), or None."""
        doc_id = self._resolve("get", table_or_id, doc_id)
        if isinstance(doc_id, str):
            number = decode_id(doc_id)
            if number is None:
                raise EngineError("InvalidId", f"Invalid argument `id` for `db.get`: {doc_id!r} is not a document ID.")
            info = self._txn.catalog.by_number.get(number)
            if info is not None and info.private:
                return None  # as Convex: an id of a private system table reads like a missing table's
            if (number < FIRST_USER_TABLE_NUMBER) != self._system_tables:
                self._check_side(info)
        return await self._txn.get(doc_id)  # type: ignore[return-value]  # Doc is a dict, for checkers only

    def _check_id_side(self, doc_id: Any) -> None:
        # A document this transaction read names its table by its stored row: no id to decode.
        row = self._txn._rows.get(doc_id) if type(doc_id) is str else None
        number = row[0] if row is not None else decode_id(doc_id)
        if number is not None and number < FIRST_USER_TABLE_NUMBER:
            self._check_side(self._txn.catalog.by_number.get(number))

    def query(self, table: str) -> Query:
        return Query(self, table)

    def normalize_id(self, table: str, doc_id: Any) -> str | None:
        if not isinstance(doc_id, str):
            return None
        return doc_id if self._txn.catalog.table_of_id(doc_id) == table else None


class DatabaseWriter(DatabaseReader):
    async def _table_for_insert(self, table: str):
        if isinstance(table, str) and table.startswith("_"):
            raise EngineError("SystemTableError", "System tables (prefixed with `_`) are read-only.")
        _, info = await self._reader(table)
        return info

    async def insert(self, table: str, value: dict[str, Any]) -> Id[Any]:
        """The new document's id (a plain str)."""
        info = await self._table_for_insert(table)
        return await self._txn.insert(info, value)  # type: ignore[return-value]  # Id is a str, for checkers only

    async def patch(self, table_or_id: str, fields_or_id: Any, fields: Any = _NO_ID) -> None:
        """`db.patch(table, id, fields)` or `db.patch(id, fields)`."""
        doc_id, fields = (table_or_id, fields_or_id) if fields is _NO_ID else (
            self._resolve("patch", table_or_id, fields_or_id), fields)
        self._check_id_side(doc_id)
        await self._txn.patch(doc_id, fields)

    async def replace(self, table_or_id: str, value_or_id: Any, value: Any = _NO_ID) -> None:
        """`db.replace(table, id, value)` or `db.replace(id, value)`."""
        doc_id, value = (table_or_id, value_or_id) if value is _NO_ID else (
            self._resolve("replace", table_or_id, value_or_id), value)
        self._check_id_side(doc_id)
        await self._txn.replace(doc_id, value)

    async def delete(self, table_or_id: str, doc_id: Any = _NO_ID) -> None:
        """`db.delete(table, id)` or `db.delete(id)`."""
        doc_id = self._resolve("delete", table_or_id, doc_id)
        self._check_id_side(doc_id)
        await self._txn.delete(doc_id)


class SystemDatabaseReader(DatabaseReader):
    """`ctx.db.system`: the same reads, restricted to system tables; never writes. Reads are
    recorded in the read set like any other, so a query over `_scheduled_functions` is reactive."""

    _system_tables = True

    async def get(self, table_or_id: str, doc_id: Any = _NO_ID) -> Doc[Any] | None:
        # Convex accepts both `db.system.get(id)` and `db.system.get("_scheduled_functions", id)`.
        if doc_id is _NO_ID or doc_id is None:
            return await super().get(table_or_id)
        if self._txn.catalog.table_of_id(doc_id) != table_or_id:
            if decode_id(doc_id) is None:
                raise EngineError("InvalidId", f"Invalid argument `id` for `db.system.get`: {doc_id!r} is not a document ID.")
            raise EngineError("InvalidId", f'{doc_id!r} is not an id of table "{table_or_id}".')
        return await super().get(doc_id)

    @property
    def system(self) -> SystemDatabaseReader:
        return self
