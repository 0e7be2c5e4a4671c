"""The catalog: tables, their numbers and their indexes, as this deployment knows them.

Table numbers and index ids are persisted (engine.storage) so ids and index keys stay meaningful
across restarts. Every table has two built-in indexes: `by_id` (a point lookup on the documents
table, never stored as entries) and `by_creation_time`; every user index is stored with
`_creationTime` and `_id` appended to its fields, which makes every index key unique.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import EngineError
from .ids import FIRST_USER_TABLE_NUMBER, decode_id
from .index_keys import UNDEFINED, encode_key, encode_value

log = logging.getLogger("engine.catalog")

if TYPE_CHECKING:
    from .schema import SchemaDefinition, TableDefinition
    from .storage import Persistence

__all__ = ["Catalog", "IndexInfo", "TableInfo", "SystemTable", "SYSTEM_TABLES", "define_system_table"]

BY_ID = "by_id"
BY_CREATION_TIME = "by_creation_time"
SYSTEM_FIELDS = ("_creationTime", "_id")


@dataclass(slots=True)
class IndexInfo:
    id: int
    name: str
    fields: tuple[str, ...]  # full key fields, system fields included
    paths: tuple[tuple[str, ...], ...]  # fields split on "."
    stored: bool  # False for by_id, which reads the documents table directly
    roots: frozenset[str] = frozenset()  # the top-level document fields the key depends on
    flat: bool = False  # every field is top-level (no "a.b" paths)
    # The fields before a trailing (_creationTime, _id), when every field is top-level and the
    # key ends so (every stored index): their key is these fields' bytes + `system_tail(doc)`.
    head: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.roots = frozenset(p[0] for p in self.paths)
        self.flat = all(len(p) == 1 for p in self.paths)
        if self.flat and self.fields[-2:] == SYSTEM_FIELDS:
            self.head = self.fields[:-2]

    def key(self, doc: dict[str, Any]) -> bytes:
        if self.flat:
            get = doc.get
            return b"".join([encode_value(get(f, UNDEFINED)) for f in self.fields])
        values = []
        for path in self.paths:
            value: Any = doc
            for part in path:
                value = value.get(part, UNDEFINED) if isinstance(value, dict) else UNDEFINED
            values.append(value)
        return encode_key(values)

    def key_with_tail(self, doc: dict[str, Any], tail: bytes) -> bytes:
        """`key(doc)`, given `system_tail(doc)` (shared by every index whose `head` is set)."""
        head = self.head
        if head is None:
            return self.key(doc)
        if not head:
            return tail
        get = doc.get
        if len(head) == 1:
            return encode_value(get(head[0], UNDEFINED)) + tail
        return b"".join([encode_value(get(f, UNDEFINED)) for f in head]) + tail


def system_tail(doc: dict[str, Any]) -> bytes:
    """The key bytes of a document's (_creationTime, _id): the end of every stored index's key."""
    return encode_value(doc.get("_creationTime", UNDEFINED)) + encode_value(doc.get("_id", UNDEFINED))


@dataclass(slots=True)
class TableInfo:
    name: str
    number: int
    indexes: dict[str, IndexInfo] = field(default_factory=dict)
    definition: TableDefinition | None = None
    system: bool = False  # an engine table ("_scheduled_functions", ...): read via ctx.db.system only
    private: bool = False  # a system table no function can read (engine bookkeeping)
    # Search and vector indexes by name (engine.search.spec); commits maintain them (engine.search).
    search: dict[str, Any] = field(default_factory=dict)

    @property
    def by_id(self) -> IndexInfo:
        return self.indexes[BY_ID]

    def stored_indexes(self) -> list[IndexInfo]:
        return [ix for ix in self.indexes.values() if ix.stored]


@dataclass(frozen=True, slots=True)
class SystemTable:
    """An engine-owned table. Its number is fixed (below FIRST_USER_TABLE_NUMBER) so ids of its
    documents mean the same thing in every deployment; `indexes` are user-style index fields."""

    name: str
    number: int
    indexes: dict[str, list[str]]
    private: bool = False  # invisible to functions, even through ctx.db.system; not exported as a table


SYSTEM_TABLES: dict[str, SystemTable] = {}


def define_system_table(name: str, number: int, indexes: dict[str, list[str]], *,
                        private: bool = False) -> SystemTable:
    """Declare a system table (called by the module that owns it, at import time). App code can
    read it through `ctx.db.system` (unless `private`) and never write it; the engine writes it
    inside transactions."""
    if not name.startswith("_") or not 0 < number < FIRST_USER_TABLE_NUMBER:
        raise ValueError(f"system table {name!r} needs a '_' name and a number below {FIRST_USER_TABLE_NUMBER}")
    for other in SYSTEM_TABLES.values():
        if other.name != name and other.number == number:
            raise ValueError(f"system tables {other.name!r} and {name!r} both claim number {number}")
    table = SYSTEM_TABLES[name] = SystemTable(name, number, {k: list(v) for k, v in indexes.items()}, private)
    return table


def _index(index_id: int, name: str, fields: list[str]) -> IndexInfo:
    full = tuple(fields)
    return IndexInfo(index_id, name, full, tuple(tuple(f.split(".")) for f in full), name != BY_ID)


class Catalog:
    """Name/number lookups; also the `env` validators use to tell which table an id is from."""

    def __init__(self, persistence: Persistence, schema: SchemaDefinition | None) -> None:
        self._persistence = persistence
        self.schema = schema
        self.by_name: dict[str, TableInfo] = {}
        self.by_number: dict[int, TableInfo] = {}
        self._next_table = FIRST_USER_TABLE_NUMBER
        self._next_index = 1

    # -- loading -------------------------------------------------------------------------------
    async def load(self) -> int:
        """Read the persisted catalog, register the schema's tables and (re)build changed indexes.
        Returns the persisted commit-timestamp high-water mark."""
        max_ts, tables, indexes = await self._persistence.load_catalog()
        for name, number in tables.items():
            self._add(TableInfo(name, number))
        for (table, name), (index_id, fields) in indexes.items():
            self.by_name[table].indexes[name] = _index(index_id, name, fields)
            self._next_index = max(self._next_index, index_id + 1)
        await self._refill_interrupted_builds()
        for system in SYSTEM_TABLES.values():
            await self._load_system_table(system)
        if self.schema is not None:
            for name, definition in self.schema.tables.items():
                info = await self.ensure_table(name)
                info.definition = definition
                await self._sync_indexes(info, {
                    ix: list(fields) + list(SYSTEM_FIELDS) for ix, fields in definition.indexes.items()
                })
        return max_ts

    async def _learn_others(self) -> None:
        """Add the tables and indexes other nodes sharing the store created (by_name lookups of a
        table created elsewhere succeed from then on)."""
        _, tables, indexes = await self._persistence.load_catalog()
        for name, number in tables.items():
            if name not in self.by_name and number not in self.by_number:
                self._add(TableInfo(name, number))
        for (table, name), (index_id, fields) in indexes.items():
            info = self.by_name.get(table)
            if info is not None and name not in info.indexes:
                info.indexes[name] = _index(index_id, name, fields)
            self._next_index = max(self._next_index, index_id + 1)

    async def _refill_interrupted_builds(self) -> None:
        """An index is registered first and filled by a later write (at start-up, and in a dev-mode
        reload through the committer); a crash between the two leaves it registered and empty. The
        fill is one transaction, so "empty index on a table with documents" is exactly that case:
        fill it now, before anything reads it."""
        for info in self.by_name.values():
            stored = [ix for ix in info.indexes.values() if ix.stored]
            if not stored or await self._persistence.table_is_empty(info.number):
                continue
            for ix in stored:
                if await self._persistence.index_is_empty(ix.id):
                    log.warning('Index "%s.%s" was registered but never filled (an interrupted build); '
                                "filling it now.", info.name, ix.name)
                    await self._backfill(info, ix)

    async def _load_system_table(self, system: SystemTable) -> None:
        info = self.by_name.get(system.name)
        if info is None:
            if system.number in self.by_number:
                raise EngineError("CatalogConflict", f'Table number {system.number} is taken by '
                                  f'"{self.by_number[system.number].name}"; it belongs to "{system.name}".')
            info = TableInfo(system.name, system.number)
            await self._persistence.add_table(system.name, system.number)
            self._add(info)
        elif info.number != system.number:
            raise EngineError("CatalogConflict", f'System table "{system.name}" is stored as number '
                              f"{info.number}, expected {system.number}.")
        info.system = True
        info.private = system.private
        await self._sync_indexes(info, {ix: fields + list(SYSTEM_FIELDS) for ix, fields in system.indexes.items()})

    def _add(self, info: TableInfo) -> None:
        self.by_name[info.name] = info
        self.by_number[info.number] = info
        if info.number >= FIRST_USER_TABLE_NUMBER:
            self._next_table = max(self._next_table, info.number + 1)

    async def ensure_table(self, name: str, *, number: int | None = None) -> TableInfo:
        """The table `name`, created (under `number`, if given and free) when it does not exist."""
        info = self.by_name.get(name)
        if info is not None:
            return info
        if self._persistence.shared:
            # Other nodes may have created tables (and used numbers and index ids) since we loaded.
            await self._learn_others()
            info = self.by_name.get(name)
            if info is not None:
                return info
        _check_table_name(name)
        if number is not None and (number < FIRST_USER_TABLE_NUMBER or number in self.by_number):
            raise EngineError("CatalogConflict", f'Table number {number} is not free for table "{name}".')
        info = TableInfo(name, number if number is not None else self._next_table)
        await self._persistence.add_table(name, info.number)
        self._add(info)
        await self._sync_indexes(info, {})
        return info

    async def _sync_indexes(self, info: TableInfo, user: dict[str, list[str]]) -> None:
        wanted = {BY_ID: ["_id"], BY_CREATION_TIME: list(SYSTEM_FIELDS), **user}
        for name, existing in list(info.indexes.items()):
            if list(existing.fields) != wanted.get(name):
                await self._persistence.drop_index(existing.id)
                del info.indexes[name]
        for name, fields in wanted.items():
            if name in info.indexes:
                continue
            ix = _index(self._next_index, name, fields)
            self._next_index += 1
            await self._persistence.add_index(ix.id, info.name, name, fields)
            info.indexes[name] = ix
            if ix.stored:
                await self._backfill(info, ix)

    async def _backfill(self, info: TableInfo, ix: IndexInfo) -> None:
        from .progress import progress
        from .values import decode_json

        with progress(f'Index "{info.name}.{ix.name}"', unit=" docs") as bar:
            entries = []
            async for doc_id, value in self._persistence.table_documents(info.number):
                entries.append((ix.id, ix.key(decode_json(value)), doc_id))
                bar.update(1)
        if entries:
            await self._persistence.put_entries(entries)

    # -- lookups -------------------------------------------------------------------------------
    @property
    def persistence(self) -> Persistence:
        return self._persistence

    def table(self, name: str) -> TableInfo | None:
        return self.by_name.get(name)

    def table_of_id(self, doc_id: str) -> str | None:
        number = decode_id(doc_id)
        if number is None:
            return None
        info = self.by_number.get(number)
        return info.name if info is not None else None

    def index(self, table: TableInfo, name: str) -> IndexInfo:
        ix = table.indexes.get(name)
        if ix is None:
            raise EngineError("IndexNotFound", f'Index "{table.name}.{name}" not found.')
        return ix

    # -- changes while serving (dev-mode reload: engine.reload) ----------------------------------
    def allocate_index_id(self) -> int:
        """A fresh index id (search and vector indexes share the database indexes' id space)."""
        index_id = self._next_index
        self._next_index += 1
        return index_id

    def reserve_index_ids(self, highest: int) -> None:
        """Ids up to `highest` are taken (by indexes stored outside `indexes_`)."""
        self._next_index = max(self._next_index, highest + 1)

    def allocate_index(self, name: str, fields: list[str]) -> IndexInfo:
        """A new index description with a fresh id. Persisting, filling and registering it is the
        caller's job: while commits flow, that has to happen in step with the committer."""
        ix = _index(self._next_index, name, fields)
        self._next_index += 1
        return ix


def _check_table_name(name: str) -> None:
    if not isinstance(name, str) or not name or not (name[0].isalpha()) \
            or not all(c.isalnum() or c == "_" for c in name) or len(name) > 64:
        raise EngineError("InvalidTableName",
                          f'Table name "{name}" is not valid: use letters, digits and "_", starting with a letter.')
