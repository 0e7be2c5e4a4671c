"""The Convex value model and its JSON forms (protocol reference §3 and §6).

Python side: None, bool, float (float64), int (int64, never bool), str, bytes, list, dict[str, value].
Wire side ("convex_encoded_json"): every JSON number is a float64; int64 travels as
{"$integer": base64(8 bytes LE two's complement)}, bytes as {"$bytes": base64}, and NaN/±Infinity/-0.0
as {"$float": base64(8 bytes LE IEEE-754)}. Objects are emitted with sorted keys, so `encode_json` is
canonical and never writes a NaN/Infinity literal. `to_clean_json` is the lossy "json" export format.

Invariants: from_wire(to_wire(x)) == x bit for bit (NaN payloads and -0.0 included); every failure is a
ValueError whose message ends with " at <path>" (`$`, `$.field`, `$[3]`, `$["odd key"]`). Paths are only
built on the error path: the happy path allocates nothing but the output.
On input, tuples are accepted as arrays and bytearray/memoryview as bytes; a dict field whose value is
UNDEFINED is dropped (as JavaScript drops `undefined` fields).
"""

from __future__ import annotations

import binascii
import math
import struct
from typing import Any, cast

import msgspec

from .index_keys import UNDEFINED, encode_value

__all__ = ["to_wire", "from_wire", "encode_json", "decode_json", "decode_stored", "to_clean_json", "check_field_name",
           "value_size", "compare_values", "convex_type_name", "MAX_FIELD_NAME_LENGTH", "MAX_NESTING",
           "TooNested", "too_nested"]

MAX_FIELD_NAME_LENGTH = 1024
MAX_NESTING = 64  # Convex's value::MAX_NESTING: arrays and objects nested at most this deep


class TooNested(ValueError):
    """A value (or the JSON it came in) nested deeper than MAX_NESTING. Code: TooNestedError."""

    code = "TooNestedError"


def too_nested(depth: int | None = None) -> TooNested:
    """Convex's error text; `depth` when known (a JSON parser that gave up knows only "more")."""
    if depth is None:
        return TooNested(f"Value is too nested (nested more than {MAX_NESTING} levels deep > maximum nesting "
                         f"{MAX_NESTING})")
    return TooNested(f"Value is too nested (nested {depth} levels deep > maximum nesting {MAX_NESTING})")

_b2a = binascii.b2a_base64
_a2b = binascii.a2b_base64
_pack_d = struct.Struct("<d").pack
_unpack_d = struct.Struct("<d").unpack
_copysign = math.copysign
_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.Decoder().decode
_URLSAFE = str.maketrans("-_", "+/")

# Field names already seen to be valid (document=False rules). Keys repeat endlessly across documents,
# and a set lookup on a str with a cached hash is far cheaper than re-running the character checks.
_GOOD_KEYS: set[str] = set()
_GOOD_KEYS_MAX = 50_000


class _PathError(Exception):
    """Internal failure; container levels add path segments (innermost first) while it unwinds.

    `culprit` is the value whose conversion failed at the current level, so a list can find the failing
    index by identity without building paths on the happy path.
    """

    __slots__ = ("reason", "segments", "culprit")

    def __init__(self, reason: str, culprit: Any) -> None:
        self.reason = reason
        self.segments: list[str] = []
        self.culprit = culprit

    def to_value_error(self, base: str = "$") -> ValueError:
        return ValueError(f"{self.reason.rstrip('.')} at {base}{''.join(reversed(self.segments))}")


def _key_segment(key: str) -> str:
    if key.isidentifier() and key.isascii():
        return "." + key
    return "[" + msgspec.json.encode(key).decode() + "]"


def _index_of(container: Any, culprit: Any) -> int:
    # The first element that *is* the culprit failed first: an identical object earlier would have failed too.
    for i, v in enumerate(container):
        if v is culprit:
            return i
    return -1


def _field_name_error(name: Any) -> str | None:
    """The Convex message for an invalid (non-document) field name, or None when it is valid."""
    if type(name) is not str:
        return f"Object keys must be strings, got {type(name).__name__} {name!r}"
    if name.startswith("$"):
        return f"Field name {name} starts with '$', which is reserved."
    if not (name.isascii() and name.isprintable()):
        bad = next(c for c in name if not " " <= c <= "~")
        return (f"Field name {name} has invalid character {bad!r}: "
                "Field names can only contain non-control ASCII characters")
    if len(name) > MAX_FIELD_NAME_LENGTH:
        return f"Field name is too long ({len(name)} > maximum {MAX_FIELD_NAME_LENGTH})"
    return None


def _check_key(key: Any, container: Any) -> None:
    """Validate a key not yet in _GOOD_KEYS; remembers it when valid."""
    reason = _field_name_error(key)
    if reason is not None:
        raise _PathError(reason, container)
    if len(_GOOD_KEYS) < _GOOD_KEYS_MAX:
        _GOOD_KEYS.add(key)


def check_field_name(name: str, *, document: bool) -> None:
    """Raise ValueError unless `name` may be a field name (Convex `check_valid_field_name`).

    document=True additionally reserves names starting with "_" for system fields (only `_id` and
    `_creationTime` exist); nested objects and function arguments may use them.
    """
    if name not in _GOOD_KEYS:  # (the valid names seen so far: every write checks every field)
        reason = _field_name_error(name)
        if reason is not None:
            raise ValueError(reason)
        if len(_GOOD_KEYS) < _GOOD_KEYS_MAX:
            _GOOD_KEYS.add(name)
    if document and name.startswith("_") and name not in ("_id", "_creationTime"):
        raise ValueError(f"Field name {name} starts with '_', which is reserved for system fields.")


# ---------------------------------------------------------------------------------------------- to_wire

def _float_wire(x: float) -> Any:
    # Only reached for 0.0, -0.0, NaN and ±inf (the caller returns ordinary floats directly).
    if x == 0.0 and _copysign(1.0, x) > 0:
        return x
    return {"$float": _b2a(_pack_d(x), newline=False).decode()}


def _to_wire(value: Any) -> Any:
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is float:
        if value != 0.0 and value - value == 0.0:  # finite and non-zero: a plain number
            return value
        return _float_wire(value)
    if t is int:
        try:
            return {"$integer": _b2a(value.to_bytes(8, "little", signed=True), newline=False).decode()}
        except OverflowError:
            raise _PathError(f"Integer {value} does not fit in int64", value) from None
    if t is dict:
        out = {}
        good = _GOOD_KEYS
        key = None
        try:
            for key, v in value.items():
                if key not in good:
                    _check_key(key, value)
                vt = type(v)
                if vt is str or vt is bool or v is None or (vt is float and v != 0.0 and v - v == 0.0):
                    out[key] = v
                elif v is UNDEFINED:
                    continue
                else:
                    out[key] = _to_wire(v)
        except _PathError as e:
            if e.culprit is not value:  # the failure is inside the field, not about the key itself
                e.segments.append(_key_segment(cast(str, key)))
                e.culprit = value
            raise
        return out
    if t is list or t is tuple:
        try:
            return [_to_wire(v) for v in value]
        except _PathError as e:
            e.segments.append(f"[{_index_of(value, e.culprit)}]")
            e.culprit = value
            raise
    if t is bytes or t is bytearray or t is memoryview:
        return {"$bytes": _b2a(value, newline=False).decode()}
    if value is UNDEFINED:
        raise _PathError("undefined is not a valid Convex value (only object fields may be missing)", value)
    raise _PathError(f"{t.__name__} is not a supported Convex value", value)


def to_wire(value: Any) -> Any:
    """Python Convex value -> JSON-able object in convex_encoded_json form (objects not yet sorted)."""
    try:
        return _to_wire(value)
    except _PathError as e:
        raise e.to_value_error() from None
    except RecursionError:
        raise ValueError("Value is nested too deeply (or contains a cycle) at $") from None


def encode_json(value: Any) -> bytes:
    """Canonical convex_encoded_json bytes (sorted keys, no NaN/Infinity literals)."""
    return _encode(to_wire(value))


# -------------------------------------------------------------------------------------------- from_wire

def _b64_field(obj: dict, key: str) -> bytes:
    text = obj[key]
    if type(text) is not str:
        raise _PathError(f"Malformed {key}: expected a base64 string, got {convex_json_type(text)}", obj)
    if "-" in text or "_" in text:  # the JS decoder also accepts the URL-safe alphabet
        text = text.translate(_URLSAFE)
    try:
        return _a2b(text, strict_mode=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise _PathError(f"Malformed {key}: {text!r} is not valid base64", obj) from None


def _special(obj: dict, key: str) -> Any:
    """Decode a single-key object whose key starts with "$"."""
    if key == "$integer":
        raw = _b64_field(obj, key)
        if len(raw) != 8:
            raise _PathError(f"Received {len(raw)} bytes, expected 8 for $integer", obj)
        return int.from_bytes(raw, "little", signed=True)
    if key == "$float":
        raw = _b64_field(obj, key)
        if len(raw) != 8:
            raise _PathError(f"Received {len(raw)} bytes, expected 8 for $float", obj)
        (x,) = _unpack_d(raw)
        # Like the Rust server: only NaN, ±inf and ±0 may use $float (JS rejects +0 too; we tolerate it).
        if x == x and x - x == 0.0 and x != 0.0:
            raise _PathError(f"Float {x!r} should be encoded as a number", obj)
        return x
    if key == "$bytes":
        return _b64_field(obj, key)
    if key == "$set":
        raise _PathError("Received a Set which is no longer supported as a Convex type", obj)
    if key == "$map":
        raise _PathError("Received a Map which is no longer supported as a Convex type", obj)
    raise _PathError(f"Field name {key} starts with '$', which is reserved.", obj)


def _from_wire(obj: Any, depth: int = 1) -> Any:
    t = type(obj)
    if t is str or t is float or t is bool or obj is None:
        return obj
    if t is int:
        return _int_to_float(obj)
    if depth > MAX_NESTING:
        raise _TooDeep
    if t is dict:
        if len(obj) == 1:
            for key in obj:
                if type(key) is str and key[:1] == "$":
                    return _special(obj, key)
        out = {}
        good = _GOOD_KEYS
        key = None
        try:
            for key, v in obj.items():
                if key not in good:
                    _check_key(key, obj)
                vt = type(v)
                if vt is str or vt is float or vt is bool or v is None:
                    out[key] = v
                elif vt is int:
                    out[key] = _int_to_float(v)
                else:
                    out[key] = _from_wire(v, depth + 1)
        except _PathError as e:
            if e.culprit is not obj:
                e.segments.append(_key_segment(cast(str, key)))
                e.culprit = obj
            raise
        return out
    if t is list:
        try:
            return [_from_wire(v, depth + 1) for v in obj]
        except _PathError as e:
            e.segments.append(f"[{_index_of(obj, e.culprit)}]")
            e.culprit = obj
            raise
    raise _PathError(f"Unexpected JSON value of type {t.__name__}", obj)


def _int_to_float(n: int) -> float:
    try:
        return float(n)
    except OverflowError:
        raise _PathError(f"Number {n} is out of range for float64", n) from None


def from_wire(obj: Any) -> Any:
    """Decoded convex_encoded_json (as from msgspec/json) -> Python Convex value.

    JSON numbers become float; {"$integer"}, {"$float"}, {"$bytes"} decode to int, float, bytes.
    """
    try:
        return _from_wire(obj)
    except _PathError as e:
        raise e.to_value_error() from None
    except (_TooDeep, RecursionError):
        raise too_nested() from None


class _TooDeep(Exception):
    pass


def decode_json(data: bytes | str) -> Any:
    """convex_encoded_json text -> Python Convex value (ValueError on bad JSON or bad encoding)."""
    try:
        obj = _decode(data)
    except msgspec.DecodeError as e:
        raise ValueError(f"Invalid JSON: {e} at $") from None
    except RecursionError:  # the parser gives up long before the stack would
        raise too_nested() from None
    return from_wire(obj)


def decode_stored(data: bytes) -> Any:
    """`decode_json` for what `encode_json` wrote (stored documents): the same value, faster.

    encode_json writes every float with a decimal point or an exponent and every other special value
    (int64, bytes, -0.0, NaN, infinities) as a {"$...": ...} object, and stored field names never
    start with "$". So JSON without the two bytes `"$` decodes to the exact value in C alone."""
    if b'"$' not in data:
        return _decode(data)
    return decode_json(data)


def convex_json_type(obj: Any) -> str:
    """JSON type name of a decoded JSON value (for messages)."""
    t = type(obj)
    if obj is None:
        return "null"
    if t is bool:
        return "boolean"
    if t is int or t is float:
        return "number"
    if t is str:
        return "string"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return t.__name__


# ---------------------------------------------------------------------------------------- clean export

def to_clean_json(value: Any) -> Any:
    """Convex value -> the lossy "json" (clean) format: int64 -> decimal string, bytes -> base64 string,
    NaN/±inf -> "NaN"/"Infinity"/"-Infinity"; -0.0 stays a number; dicts keep insertion order."""
    t = type(value)
    if t is str or t is bool or value is None:
        return value
    if t is float:
        if value - value == 0.0:
            return value
        if value != value:
            return "NaN"
        return "Infinity" if value > 0 else "-Infinity"
    if t is int:
        return str(value)
    if t is dict:
        return {k: to_clean_json(v) for k, v in value.items() if v is not UNDEFINED}
    if t is list or t is tuple:
        return [to_clean_json(v) for v in value]
    if t is bytes or t is bytearray or t is memoryview:
        return _b2a(value, newline=False).decode()
    raise ValueError(f"{t.__name__} is not a supported Convex value")


# ------------------------------------------------------------------------------------ size, order, type

def value_size(value: Any) -> int:
    """Approximate Convex size in bytes, used for the document / argument / result limits.

    Follows Convex's `size()` formula: null and boolean 1, numbers 9, string and bytes length + 2
    (UTF-8 for strings), array 2 + elements, object 2 + sum(len(key) + 1 + value). It is an estimate of
    the real server's accounting, not an exact byte count of any encoding.
    """
    t = type(value)
    if t is str:
        return len(value) + 2 if value.isascii() else len(value.encode("utf-8", "surrogatepass")) + 2
    if t is float or t is int:
        return 9
    if t is bool or value is None:
        return 1
    if t is dict:
        total = 2
        for k, v in value.items():
            vt = type(v)
            if vt is str and v.isascii():
                total += len(k) + 3 + len(v)
            elif vt is float:
                total += len(k) + 10
            elif v is not UNDEFINED:
                total += len(k) + 1 + value_size(v)
        return total
    if t is list or t is tuple:
        total = 2
        for v in value:
            total += value_size(v)
        return total
    if t is bytes or t is bytearray or t is memoryview:
        return len(value) + 2
    return 0


def compare_values(a: Any, b: Any) -> int:
    """-1/0/1 in Convex's total order across types; identical to comparing index keys."""
    ta = type(a)
    if ta is type(b):
        # Same-type fast paths. Python's str order (code points) equals UTF-8 byte order.
        if ta is str or ta is int or ta is bool:
            return (a > b) - (a < b)
        if ta is float and a != b and a == a and b == b:
            return (a > b) - (a < b)  # equal floats may still differ (-0.0 vs 0.0, NaNs): use keys
    ka = encode_value(a)
    kb = encode_value(b)
    return (ka > kb) - (ka < kb)


def convex_type_name(value: Any) -> str:
    """The Convex type name of a Python value ("float64", "int64", ...)."""
    t = type(value)
    if t is str:
        return "string"
    if t is float:
        return "float64"
    if t is bool:
        return "boolean"
    if t is int:
        return "int64"
    if value is None:
        return "null"
    if t is dict:
        return "object"
    if t is list or t is tuple:
        return "array"
    if t is bytes or t is bytearray or t is memoryview:
        return "bytes"
    if value is UNDEFINED:
        return "undefined"
    return t.__name__
