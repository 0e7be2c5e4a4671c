"""Schema: the spec's tables, index rules checked at definition time, document validation messages."""

from __future__ import annotations

import json

import pytest

from engine.errors import EngineError
from engine.schema import (
    BY_CREATION_TIME,
    BY_ID,
    SYSTEM_INDEXES,
    TableDefinition,
    define_schema,
    define_table,
)
from engine.validators import v

TABLES = ("agents", "channels", "messages", "tasks", "documents")


class IdEnv:
    def table_of_id(self, id_str: str) -> str | None:
        table, sep, _ = id_str.partition(":")
        return table if sep and table in TABLES else None


ENV = IdEnv()


def author_type():
    return v.union(v.literal("user"), v.literal("agent"))


def spec_schema(**options):
    """The spec's schema as a Python app writes it. Convex rejects an explicit "_creationTime" index
    field (it is implied), so `["channelId", "_creationTime"]` is written `["channelId"]`."""
    return define_schema(
        {
            "agents": define_table(
                {
                    "name": v.string(),
                    "role": v.string(),
                    "avatar": v.string(),
                    "status": v.union(v.literal("active"), v.literal("idle"), v.literal("blocked")),
                    "level": v.union(v.literal("lead"), v.literal("specialist"), v.literal("intern")),
                    "sessionKey": v.string(),
                    "currentTaskId": v.optional(v.id("tasks")),
                    "personality": v.optional(v.string()),
                    "lastActiveAt": v.optional(v.number()),
                    "tenantId": v.string(),
                }
            )
            .index("by_tenant", ["tenantId"])
            .index("by_session", ["sessionKey"]),
            "channels": define_table(
                {
                    "name": v.string(),
                    "type": v.union(v.literal("text"), v.literal("voice")),
                    "description": v.optional(v.string()),
                    "tenantId": v.string(),
                }
            ).index("by_tenant", ["tenantId"]),
            "messages": define_table(
                {
                    "channelId": v.id("channels"),
                    "authorId": v.string(),
                    "authorType": author_type(),
                    "content": v.string(),
                    "threadId": v.optional(v.id("messages")),
                    "attachments": v.optional(v.array(v.id("documents"))),
                    "tenantId": v.string(),
                }
            )
            .index("by_channel", ["channelId"])
            .index("by_thread", ["threadId"])
            .index("by_tenant", ["tenantId"]),
            "tasks": define_table(
                {
                    "title": v.string(),
                    "description": v.string(),
                    "status": v.union(
                        *map(v.literal, ["inbox", "assigned", "in_progress", "review", "done", "archived"])
                    ),
                    "assigneeIds": v.array(v.id("agents")),
                    "tags": v.array(v.string()),
                    "priority": v.union(*map(v.literal, ["low", "medium", "high", "urgent"])),
                    "progress": v.number(),
                    "borderColor": v.optional(v.string()),
                    "openclawRunId": v.optional(v.string()),
                    "channelId": v.optional(v.id("channels")),
                    "tenantId": v.string(),
                }
            )
            .index("by_tenant", ["tenantId"])
            .index("by_status", ["status", "tenantId"])
            .index("by_assignee", ["assigneeIds", "tenantId"])
            .index("by_openclaw", ["openclawRunId"]),
            "voiceRooms": define_table(
                {
                    "channelId": v.id("channels"),
                    "livekitRoom": v.string(),
                    "participants": v.array(
                        v.object({"id": v.string(), "type": author_type(), "joinedAt": v.number()})
                    ),
                    "tenantId": v.string(),
                }
            )
            .index("by_channel", ["channelId"])
            .index("by_tenant", ["tenantId"]),
            "activities": define_table(
                {
                    "type": v.union(v.literal("task_created"), v.literal("comment")),
                    "agentId": v.optional(v.id("agents")),
                    "message": v.string(),
                    "metadata": v.optional(v.any()),
                    "tenantId": v.string(),
                }
            )
            .index("by_tenant", ["tenantId"])
            .index("by_type", ["type", "tenantId"]),
        },
        **options,
    )


def task(**overrides: object) -> dict:
    doc = {
        "title": "Ship",
        "description": "",
        "status": "inbox",
        "assigneeIds": ["agents:1", "agents:2"],
        "tags": [],
        "priority": "high",
        "progress": 0.0,
        "tenantId": "t1",
    }
    doc.update(overrides)
    return doc


def schema_error(schema, table: str, doc: dict) -> str:
    with pytest.raises(EngineError) as info:
        schema.tables[table].validate(doc, ENV, table=table)
    assert info.value.code == "SchemaValidationError"
    return info.value.message


PREFIX = 'Failed to insert or update a document in table "tasks" because it does not match the schema: '


# --- definitions ---------------------------------------------------------------------------------


def test_spec_schema_defines_tables_and_indexes() -> None:
    schema = spec_schema()
    assert list(schema.tables)[:3] == ["agents", "channels", "messages"]
    tasks = schema.tables["tasks"]
    assert tasks.name == "tasks"
    assert tasks.indexes == {
        "by_tenant": ["tenantId"],
        "by_status": ["status", "tenantId"],
        "by_assignee": ["assigneeIds", "tenantId"],
        "by_openclaw": ["openclawRunId"],
    }
    assert tasks.index_fields("by_status") == ["status", "tenantId", "_creationTime", "_id"]
    assert tasks.index_fields(BY_CREATION_TIME) == ["_creationTime", "_id"]
    assert tasks.index_fields(BY_ID) == ["_id"]
    assert SYSTEM_INDEXES == {"by_id": ["_id"], "by_creation_time": ["_creationTime", "_id"]}
    with pytest.raises(EngineError) as info:
        tasks.index_fields("by_nothing")
    assert info.value.code == "IndexNotFound"
    assert info.value.message == 'Index "by_nothing" not found on table "tasks"'


def test_spec_tables_to_json() -> None:
    schema = spec_schema()
    channels = schema.tables["channels"].to_json("channels")
    assert channels == {
        "tableName": "channels",
        "indexes": [{"indexDescriptor": "by_tenant", "fields": ["tenantId"]}],
        "searchIndexes": [],
        "vectorIndexes": [],
        "documentType": {
            "type": "object",
            "value": {
                "name": {"fieldType": {"type": "string"}, "optional": False},
                "type": {
                    "fieldType": {
                        "type": "union",
                        "value": [{"type": "literal", "value": "text"}, {"type": "literal", "value": "voice"}],
                    },
                    "optional": False,
                },
                "description": {"fieldType": {"type": "string"}, "optional": True},
                "tenantId": {"fieldType": {"type": "string"}, "optional": False},
            },
        },
    }
    rooms = schema.tables["voiceRooms"].document.to_json()
    assert rooms["value"]["participants"] == {
        "fieldType": {
            "type": "array",
            "value": {
                "type": "object",
                "value": {
                    "id": {"fieldType": {"type": "string"}, "optional": False},
                    "type": {
                        "fieldType": {
                            "type": "union",
                            "value": [{"type": "literal", "value": "user"}, {"type": "literal", "value": "agent"}],
                        },
                        "optional": False,
                    },
                    "joinedAt": {"fieldType": {"type": "number"}, "optional": False},
                },
            },
        },
        "optional": False,
    }
    whole = schema.to_json()
    assert whole["schemaValidation"] is True
    assert [t["tableName"] for t in whole["tables"]] == list(schema.tables)
    json.dumps(whole, allow_nan=False)


def test_define_table_accepts_an_object_validator() -> None:
    table = define_table(v.object({"a": v.string()}))
    assert table.document == v.object({"a": v.string()})
    define_schema({"t": define_table(v.union(v.object({"a": v.string()}), v.object({"b": v.string()})))})
    define_schema({"t": define_table(v.any())})


# --- definition errors ---------------------------------------------------------------------------


def invalid(tables: dict) -> str:
    with pytest.raises(EngineError) as info:
        define_schema(tables)
    assert info.value.code == "InvalidSchema"
    return info.value.message


def one_index(name: str, fields: list) -> str:
    return invalid({"tasks": define_table({"a": v.string(), "b": v.string()}).index(name, fields)})


def test_reserved_index_names() -> None:
    reserved = (
        'In table "tasks" cannot name an index "{}" because the name is reserved. '
        'Indexes may not start with an underscore or be named "by_id" or "by_creation_time".'
    )
    for name in ("by_id", "by_creation_time", "_mine"):
        assert one_index(name, ["a"]) == reserved.format(name)
    assert one_index("by a", ["a"]).startswith('In table "tasks" index "by a" has an invalid name')


def test_index_names_unique_per_table() -> None:
    table = define_table({"a": v.string(), "b": v.string()}).index("by_a", ["a"]).index("by_a", ["b"])
    assert invalid({"tasks": table}) == (
        'Two or more indexes in table "tasks" have the name "by_a". Index names must be unique within a table.'
    )


def test_index_field_rules() -> None:
    assert one_index("by_x", ["a", "_creationTime"]) == (
        'In table "tasks" index "by_x": `_creationTime` is automatically added to the end of each index. '
        "It should not be added explicitly in the index definition."
    )
    assert one_index("by_x", ["_id"]) == (
        'In table "tasks" index "by_x": `_id` is not a valid index field. To load documents by ID, use `db.get(id)`.'
    )
    assert one_index("by_x", ["_other"]) == (
        'In table "tasks" index "by_x": field "_other" is reserved: fields starting with "_" cannot be indexed.'
    )
    assert one_index("by_x", []) == 'In table "tasks" index "by_x" must have at least one field.'
    assert one_index("by_x", ["a", "a"]) == 'In table "tasks" index "by_x" lists the field "a" more than once.'
    assert one_index("by_x", [f"f{i}" for i in range(16)]) == (
        'In table "tasks" index "by_x" has 16 fields; an index may have at most 15 '
        "(Convex appends `_creationTime`, for 16 in all)."
    )
    assert one_index("by_x", ["a..b"]) == 'In table "tasks" index "by_x": "a..b" is not a valid field path.'
    define_schema({"t": define_table({"a": v.any()}).index("by_nested", ["a.b", "a.c"])})
    define_schema({"t": define_table({"a": v.any()}).index("by_wide", [f"f{i}" for i in range(15)])})


def test_index_fields_must_be_a_list() -> None:
    with pytest.raises(EngineError) as info:
        define_table({"a": v.string()}).index("by_a", "a")
    assert info.value.code == "InvalidSchema"
    assert info.value.message == "Index \"by_a\" fields must be a list of field names, got 'a'"
    assert define_table({"a": v.string()}).index("by_a", {"fields": ["a"]}).indexes == {"by_a": ["a"]}


def test_indexes_on_the_same_fields() -> None:
    table = define_table({"a": v.string()}).index("by_a", ["a"]).index("by_a2", ["a"])
    assert invalid({"tasks": table}) == (
        'In table "tasks" index "by_a" and index "by_a2" have the same fields. Indexes must be unique within a table.'
    )


def test_at_most_32_indexes() -> None:
    table = define_table({"a": v.any()})
    for i in range(33):
        table.index(f"by_{i}", [f"a.f{i}"])
    assert invalid({"tasks": table}) == 'Table "tasks" has 33 indexes; at most 32 are allowed.'


def test_table_name_rules() -> None:
    for name in ("_tasks", "1tasks", "my-tasks", "", "t" * 65):
        assert invalid({name: define_table({"a": v.string()})}).startswith(f"Table name {name!r} is invalid")
    define_schema({"t" * 64: define_table({"a": v.string()})})


def test_document_validator_rules() -> None:
    assert invalid({"tasks": define_table(v.string())}) == (
        'Table "tasks" documents must be described by v.object(...) (or a union of objects), got string'
    )
    assert invalid({"tasks": define_table({"_owner": v.string()})}) == (
        'Table "tasks" declares the field "_owner": fields starting with "_" are reserved for system fields'
    )
    assert invalid({"tasks": {"a": v.string()}}).startswith('Table "tasks" must be defined with define_table(...)')
    with pytest.raises(EngineError):
        define_table(v.optional(v.object({})))


# --- document validation -------------------------------------------------------------------------


def test_valid_documents_pass() -> None:
    schema = spec_schema()
    schema.tables["tasks"].validate(task(), ENV, table="tasks")
    schema.tables["tasks"].validate(task(channelId="channels:1", borderColor="#fff"), ENV, table="tasks")


def test_system_fields_are_ignored() -> None:
    schema = spec_schema()
    doc = task(_id="tasks:9", _creationTime=1.0)
    schema.tables["tasks"].validate(doc, ENV, table="tasks")
    assert "_id" in doc  # the caller's document is not modified


def test_schema_errors_name_the_table_and_path_from_the_root() -> None:
    schema = spec_schema()
    assert schema_error(schema, "tasks", task(status="doing")) == PREFIX + (
        'Expected "inbox" | "assigned" | "in_progress" | "review" | "done" | "archived", '
        'got string ("doing") at $.status'
    )
    assert schema_error(schema, "tasks", task(assigneeIds=["agents:1", "agents:2", "tasks:3"])) == PREFIX + (
        'ID belongs to table "tasks", expected "agents" at $.assigneeIds[2]'
    )
    assert schema_error(schema, "tasks", task(progress=50)) == PREFIX + "Expected float64, got int64 (50) at $.progress"
    missing = task()
    del missing["title"]
    assert schema_error(schema, "tasks", missing) == PREFIX + "Object is missing the required field `title` at $"
    assert schema_error(schema, "tasks", task(color="red")) == PREFIX + (
        "Object contains extra field `color` that is not in the validator at $"
    )
    assert schema_error(schema, "tasks", task(_secret=1.0)) == PREFIX + (
        "Field `_secret` starts with an underscore, which is reserved for system fields at $._secret"
    )
    room = {"channelId": "channels:1", "livekitRoom": "r", "tenantId": "t",
            "participants": [{"id": "u", "type": "robot", "joinedAt": 1.0}]}
    assert schema_error(schema, "voiceRooms", room) == (
        'Failed to insert or update a document in table "voiceRooms" because it does not match the schema: '
        'Expected "user" | "agent", got string ("robot") at $.participants[0].type'
    )


def test_schema_validation_off_makes_validate_a_no_op() -> None:
    schema = spec_schema(schema_validation=False)
    assert schema.schema_validation is False
    schema.tables["tasks"].validate({"anything": 1, "_weird": 2}, ENV, table="tasks")
    assert schema.to_json()["schemaValidation"] is False


def test_schema_validate_skips_undeclared_tables() -> None:
    schema = spec_schema()
    schema.validate("scratch", {"x": 1}, ENV)
    with pytest.raises(EngineError):
        schema.validate("tasks", {"x": 1}, ENV)


def test_table_definition_repr_and_type() -> None:
    table = spec_schema().tables["channels"]
    assert isinstance(table, TableDefinition)
    assert repr(table) == "TableDefinition(channels, indexes=['by_tenant'])"
