"""Schema rules for search and vector indexes (Convex's, with its texts), checked at `define_schema`.

- A search index names one `searchField` and up to 16 `filterFields`; a vector index a
  `vectorField`, `dimensions` in [2, 4096] and up to 16 `filterFields`.
- Index names follow the database-index rules and are unique across every kind of index of the
  table; a table has at most 64 indexes of all kinds together.
- Two search indexes may not share the same search field and filter fields
  (`SearchIndexFieldNotUnique`), two vector indexes the same vector field and dimensions.
- Fields are field paths ("a.b") without "_"-prefixed parts.
- When the table's documents are described by a validator, a vector field must be able to hold an
  array of float64 (`v.array(v.float64())`, optionally `v.optional(...)`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ..errors import EngineError
from ..validators import AnyValidator, ArrayValidator, ObjectValidator, OptionalValidator, UnionValidator, Validator
from .tokens import MAX_FILTER_FIELDS

__all__ = ["search_config", "vector_config", "check_search_definitions", "MIN_DIMENSIONS", "MAX_DIMENSIONS",
           "MAX_ALL_INDEXES"]

MIN_DIMENSIONS = 2
MAX_DIMENSIONS = 4096
MAX_ALL_INDEXES = 64  # database, search and vector indexes of one table together (Convex)
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_RESERVED = ("by_id", "by_creation_time")


def _invalid(message: str) -> EngineError:
    return EngineError("InvalidSchema", message)


def _fields(name: str, value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _invalid(f'Index "{name}" {what} must be a list of field names, got {value!r}')
    return list(value)


def search_config(name: str, config: Mapping[str, Any] | None, search_field: str | None,
                  filter_fields: Any) -> dict[str, Any]:
    if config is not None:
        if not isinstance(config, Mapping):
            raise _invalid(f'Search index "{name}" takes {{"searchField": ..., "filterFields": [...]}}, got {config!r}')
        search_field = config.get("searchField", search_field)
        filter_fields = config.get("filterFields", filter_fields)
    return {"searchField": search_field, "filterFields": _fields(name, filter_fields, "filterFields")}


def vector_config(name: str, config: Mapping[str, Any] | None, vector_field: str | None, dimensions: Any,
                  filter_fields: Any) -> dict[str, Any]:
    if config is not None:
        if not isinstance(config, Mapping):
            raise _invalid(f'Vector index "{name}" takes {{"vectorField": ..., "dimensions": ..., '
                           f'"filterFields": [...]}}, got {config!r}')
        vector_field = config.get("vectorField", vector_field)
        dimensions = config.get("dimensions", dimensions)
        filter_fields = config.get("filterFields", filter_fields)
    return {"vectorField": vector_field, "dimensions": dimensions,
            "filterFields": _fields(name, filter_fields, "filterFields")}


def _check_field(table: str, kind: str, name: str, field: Any, role: str) -> None:
    where = f'In table "{table}" {kind} "{name}"'
    if not isinstance(field, str) or not field:
        raise _invalid(f"{where}: `{role}` must be a field name, got {field!r}")
    parts = field.split(".")
    if not all(parts) or any(p.startswith("$") for p in parts):
        raise _invalid(f'{where}: "{field}" is not a valid field path.')
    if any(p.startswith("_") for p in parts):
        raise _invalid(f'{where}: field "{field}" is reserved: fields starting with "_" cannot be indexed.')


def _can_hold_float_array(validator: Validator, path: list[str]) -> bool:
    """Whether some document the validator accepts has an array of float64 at `path`."""
    if isinstance(validator, OptionalValidator):
        return _can_hold_float_array(validator.inner, path)
    if isinstance(validator, AnyValidator):
        return True
    if isinstance(validator, UnionValidator):
        return any(_can_hold_float_array(m, path) for m in validator.members)
    if not path:
        if isinstance(validator, ArrayValidator):
            element = validator.element
            if isinstance(element, UnionValidator):
                return any(m.to_json().get("type") in ("number", "any") for m in element.members)
            return element.to_json().get("type") in ("number", "any")
        return False
    if isinstance(validator, ObjectValidator):
        inner = validator.fields.get(path[0])
        return inner is not None and _can_hold_float_array(inner, path[1:])
    return False


def check_search_definitions(table: str, document: Validator, db_index_names: set[str],
                             declared: list[tuple[str, str, dict[str, Any]]]) -> None:
    seen = set(db_index_names)
    by_search: dict[tuple[Any, ...], str] = {}
    by_vector: dict[tuple[Any, ...], str] = {}
    for kind, name, conf in declared:
        label = "search index" if kind == "search" else "vector index"
        if not isinstance(name, str) or not name:
            raise _invalid(f'In table "{table}" a {label} has an invalid name {name!r}')
        if name in seen:
            raise _invalid(f'Table "{table}" has two or more definitions of index "{name}".')
        seen.add(name)
        if name.startswith("_") or name in _RESERVED:
            raise _invalid(
                f'In table "{table}" cannot name an index "{name}" because the name is reserved. '
                'Indexes may not start with an underscore or be named "by_id" or "by_creation_time".')
        if not _IDENT.match(name) or len(name) > 64:
            raise _invalid(f'Invalid index name: "{name}". Identifiers must be 64 characters or less, start with '
                           "a letter, and only contain letters, digits, underscores.")
        filters = conf["filterFields"]
        for f in filters:
            _check_field(table, label, name, f, "filterFields")
        if len(filters) > MAX_FILTER_FIELDS:
            raise _invalid(f"Search indexes may have up to {MAX_FILTER_FIELDS} filter fields.")
        filter_set = frozenset(filters)
        if kind == "search":
            field = conf["searchField"]
            _check_field(table, label, name, field, "searchField")
            other = by_search.get((field, filter_set))
            if other is not None:
                raise _invalid(
                    f'In table "{table}" search index "{name}" and search index "{other}" have the same '
                    "`searchField`. Search index fields must be unique within a table. You should combine the "
                    "indexes with the same `searchField` into one index containing all `filterField`s and then "
                    "use different subsets of the `filterField`s at query time.")
            by_search[(field, filter_set)] = name
        else:
            field = conf["vectorField"]
            _check_field(table, label, name, field, "vectorField")
            dims = conf["dimensions"]
            if isinstance(dims, float) and dims.is_integer():
                dims = conf["dimensions"] = int(dims)
            if not isinstance(dims, int) or isinstance(dims, bool) or not MIN_DIMENSIONS <= dims <= MAX_DIMENSIONS:
                raise _invalid(f"Dimensions {dims} must be between {MIN_DIMENSIONS} and {MAX_DIMENSIONS}.")
            other = by_vector.get((field, dims))
            if other is not None:
                raise _invalid(
                    f'In table "{table}" vector index "{name}" and vector index "{other}" have the same '
                    "`vectorField`. Vector index fields must be unique within a table. You should combine the "
                    "indexes with the same `vectorField` into one index containing all `filterField`s and then "
                    "use different subsets of the `filterField`s at query time.")
            by_vector[(field, dims)] = name
            if not _can_hold_float_array(document, field.split(".")):
                raise _invalid(
                    f'In table "{table}" the vector index "{name}" is invalid because it references the field '
                    f'"{field}" that is neither an array of float64 or optional array of float64.')
    if len(seen) > MAX_ALL_INDEXES:
        raise _invalid(f'Table "{table}" cannot have more than {MAX_ALL_INDEXES} indexes.')
