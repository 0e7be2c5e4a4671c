"""Validators: exact messages with `$.path`, Convex's JSON form, and "accepts what it generates"."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.validators import ValidationError, Validator, as_validator, v

TABLES = ("agents", "tasks", "channels")


class IdEnv:
    """Ids look like "<table>:<suffix>"; an unknown table or no colon is not an id."""

    def table_of_id(self, id_str: str) -> str | None:
        table, sep, _ = id_str.partition(":")
        return table if sep and table in TABLES else None


ENV = IdEnv()


def reason_at(validator: Validator, value: object) -> str:
    with pytest.raises(ValidationError) as info:
        validator.check(value, ENV)
    assert str(info.value) == f"{info.value.reason} at {info.value.path}"
    return str(info.value)


# --- scalars -------------------------------------------------------------------------------------


def test_number_accepts_only_float() -> None:
    v.number().check(1.5, ENV)
    v.float64().check(float("nan"), ENV)
    assert reason_at(v.number(), 1) == "Expected float64, got int64 (1) at $"
    assert reason_at(v.number(), True) == "Expected float64, got boolean (true) at $"
    assert reason_at(v.float64(), "1") == 'Expected float64, got string ("1") at $'


def test_int64_accepts_int_but_not_bool_or_float() -> None:
    v.int64().check(2**63 - 1, ENV)
    v.bigint().check(-5, ENV)
    assert reason_at(v.int64(), False) == "Expected int64, got boolean (false) at $"
    assert reason_at(v.bigint(), 1.0) == "Expected int64, got float64 (1.0) at $"


def test_boolean_null_bytes_string() -> None:
    v.boolean().check(True, ENV)
    v.null().check(None, ENV)
    v.bytes().check(b"\x00", ENV)
    v.string().check("", ENV)
    assert reason_at(v.boolean(), 1) == "Expected boolean, got int64 (1) at $"
    assert reason_at(v.null(), 0.0) == "Expected null, got float64 (0.0) at $"
    assert reason_at(v.bytes(), "ab") == 'Expected bytes, got string ("ab") at $'
    assert reason_at(v.string(), None) == "Expected string, got null (null) at $"
    assert reason_at(v.string(), b"xy") == "Expected string, got bytes (<2 bytes>) at $"


def test_any_accepts_everything() -> None:
    for value in (None, 1, 1.0, True, "s", b"b", [1, {"a": None}], {"x": [b""]}):
        v.any().check(value, ENV)


def test_long_values_are_shown_short() -> None:
    message = reason_at(v.number(), "x" * 500)
    assert message.startswith('Expected float64, got string ("xxxx')
    assert message.endswith('...) at $')
    assert len(message) < 120
    assert reason_at(v.string(), [1.0, 2.0]) == "Expected string, got array ([1.0, 2.0]) at $"
    assert reason_at(v.string(), {"a": 1}) == "Expected string, got object ({a: 1}) at $"


# --- ids -----------------------------------------------------------------------------------------


def test_id_checks_the_table() -> None:
    v.id("channels").check("channels:abc", ENV)
    assert reason_at(v.id("channels"), "abc") == 'Value "abc" is not a valid ID for table "channels" at $'
    assert reason_at(v.id("channels"), "tasks:1") == 'ID belongs to table "tasks", expected "channels" at $'
    assert reason_at(v.id("channels"), 1.0) == 'Expected ID for table "channels", got float64 (1.0) at $'


# --- literals and unions -------------------------------------------------------------------------


def test_literal_distinguishes_float_int_and_bool() -> None:
    v.literal(1.0).check(1.0, ENV)
    v.literal(1).check(1, ENV)
    v.literal(True).check(True, ENV)
    assert reason_at(v.literal(1.0), 1) == "Expected 1.0, got int64 (1) at $"
    assert reason_at(v.literal(1), 1.0) == "Expected 1, got float64 (1.0) at $"
    assert reason_at(v.literal(1), True) == "Expected 1, got boolean (true) at $"
    assert reason_at(v.literal(True), 1) == "Expected true, got int64 (1) at $"
    assert reason_at(v.literal(0.0), -0.0) == "Expected 0.0, got float64 (-0.0) at $"
    v.literal(float("nan")).check(float("nan"), ENV)


def test_literal_rejects_other_types() -> None:
    with pytest.raises(TypeError):
        v.literal(None)
    with pytest.raises(TypeError):
        v.literal([1])
    with pytest.raises(ValueError):
        v.literal(2**63)


def test_union_of_literals_lists_what_was_expected() -> None:
    status = v.union(v.literal("inbox"), v.literal("done"), v.literal(1))
    status.check("done", ENV)
    status.check(1, ENV)
    assert reason_at(status, "doing") == 'Expected "inbox" | "done" | 1, got string ("doing") at $'
    assert reason_at(status, 1.0) == 'Expected "inbox" | "done" | 1, got float64 (1.0) at $'
    assert reason_at(status, True) == 'Expected "inbox" | "done" | 1, got boolean (true) at $'


def test_union_mixed_members() -> None:
    u = v.union(v.string(), v.null(), v.id("agents"), v.array(v.number()))
    u.check(None, ENV)
    u.check("x", ENV)
    u.check([1.0], ENV)
    assert reason_at(u, 3) == 'Expected string | null | id("agents") | array, got int64 (3) at $'


def test_union_reports_the_only_member_that_could_match() -> None:
    u = v.union(v.string(), v.object({"kind": v.literal("a"), "n": v.number()}))
    assert reason_at(u, {"kind": "a", "n": "1"}) == 'Expected float64, got string ("1") at $.n'
    u2 = v.union(v.object({"a": v.string()}), v.object({"b": v.string()}))
    assert reason_at(u2, {"c": "1"}) == 'Expected object | object, got object ({c: "1"}) at $'


def test_empty_union_matches_nothing() -> None:
    assert reason_at(v.union(), "x") == 'Expected nothing (empty union), got string ("x") at $'


# --- objects, arrays, records --------------------------------------------------------------------


TASK = v.object(
    {
        "title": v.string(),
        "assigneeIds": v.array(v.id("agents")),
        "priority": v.union(v.literal("low"), v.literal("high")),
        "progress": v.number(),
        "channelId": v.optional(v.id("channels")),
    }
)


def good_task(**overrides: object) -> dict:
    task = {"title": "t", "assigneeIds": ["agents:1"], "priority": "low", "progress": 0.0}
    task.update(overrides)
    return task


def test_object_accepts_with_and_without_optional_field() -> None:
    TASK.check(good_task(), ENV)
    TASK.check(good_task(channelId="channels:9"), ENV)


def test_object_error_paths() -> None:
    missing = good_task()
    del missing["progress"]
    assert reason_at(TASK, missing) == "Object is missing the required field `progress` at $"
    assert reason_at(TASK, good_task(extra=1.0)) == (
        "Object contains extra field `extra` that is not in the validator at $"
    )
    assert reason_at(TASK, good_task(title=1.0)) == "Expected string, got float64 (1.0) at $.title"
    assert reason_at(TASK, good_task(assigneeIds=["agents:1", "agents:2", "tasks:3"])) == (
        'ID belongs to table "tasks", expected "agents" at $.assigneeIds[2]'
    )
    assert reason_at(TASK, good_task(channelId=None)) == (
        'Expected ID for table "channels", got null (null) at $.channelId'
    )
    assert reason_at(TASK, []) == "Expected object, got array ([]) at $"


def test_nested_paths_and_custom_base_path() -> None:
    room = v.object({"participants": v.array(v.object({"id": v.string(), "type": v.literal("user")}))})
    value = {"participants": [{"id": "a", "type": "user"}, {"id": "b", "type": "agent"}]}
    assert reason_at(room, value) == 'Expected "user", got string ("agent") at $.participants[1].type'
    with pytest.raises(ValidationError) as info:
        room.check(value, ENV, path="$.args")
    assert info.value.path == "$.args.participants[1].type"


def test_record_paths_quote_odd_keys() -> None:
    rec = v.object({"rec": v.record(v.string(), v.number())})
    rec.check({"rec": {"a": 1.0, "key with space": 2.0}}, ENV)
    assert reason_at(rec, {"rec": {"key with space": 1}}) == (
        'Expected float64, got int64 (1) at $.rec["key with space"]'
    )
    by_id = v.record(v.id("tasks"), v.boolean())
    by_id.check({"tasks:1": True}, ENV)
    assert reason_at(by_id, {"agents:1": True}) == 'ID belongs to table "agents", expected "tasks" at $["agents:1"]'
    assert reason_at(by_id, [1.0]) == "Expected record, got array ([1.0]) at $"


def test_record_key_validator_must_be_string_like() -> None:
    v.record(v.union(v.literal("a"), v.literal("b")), v.any())
    with pytest.raises(TypeError):
        v.record(v.number(), v.any())
    with pytest.raises(TypeError):
        v.record(v.union(v.string(), v.literal(1)), v.any())


def test_optional_only_as_object_field() -> None:
    for build in (
        lambda: v.array(v.optional(v.string())),
        lambda: v.union(v.string(), v.optional(v.null())),
        lambda: v.record(v.string(), v.optional(v.string())),
    ):
        with pytest.raises(TypeError, match="only allowed as an object field"):
            build()
    assert v.optional(v.optional(v.string())).inner == v.string()


def test_as_validator_turns_a_dict_into_an_object() -> None:
    args = as_validator({"a": v.string(), "b": v.optional(v.number())})
    assert args == v.object({"a": v.string(), "b": v.optional(v.number())})
    assert as_validator(v.string()) is v.string()
    nested = v.array({"x": v.string()})
    nested.check([{"x": "1"}], ENV)
    with pytest.raises(TypeError):
        as_validator("string")


# --- JSON ----------------------------------------------------------------------------------------


def test_to_json_matches_convex() -> None:
    assert v.string().to_json() == {"type": "string"}
    assert v.number().to_json() == v.float64().to_json() == {"type": "number"}
    assert v.int64().to_json() == v.bigint().to_json() == {"type": "bigint"}
    assert v.boolean().to_json() == {"type": "boolean"}
    assert v.null().to_json() == {"type": "null"}
    assert v.bytes().to_json() == {"type": "bytes"}
    assert v.any().to_json() == {"type": "any"}
    assert v.id("t").to_json() == {"type": "id", "tableName": "t"}
    assert v.literal("a").to_json() == {"type": "literal", "value": "a"}
    assert v.literal(2.5).to_json() == {"type": "literal", "value": 2.5}
    assert v.literal(False).to_json() == {"type": "literal", "value": False}
    assert v.literal(1).to_json() == {"type": "literal", "value": {"$integer": "AQAAAAAAAAA="}}
    assert v.literal(-1).to_json() == {"type": "literal", "value": {"$integer": "//////////8="}}
    assert v.literal(-0.0).to_json() == {"type": "literal", "value": {"$float": "AAAAAAAAAIA="}}
    assert v.array(v.string()).to_json() == {"type": "array", "value": {"type": "string"}}
    assert v.optional(v.string()).to_json() == {"type": "string"}
    assert v.object({"a": v.string(), "b": v.optional(v.id("t"))}).to_json() == {
        "type": "object",
        "value": {
            "a": {"fieldType": {"type": "string"}, "optional": False},
            "b": {"fieldType": {"type": "id", "tableName": "t"}, "optional": True},
        },
    }
    assert v.record(v.string(), v.number()).to_json() == {
        "type": "record",
        "keys": {"type": "string"},
        "values": {"fieldType": {"type": "number"}, "optional": False},
    }
    assert v.union(v.literal("a"), v.null()).to_json() == {
        "type": "union",
        "value": [{"type": "literal", "value": "a"}, {"type": "null"}],
    }


# --- property: a validator accepts every value generated from it ----------------------------------

FIELD_NAMES = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E) | st.sampled_from("éß✓"), min_size=1, max_size=8
).filter(lambda s: not s.startswith(("$", "_")))
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
LITERALS = st.one_of(st.text(max_size=5), st.floats(allow_nan=False), INT64, st.booleans())

LEAVES = st.one_of(
    st.sampled_from([v.string(), v.number(), v.int64(), v.boolean(), v.null(), v.bytes(), v.any()]),
    st.sampled_from(TABLES).map(v.id),
    LITERALS.map(v.literal),
)
STRING_KEYS = st.one_of(
    st.just(v.string()),
    st.sampled_from(TABLES).map(v.id),
    st.lists(st.text(max_size=4), min_size=1, max_size=3).map(lambda xs: v.union(*map(v.literal, xs))),
)


def _containers(children: st.SearchStrategy[Validator]) -> st.SearchStrategy[Validator]:
    fields = st.dictionaries(FIELD_NAMES, st.tuples(children, st.booleans()), max_size=4)
    return st.one_of(
        children.map(v.array),
        fields.map(lambda fs: v.object({k: v.optional(c) if opt else c for k, (c, opt) in fs.items()})),
        st.tuples(STRING_KEYS, children).map(lambda kc: v.record(*kc)),
        st.lists(children, min_size=1, max_size=4).map(lambda ms: v.union(*ms)),
    )


VALIDATORS = st.recursive(LEAVES, _containers, max_leaves=12)

CONVEX_VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(), INT64, st.text(max_size=5), st.binary(max_size=5)),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(FIELD_NAMES, children, max_size=3),
    max_leaves=8,
)


def values_of(validator: Validator) -> st.SearchStrategy[object]:
    """Every value this strategy draws should satisfy `validator`."""
    if validator.is_optional:
        validator = validator.inner  # type: ignore[attr-defined]
    j = validator.to_json()
    kind = j["type"]
    if kind == "string":
        return st.text(max_size=6)
    if kind == "number":
        return st.floats()
    if kind == "bigint":
        return INT64
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "bytes":
        return st.binary(max_size=6)
    if kind == "any":
        return CONVEX_VALUES
    if kind == "id":
        return st.text(max_size=4).map(lambda s, t=j["tableName"]: f"{t}:{s}")
    if kind == "literal":
        return st.just(validator.value)  # type: ignore[attr-defined]
    if kind == "array":
        return st.lists(values_of(validator.element), max_size=3)  # type: ignore[attr-defined]
    if kind == "object":
        fields = validator.fields  # type: ignore[attr-defined]
        return st.fixed_dictionaries(
            {k: values_of(f) for k, f in fields.items() if not f.is_optional},
            optional={k: values_of(f) for k, f in fields.items() if f.is_optional},
        )
    if kind == "record":
        return st.dictionaries(values_of(validator.keys), values_of(validator.values), max_size=3)  # type: ignore[attr-defined]
    if kind == "union":
        return st.one_of(*[values_of(m) for m in validator.members])  # type: ignore[attr-defined]
    raise AssertionError(kind)


@settings(max_examples=300)
@given(st.data())
def test_validators_accept_what_they_generate(data: st.DataObject) -> None:
    validator = data.draw(VALIDATORS, label="validator")
    value = data.draw(values_of(validator), label="value")
    validator.check(value, ENV)
    json.dumps(validator.to_json(), allow_nan=False)


@given(VALIDATORS, CONVEX_VALUES)
def test_check_either_passes_or_raises_validation_error_with_a_path(validator: Validator, value: object) -> None:
    try:
        validator.check(value, ENV)
    except ValidationError as e:
        assert e.path.startswith("$")
        assert str(e) == f"{e.reason} at {e.path}"


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_number_never_accepts_an_int(n: int) -> None:
    with pytest.raises(ValidationError):
        v.number().check(n, ENV)
    v.int64().check(n, ENV)
    with pytest.raises(ValidationError):
        v.literal(float(n)).check(n, ENV)
    assert math.isfinite(float(n))
