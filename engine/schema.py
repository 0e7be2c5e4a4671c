"""Schema: `define_schema` / `define_table` / `.index()` as data, checked once when the schema is defined.

    schema = define_schema({
        "tasks": define_table({"title": v.string(), "status": v.string()})
                 .index("by_status", ["status"]),
    })
    schema.tables["tasks"].index_fields("by_status")    # ["status", "_creationTime", "_id"]

Invariants (Convex's rules):
- Table names are identifiers not starting with "_"; index names are identifiers, unique per table, not
  "by_id" / "by_creation_time" / "_"-prefixed. A bad definition raises EngineError("InvalidSchema", ...)
  naming the table and index, at `define_schema` time (where a table learns its name).
- `TableDefinition.indexes` holds the declared user fields only. Every user index is really
  `fields + ["_creationTime", "_id"]` (`index_fields`): `_creationTime` is implied, so listing it (or
  `_id`, or any other "_" field) is an error, as in Convex.
- `validate` checks a document's user fields; `_id` / `_creationTime` are ignored (checked elsewhere).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from engine.errors import EngineError
from engine.validators import (
    AnyValidator,
    ObjectValidator,
    UnionValidator,
    ValidationError,
    Validator,
    as_validator,
    field_path,
)

__all__ = [
    "define_schema",
    "define_table",
    "TableDefinition",
    "SchemaDefinition",
    "BY_ID",
    "BY_CREATION_TIME",
    "SYSTEM_INDEXES",
    "SYSTEM_FIELDS",
    "MAX_INDEX_FIELDS",
    "MAX_INDEXES_PER_TABLE",
]

BY_ID = "by_id"
BY_CREATION_TIME = "by_creation_time"
SYSTEM_INDEXES: dict[str, list[str]] = {BY_ID: ["_id"], BY_CREATION_TIME: ["_creationTime", "_id"]}
SYSTEM_FIELDS = ("_id", "_creationTime")
# Counted with the implied `_creationTime`, as Convex does: at most 15 declared fields.
MAX_INDEX_FIELDS = 16
MAX_INDEXES_PER_TABLE = 32
_MAX_NAME_LENGTH = 64
_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def _invalid(message: str) -> EngineError:
    return EngineError("InvalidSchema", message)


class TableDefinition:
    """One table: its document validator and its declared indexes (`.index()` chains)."""

    def __init__(self, document: Validator) -> None:
        self.document = document
        self.name: str | None = None  # set by define_schema
        self.schema_validation = True  # define_schema(schema_validation=False) turns it off
        self.indexes: dict[str, list[str]] = {}
        # Every .index() call in order, duplicates included, so define_schema can report them.
        self._declared: list[tuple[str, list[str]]] = []
        # Search and vector indexes (engine.search): name -> Convex's config (searchField/filterFields,
        # vectorField/dimensions/filterFields), and every declaration in order for the checks.
        self.search_indexes: dict[str, dict[str, Any]] = {}
        self.vector_indexes: dict[str, dict[str, Any]] = {}
        self._declared_search: list[tuple[str, str, dict[str, Any]]] = []

    def index(self, name: str, fields: Any) -> TableDefinition:
        """Declare a database index on `fields` (a list of field paths; `_creationTime` is implied)."""
        if isinstance(fields, Mapping):  # Convex's newer form: .index(name, {fields: [...]})
            fields = fields.get("fields")
        if isinstance(fields, str) or not isinstance(fields, (list, tuple)):
            raise _invalid(f'Index "{name}" fields must be a list of field names, got {fields!r}')
        self._declared.append((name, list(fields)))
        self.indexes.setdefault(name, list(fields))
        return self

    def search_index(self, name: str, config: Mapping[str, Any] | None = None, *,
                     search_field: str | None = None, filter_fields: Any = None) -> TableDefinition:
        """Declare a full-text search index (Convex's `.searchIndex(name, {searchField, filterFields})`):

            .search_index("search_body", search_field="body", filter_fields=["channel"])
        """
        from .search.schema_checks import search_config

        conf = search_config(name, config, search_field, filter_fields)
        self._declared_search.append(("search", name, conf))
        self.search_indexes.setdefault(name, conf)
        return self

    def vector_index(self, name: str, config: Mapping[str, Any] | None = None, *, vector_field: str | None = None,
                     dimensions: Any = None, filter_fields: Any = None) -> TableDefinition:
        """Declare a vector index (Convex's `.vectorIndex(name, {vectorField, dimensions, filterFields})`):

            .vector_index("by_embedding", vector_field="embedding", dimensions=1536, filter_fields=["cuisine"])
        """
        from .search.schema_checks import vector_config

        conf = vector_config(name, config, vector_field, dimensions, filter_fields)
        self._declared_search.append(("vector", name, conf))
        self.vector_indexes.setdefault(name, conf)
        return self

    def index_fields(self, name: str) -> list[str]:
        """The full key of index `name`: user fields + ["_creationTime", "_id"], or a system index's."""
        system = SYSTEM_INDEXES.get(name)
        if system is not None:
            return list(system)
        fields = self.indexes.get(name)
        if fields is None:
            where = f' on table "{self.name}"' if self.name else ""
            raise EngineError("IndexNotFound", f'Index "{name}" not found{where}')
        return [*fields, "_creationTime", "_id"]

    def validate(self, doc: dict[str, Any], env: Any, *, table: str) -> None:
        """Raise EngineError("SchemaValidationError", ...) unless `doc` matches the table's validator."""
        if not self.schema_validation:
            return
        if "_id" in doc or "_creationTime" in doc:
            doc = {k: x for k, x in doc.items() if k not in SYSTEM_FIELDS}
        try:
            for key in doc:
                if key.startswith("_"):
                    raise ValidationError(
                        f"Field `{key}` starts with an underscore, which is reserved for system fields",
                        field_path("$", key),
                    )
            self.document.check(doc, env)
        except ValidationError as e:
            raise EngineError(
                "SchemaValidationError",
                f'Failed to insert or update a document in table "{table}" because it does not match '
                f"the schema: {e}",
            ) from None

    def check_definition(self, table: str) -> None:
        """Convex's table and index rules, in its order; raises EngineError("InvalidSchema", ...)."""
        if not isinstance(table, str) or not _IDENT.match(table) or len(table) > _MAX_NAME_LENGTH:
            raise _invalid(
                f"Table name {table!r} is invalid: table names start with a letter, contain only letters, "
                f"digits and underscores, and are at most {_MAX_NAME_LENGTH} characters"
            )
        _check_document_validator(table, self.document)
        seen_names: set[str] = set()
        by_fields: dict[tuple[str, ...], str] = {}
        for name, fields in self._declared:
            where = f'In table "{table}" index "{name}"'
            if not isinstance(name, str) or not name:
                raise _invalid(f'In table "{table}" an index has an invalid name {name!r}')
            if name in seen_names:
                raise _invalid(
                    f'Two or more indexes in table "{table}" have the name "{name}". '
                    "Index names must be unique within a table."
                )
            seen_names.add(name)
            if name.startswith("_") or name in SYSTEM_INDEXES:
                raise _invalid(
                    f'In table "{table}" cannot name an index "{name}" because the name is reserved. '
                    'Indexes may not start with an underscore or be named "by_id" or "by_creation_time".'
                )
            if not _IDENT.match(name) or len(name) > _MAX_NAME_LENGTH:
                raise _invalid(
                    f"{where} has an invalid name: index names start with a letter, contain only letters, "
                    f"digits and underscores, and are at most {_MAX_NAME_LENGTH} characters"
                )
            if not fields:
                raise _invalid(f"{where} must have at least one field.")
            for field in fields:
                if not isinstance(field, str):
                    raise _invalid(f"{where} has a field that is not a string: {field!r}")
                if field == "_id":
                    raise _invalid(
                        f"{where}: `_id` is not a valid index field. To load documents by ID, use `db.get(id)`."
                    )
                if field == "_creationTime":
                    raise _invalid(
                        f"{where}: `_creationTime` is automatically added to the end of each index. "
                        "It should not be added explicitly in the index definition."
                    )
                if any(part.startswith("_") for part in field.split(".")):
                    raise _invalid(f'{where}: field "{field}" is reserved: fields starting with "_" cannot be indexed.')
                if not all(part and not part.startswith("$") for part in field.split(".")):
                    raise _invalid(f'{where}: "{field}" is not a valid field path.')
            if len(set(fields)) != len(fields):
                duplicate = next(f for i, f in enumerate(fields) if f in fields[:i])
                raise _invalid(f'{where} lists the field "{duplicate}" more than once.')
            if len(fields) + 1 > MAX_INDEX_FIELDS:
                raise _invalid(
                    f"{where} has {len(fields)} fields; an index may have at most {MAX_INDEX_FIELDS - 1} "
                    f"(Convex appends `_creationTime`, for {MAX_INDEX_FIELDS} in all)."
                )
            other = by_fields.get(tuple(fields))
            if other is not None:
                raise _invalid(
                    f'In table "{table}" index "{other}" and index "{name}" have the same fields. '
                    "Indexes must be unique within a table."
                )
            by_fields[tuple(fields)] = name
        if len(seen_names) > MAX_INDEXES_PER_TABLE:
            raise _invalid(
                f'Table "{table}" has {len(seen_names)} indexes; at most {MAX_INDEXES_PER_TABLE} are allowed.'
            )
        if self._declared_search:
            from .search.schema_checks import check_search_definitions

            check_search_definitions(table, self.document, seen_names, self._declared_search)

    def to_json(self, table: str) -> dict[str, Any]:
        """This table in Convex's schema JSON (as pushed by `npx convex deploy`)."""
        return {
            "tableName": table,
            "indexes": [{"indexDescriptor": n, "fields": list(f)} for n, f in self.indexes.items()],
            "searchIndexes": [{"indexDescriptor": n, **c} for n, c in self.search_indexes.items()],
            "vectorIndexes": [{"indexDescriptor": n, **c} for n, c in self.vector_indexes.items()],
            "documentType": self.document.to_json(),
        }

    def __repr__(self) -> str:
        return f"TableDefinition({self.name or '?'}, indexes={list(self.indexes)})"


def _check_document_validator(table: str, document: Validator) -> None:
    # A document is an object; Convex also accepts a union of objects and v.any().
    members = document.members if isinstance(document, UnionValidator) else (document,)
    for member in members:
        if isinstance(member, AnyValidator):
            continue
        if not isinstance(member, ObjectValidator):
            raise _invalid(
                f'Table "{table}" documents must be described by v.object(...) (or a union of objects), '
                f"got {member.label()}"
            )
        for field in member.fields:
            if field.startswith("_"):
                raise _invalid(
                    f'Table "{table}" declares the field "{field}": fields starting with "_" are reserved for '
                    "system fields"
                )


def define_table(fields: Mapping[str, Any] | Validator) -> TableDefinition:
    """A table whose documents match `fields` (a dict of validators, or a validator)."""
    try:
        document = as_validator(fields)
    except TypeError as e:
        raise _invalid(str(e)) from None
    if document.is_optional:
        raise _invalid("A table's document validator cannot be v.optional(...)")
    return TableDefinition(document)


class SchemaDefinition:
    """The app's tables; `schema_validation=False` turns document validation off (indexes still apply)."""

    def __init__(
        self, tables: dict[str, TableDefinition], *, schema_validation: bool, strict_table_name_types: bool
    ) -> None:
        self.tables = tables
        self.schema_validation = schema_validation
        self.strict_table_name_types = strict_table_name_types

    def validate(self, table: str, doc: dict[str, Any], env: Any) -> None:
        """Validate a document for `table`; tables the schema does not declare are not checked."""
        definition = self.tables.get(table)
        if definition is not None:
            definition.validate(doc, env, table=table)

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": [t.to_json(name) for name, t in self.tables.items()],
            "schemaValidation": self.schema_validation,
        }

    def __repr__(self) -> str:
        return f"SchemaDefinition(tables={list(self.tables)})"


def define_schema(
    tables: Mapping[str, TableDefinition], *, schema_validation: bool = True, strict_table_name_types: bool = True
) -> SchemaDefinition:
    """Check every table and index definition and return the schema."""
    if not isinstance(tables, Mapping):
        raise _invalid(f"define_schema() takes a dict of table name -> define_table(...), got {tables!r}")
    checked: dict[str, TableDefinition] = {}
    for name, table in tables.items():
        if not isinstance(table, TableDefinition):
            raise _invalid(f'Table "{name}" must be defined with define_table(...), got {table!r}')
        table.check_definition(name)
        table.name = name
        table.schema_validation = schema_validation
        checked[name] = table
    return SchemaDefinition(
        checked, schema_validation=schema_validation, strict_table_name_types=strict_table_name_types
    )
