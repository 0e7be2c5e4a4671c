"""Search and vector indexes as the catalog knows them (one per table and name).

A `SearchIndexInfo` / `VectorIndexInfo` sits in `TableInfo.search` beside the table's database
indexes. Its `id` comes from the catalog's index-id allocator, so it is also the pseudo-index id of
the keys search reads record and commits write (engine.search.tokens). `state` is "backfilling"
until every document the table held when the index was added is in it (engine.search.backfill),
then "ready"; only a ready index answers queries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SearchIndexInfo", "VectorIndexInfo", "IndexSpec", "spec_from_json"]

BACKFILLING = "backfilling"
READY = "ready"


class _IndexState:
    """What both kinds share: readiness and the name errors print (fields are the subclasses')."""

    __slots__ = ()
    state: str
    table: str
    name: str

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def printable(self) -> str:
        return f"{self.table}.{self.name}"


def _filter_paths(fields: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(f.split(".")) for f in fields)


@dataclass(slots=True, eq=False)
class SearchIndexInfo(_IndexState):
    id: int
    table: str
    name: str
    search_field: str
    filter_fields: tuple[str, ...]
    state: str = BACKFILLING
    kind = "search"
    search_path: tuple[str, ...] = ()
    filter_paths: tuple[tuple[str, ...], ...] = ()
    roots: frozenset[str] = frozenset()  # top-level fields the index depends on
    progress: tuple[int, int] = (0, 0)  # backfill: documents done, documents at the start

    def __post_init__(self) -> None:
        self.search_path = tuple(self.search_field.split("."))
        self.filter_paths = _filter_paths(self.filter_fields)
        self.roots = frozenset([self.search_path[0], *(p[0] for p in self.filter_paths)])

    def definition(self) -> tuple[Any, ...]:
        """What decides whether two declarations are the same index (a change rebuilds it)."""
        return ("search", self.search_field, self.filter_fields)

    def to_json(self) -> str:
        return json.dumps({"kind": "search", "searchField": self.search_field,
                           "filterFields": list(self.filter_fields)})


@dataclass(slots=True, eq=False)
class VectorIndexInfo(_IndexState):
    id: int
    table: str
    name: str
    vector_field: str
    dimensions: int
    filter_fields: tuple[str, ...]
    state: str = BACKFILLING
    kind = "vector"
    vector_path: tuple[str, ...] = ()
    filter_paths: tuple[tuple[str, ...], ...] = ()
    roots: frozenset[str] = frozenset()
    progress: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.vector_path = tuple(self.vector_field.split("."))
        self.filter_paths = _filter_paths(self.filter_fields)
        self.roots = frozenset([self.vector_path[0], *(p[0] for p in self.filter_paths)])

    def definition(self) -> tuple[Any, ...]:
        return ("vector", self.vector_field, self.dimensions, self.filter_fields)

    def to_json(self) -> str:
        return json.dumps({"kind": "vector", "vectorField": self.vector_field, "dimensions": self.dimensions,
                           "filterFields": list(self.filter_fields)})


IndexSpec = SearchIndexInfo | VectorIndexInfo


@dataclass(slots=True)
class StoredIndex:
    """A persisted registration (engine.search.backend): what was declared, and how far it got."""

    id: int
    table: str
    name: str
    spec: str  # IndexSpec.to_json()
    state: str
    cursor: bytes | None = None  # backfill: the last by_creation_time key done
    extra: dict[str, Any] = field(default_factory=dict)


def spec_from_json(index_id: int, table: str, name: str, spec: str, state: str) -> IndexSpec:
    data = json.loads(spec)
    if data["kind"] == "search":
        return SearchIndexInfo(index_id, table, name, data["searchField"], tuple(data["filterFields"]), state)
    return VectorIndexInfo(index_id, table, name, data["vectorField"], int(data["dimensions"]),
                           tuple(data["filterFields"]), state)
