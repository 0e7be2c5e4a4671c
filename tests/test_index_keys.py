"""engine.index_keys: byte order equals Convex value order; keys are self-delimiting and invertible."""

from __future__ import annotations

import functools
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.index_keys import UNDEFINED, decode_key, encode_key, encode_value
from engine.values import compare_values

INT64 = st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1)
ANY_FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, math.inf, -math.inf, math.nan, 5e-324, -5e-324]),
)
# Small alphabets make ties, shared prefixes and embedded NUL bytes likely.
TEXT = st.text(alphabet=st.sampled_from(["\x00", "a", "b", "\xff", "é", "\U0001f600"]), max_size=4)
SCALARS = st.one_of(st.none(), st.booleans(), INT64, ANY_FLOAT, TEXT,
                    st.binary(max_size=4).map(lambda b: b.replace(b"\x01", b"\x00")))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(["", "a", "ab", "b", "_id"]), inner, max_size=3)),
    max_leaves=12,
)
KEY_VALUES = st.one_of(st.just(UNDEFINED), VALUES)

TYPE_RANK = {type(None): 1, int: 2, float: 3, bool: 4, str: 5, bytes: 6, list: 7, dict: 8}


def float_order(x: float) -> tuple:
    """IEEE-754 total order, written without bit tricks: NaNs by sign at the extremes, -0.0 < 0.0."""
    sign = math.copysign(1.0, x)
    if x != x:
        return (2 if sign > 0 else -2, 0.0, 0.0)
    if x == 0.0:
        return (0, 0.0, sign)
    return (0, x, 0.0)


def reference_cmp(a, b) -> int:
    """Convex's value order from the rules: type rank first, then within the type."""
    if a is UNDEFINED or b is UNDEFINED:
        return (a is not UNDEFINED) - (b is not UNDEFINED)
    ra, rb = TYPE_RANK[type(a)], TYPE_RANK[type(b)]
    if ra != rb:
        return (ra > rb) - (ra < rb)
    if a is None:
        return 0
    if type(a) is float:
        a, b = float_order(a), float_order(b)
    elif type(a) is str:
        a, b = a.encode(), b.encode()
    elif type(a) is list:
        for x, y in zip(a, b):
            c = reference_cmp(x, y)
            if c:
                return c
        return (len(a) > len(b)) - (len(a) < len(b))
    elif type(a) is dict:
        ia, ib = sorted(a.items()), sorted(b.items())
        for (ka, va), (kb, vb) in zip(ia, ib):
            c = reference_cmp(ka, kb) or reference_cmp(va, vb)
            if c:
                return c
        return (len(ia) > len(ib)) - (len(ia) < len(ib))
    return (a > b) - (a < b)


def tuple_cmp(xs, ys) -> int:
    return reference_cmp(list(xs), list(ys))


def same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)
    if type(a) is list:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a is b if a is UNDEFINED else a == b


def sign(n: int) -> int:
    return (n > 0) - (n < 0)


@given(KEY_VALUES, KEY_VALUES)
@settings(max_examples=500)
def test_pairwise_order_matches_reference(a, b):
    ka, kb = encode_value(a), encode_value(b)
    assert sign((ka > kb) - (ka < kb)) == reference_cmp(a, b)
    if a is not UNDEFINED and b is not UNDEFINED:
        assert compare_values(a, b) == reference_cmp(a, b)


@given(st.lists(KEY_VALUES, max_size=12))
def test_sorting_by_key_matches_reference_sort(values):
    by_key = sorted(values, key=encode_value)
    by_ref = sorted(values, key=functools.cmp_to_key(reference_cmp))
    assert [encode_value(v) for v in by_key] == [encode_value(v) for v in by_ref]


@given(st.lists(KEY_VALUES, max_size=4), st.lists(KEY_VALUES, max_size=4))
@settings(max_examples=300)
def test_tuple_keys_compare_elementwise(xs, ys):
    kx, ky = encode_key(xs), encode_key(ys)
    assert sign((kx > ky) - (kx < ky)) == tuple_cmp(xs, ys)


@given(st.lists(KEY_VALUES, max_size=5))
@settings(max_examples=300)
def test_decode_inverts_encode(values):
    assert same(decode_key(encode_key(values)), values)


@given(st.lists(KEY_VALUES, min_size=1, max_size=3), st.lists(KEY_VALUES, max_size=3))
def test_prefix_ranges(prefix, rest):
    """Every key extending a value prefix P lies in [P, P + 0xFF); and the byte after a value is < 0xFF."""
    p = encode_key(prefix)
    k = encode_key(prefix + rest)
    assert p <= k < p + b"\xff"
    if rest:
        assert k[len(p)] < 0xFF


@given(KEY_VALUES, KEY_VALUES)
def test_gt_bound_excludes_equal_value_only(a, b):
    # The query planner's `gt(x)` lower bound is enc(x) + 0xFF: strictly-greater values stay above it.
    ka, kb = encode_value(a), encode_value(b)
    if reference_cmp(b, a) > 0:
        assert kb > ka + b"\xff"
    else:
        assert encode_key([b, None]) < ka + b"\xff"


def test_type_order_and_tags():
    ordered = [UNDEFINED, None, -(1 << 63), 0, (1 << 63) - 1, -math.inf, -0.0, 0.0, math.inf, math.nan,
               False, True, "", "\x00", "a", "a\x00", "a\x01", "b", "é", b"", b"\x00", b"\xff",
               [], [UNDEFINED], [None], [None, None], [1], {}, {"a": None}, {"a": 1}, {"b": None}]
    keys = [encode_value(v) for v in ordered]
    assert keys == sorted(keys)
    assert len(set(keys)) == len(keys)
    for k in keys:
        assert 0x01 <= k[0] <= 0x0F


def test_int_and_float_encodings():
    assert encode_value(0)[1:] == b"\x80" + b"\x00" * 7
    assert encode_value(-1)[1:] == b"\x7f" + b"\xff" * 7
    assert encode_value(1.0)[1:] == bytes.fromhex("bff0000000000000")
    assert encode_value(-1.0)[1:] == bytes.fromhex("400fffffffffffff")
    # A NaN with its sign bit set sorts first among floats, as in Convex (raw bits, no canonicalisation).
    neg_nan = struct.unpack(">d", bytes.fromhex("fff8000000000000"))[0]
    assert encode_value(neg_nan) < encode_value(-math.inf)


def test_strings_escape_nul_and_terminate():
    assert encode_value("a\x00b")[1:] == b"a\x00\xffb\x00\x00"
    assert encode_value(b"")[1:] == b"\x00\x00"


def test_objects_ignore_insertion_order_and_undefined_fields():
    assert encode_value({"b": 1, "a": 2}) == encode_value({"a": 2, "b": 1})
    assert encode_value({"a": 1.0, "x": UNDEFINED}) == encode_value({"a": 1.0})


@pytest.mark.parametrize("bad", [1 << 63, -(1 << 63) - 1, object(), {1, 2}])
def test_encode_rejects(bad):
    with pytest.raises(ValueError):
        encode_value(bad)


@pytest.mark.parametrize("data", [b"\x7f", b"\x03\x00", b"\x07abc", b"\x07a\x00\x01", b"\x09\x02", b"\x0a\x02\x00"])
def test_decode_rejects_malformed(data):
    with pytest.raises(ValueError):
        decode_key(data)


def test_decode_empty():
    assert decode_key(b"") == []


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c", "_creationTime", "_id"]), KEY_VALUES, max_size=5))
def test_a_stored_index_key_is_its_head_fields_then_the_shared_system_tail(doc) -> None:
    """engine.catalog: commits encode a version's (_creationTime, _id) once and append it to every
    stored index's key (`key_with_tail`): the same bytes as `key` for every index shape."""
    from engine.catalog import IndexInfo, system_tail

    doc = {k: v for k, v in doc.items() if v is not UNDEFINED}
    shapes = [("by_id", ("_id",), False), ("by_creation_time", ("_creationTime", "_id"), True),
              ("one", ("a", "_creationTime", "_id"), True), ("two", ("b", "a", "_creationTime", "_id"), True),
              ("nested", ("a.x", "_creationTime", "_id"), True), ("no_tail", ("a", "b"), True)]
    tail = system_tail(doc)
    for n, (name, fields, stored) in enumerate(shapes):
        ix = IndexInfo(n, name, fields, tuple(tuple(f.split(".")) for f in fields), stored)
        assert ix.key_with_tail(doc, tail) == ix.key(doc), name
