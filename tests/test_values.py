"""engine.values: wire encoding (protocol reference §3), clean export, field names, sizes, order."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.index_keys import UNDEFINED
from engine.values import (
    check_field_name,
    compare_values,
    convex_type_name,
    decode_json,
    decode_stored,
    encode_json,
    from_wire,
    to_clean_json,
    to_wire,
    value_size,
)

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
FIELD = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=12).filter(
    lambda s: not s.startswith("$"))
SCALARS = st.one_of(
    st.none(), st.booleans(), INT64, st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.binary(max_size=20),
    # NaNs with other payloads / the sign bit set must survive too.
    st.integers(min_value=0, max_value=(1 << 64) - 1).map(lambda b: struct.unpack("<d", b.to_bytes(8, "little"))[0]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(FIELD, inner, max_size=5)),
    max_leaves=30,
)


def same(a, b) -> bool:
    """Structural equality where floats compare by bits (NaN == NaN, -0.0 != 0.0) and int != float."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b


# ------------------------------------------------------------------------------------- round trips

@given(VALUES)
@settings(max_examples=300)
def test_wire_round_trip(value):
    assert same(from_wire(to_wire(value)), value)


@given(VALUES)
@settings(max_examples=300)
def test_json_round_trip_and_no_nan_literals(value):
    data = encode_json(value)
    assert same(decode_json(data), value)
    assert same(decode_json(data.decode()), value)
    # Standard JSON only: the strict stdlib parser must accept it (no NaN/Infinity literals).
    json.loads(data, parse_constant=lambda c: pytest.fail(f"non-standard literal {c} in {data!r}"))


@given(VALUES)
def test_stored_documents_decode_to_the_same_value_through_the_fast_path(value):
    data = encode_json({"v": value})
    assert same(decode_stored(data), {"v": value})


@given(VALUES)
def test_encode_json_is_canonical(value):
    data = encode_json(value)
    assert encode_json(decode_json(data)) == data


def test_keys_sorted():
    assert encode_json({"b": 1.0, "a": {"d": None, "c": True}}) == b'{"a":{"c":true,"d":null},"b":1.0}'


# ---------------------------------------------------------------------------------- exact encodings

@pytest.mark.parametrize("value, wire", [
    (1, {"$integer": "AQAAAAAAAAA="}),
    (-1, {"$integer": "//////////8="}),
    (math.nan, {"$float": "AAAAAAAA+H8="}),
    (math.inf, {"$float": "AAAAAAAA8H8="}),
    (-math.inf, {"$float": "AAAAAAAA8P8="}),
    (-0.0, {"$float": "AAAAAAAAAIA="}),
    (b"\x00\xff", {"$bytes": "AP8="}),
])
def test_special_encodings(value, wire):
    assert to_wire(value) == wire
    assert same(from_wire(wire), value)


@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 5e-324, 1.7976931348623157e308, 3.0])
def test_ordinary_floats_are_plain_numbers(value):
    assert to_wire(value) == value and type(to_wire(value)) is float


def test_int64_bounds():
    assert to_wire((1 << 63) - 1) == {"$integer": "/////////38="}
    assert to_wire(-(1 << 63)) == {"$integer": "AAAAAAAAAIA="}
    assert from_wire({"$integer": "/////////38="}) == (1 << 63) - 1


def test_scalars_pass_through():
    assert to_wire("x") == "x" and to_wire(True) is True and to_wire(None) is None
    assert to_wire(False) is False  # bool is not int64


def test_json_numbers_decode_as_float():
    assert same(from_wire(5), 5.0)
    assert same(decode_json(b'[5, -3, 2.5, 0]'), [5.0, -3.0, 2.5, 0.0])
    assert same(decode_json(b'{"a": {"b": 7}}'), {"a": {"b": 7.0}})


def test_positive_zero_float_tolerated_and_urlsafe_bytes():
    assert same(from_wire({"$float": "AAAAAAAAAAA="}), 0.0)
    assert from_wire({"$bytes": "-_8="}) == b"\xfb\xff"


def test_tuples_and_bytearray_accepted():
    assert to_wire((1, bytearray(b"a"))) == [{"$integer": "AQAAAAAAAAA="}, {"$bytes": "YQ=="}]


def test_undefined_fields_dropped():
    assert to_wire({"a": UNDEFINED, "b": "x"}) == {"b": "x"}
    assert to_clean_json({"a": UNDEFINED}) == {}


def test_dollar_keys_only_special_when_alone():
    # {"$integer": ...} with another key is a normal object, and "$integer" is then an invalid field name.
    with pytest.raises(ValueError, match=r"starts with '\$'.* at \$$"):
        from_wire({"$integer": "AQAAAAAAAAA=", "b": 1})


# ------------------------------------------------------------------------------------------- errors

def err(fn, value) -> str:
    with pytest.raises(ValueError) as info:
        fn(value)
    return str(info.value)


@pytest.mark.parametrize("value, suffix", [
    (object(), " at $"),
    ({"a": [1, {"b": {1, 2}}]}, " at $.a[1].b"),
    ([0, 1, [2, 3, 1 << 64]], " at $[2][2]"),
    ({"odd key": [None, None, complex(1, 2)]}, ' at $["odd key"][2]'),
    ({"a": {"$x": 1}}, " at $.a"),
    ({"a": {"b\n": 1}}, " at $.a"),
    ({"a": {"x" * 1025: 1}}, " at $.a"),
    ({"a": {3: 1}}, " at $.a"),
    ([UNDEFINED], " at $[0]"),
    ({"a": [[1.0, 2.0], [3.0, object()]]}, " at $.a[1][1]"),
])
def test_to_wire_error_paths(value, suffix):
    message = err(to_wire, value)
    assert message.endswith(suffix), message
    assert err(encode_json, value) == message


def test_to_wire_error_messages():
    assert err(to_wire, [1 << 63]) == f"Integer {1 << 63} does not fit in int64 at $[0]"
    assert err(to_wire, {"a": {"$x": 1}}) == "Field name $x starts with '$', which is reserved at $.a"
    assert err(to_wire, {"k": {1, 2}}) == "set is not a supported Convex value at $.k"


@pytest.mark.parametrize("obj, message", [
    ({"a": [1, {"$integer": "AAA="}]}, "Received 2 bytes, expected 8 for $integer at $.a[1]"),
    ({"a": {"$integer": 5}}, "Malformed $integer: expected a base64 string, got number at $.a"),
    ([{"$bytes": "!!!"}], "Malformed $bytes: '!!!' is not valid base64 at $[0]"),
    ({"x": {"$set": []}}, "Received a Set which is no longer supported as a Convex type at $.x"),
    ({"x": [{"$map": []}]}, "Received a Map which is no longer supported as a Convex type at $.x[0]"),
    ({"$float": "AAAAAAAA8D8="}, "Float 1.0 should be encoded as a number at $"),
    ({"$float": "AQAAAAAAAAA="}, "Float 5e-324 should be encoded as a number at $"),
    ({"$float": "AAAA"}, "Received 3 bytes, expected 8 for $float at $"),
    ([[{"$other": 1}]], "Field name $other starts with '$', which is reserved at $[0][0]"),
    ({"ok": {"bad\x7f": 1}}, "Field name bad\x7f has invalid character '\\x7f': "
                             "Field names can only contain non-control ASCII characters at $.ok"),
    ({"é": 1.0}, "Field name é has invalid character 'é': "
                 "Field names can only contain non-control ASCII characters at $"),
])
def test_from_wire_errors(obj, message):
    assert err(from_wire, obj) == message


def test_decode_json_errors():
    assert err(decode_json, b'{"a": [{"$integer": 1}]}').endswith(" at $.a[0]")
    assert err(decode_json, b"{nope").startswith("Invalid JSON")
    assert err(decode_json, b"[NaN]").startswith("Invalid JSON")


# ------------------------------------------------------------------------------------- field names

def test_check_field_name():
    for ok in ["a", "", "_x y", "~!", "x" * 1024, "_id"]:
        check_field_name(ok, document=False)
    check_field_name("_id", document=True)
    check_field_name("_creationTime", document=True)
    for bad in ["$a", "a\tb", "\x00", "é", "x" * 1025]:
        with pytest.raises(ValueError):
            check_field_name(bad, document=False)
    with pytest.raises(ValueError, match="reserved for system fields"):
        check_field_name("_private", document=True)
    with pytest.raises(ValueError, match=r"too long \(1025 > maximum 1024\)"):
        check_field_name("x" * 1025, document=False)


# ------------------------------------------------------------------------------------- clean export

def test_to_clean_json():
    value = {"i": 12, "big": -(1 << 63), "b": b"\x01\x02", "nan": math.nan, "inf": math.inf,
             "ninf": -math.inf, "nz": -0.0, "f": 1.5, "l": [True, None, "s"]}
    assert to_clean_json(value) == {"i": "12", "big": str(-(1 << 63)), "b": "AQI=", "nan": "NaN",
                                    "inf": "Infinity", "ninf": "-Infinity", "nz": -0.0, "f": 1.5,
                                    "l": [True, None, "s"]}
    with pytest.raises(ValueError):
        to_clean_json({1, 2})


@given(VALUES)
def test_clean_json_is_standard_json(value):
    json.dumps(to_clean_json(value), allow_nan=False)


# ------------------------------------------------------------------------------------- size, types

def test_value_size():
    assert value_size(None) == 1
    assert value_size(True) == 1
    assert value_size(1.5) == 9
    assert value_size(7) == 9
    assert value_size("abc") == 5
    assert value_size("é") == 4
    assert value_size(b"ab") == 4
    assert value_size([1.0, "a"]) == 2 + 9 + 3
    assert value_size({"ab": 1.0, "c": "xy"}) == 2 + (2 + 1 + 9) + (1 + 1 + 4)
    assert value_size({"a": UNDEFINED}) == 2


def test_convex_type_name():
    assert [convex_type_name(v) for v in [1.0, 1, True, "s", None, b"", [], {}]] == [
        "float64", "int64", "boolean", "string", "null", "bytes", "array", "object"]


def test_compare_values_basics():
    ordered = [None, -5, 3, -math.inf, -0.0, 0.0, 2.5, math.inf, math.nan, False, True, "", "a", "b",
               b"", b"\x00", [], [None], {}, {"a": None}]
    for i, a in enumerate(ordered):
        for j, b in enumerate(ordered):
            assert compare_values(a, b) == (i > j) - (i < j), (a, b)
