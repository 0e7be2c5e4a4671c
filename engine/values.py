"""The Convex value model and its JSON wire form (protocol reference §3).

Python side: None, bool, float (float64), int (int64), str, bytes, list, dict[str, value].
Wire side ("convex_encoded_json"): every JSON number is a float64; int64 travels as
{"$integer": base64(8 bytes LE)}, bytes as {"$bytes": base64}, and NaN/±Infinity/-0.0 as
{"$float": base64(8 bytes LE)}; objects are emitted with sorted keys; no NaN literal is ever written.
`to_clean_json` is the lossy "json" format of the HTTP API.
"""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import msgspec

from .index_keys import UNDEFINED, encode_value

__all__ = ["to_wire", "from_wire", "encode_json", "decode_json", "to_clean_json", "check_field_name",
           "value_size", "compare_values", "convex_type_name"]

_b64 = base64.b64encode
_pack_q = struct.Struct("<q").pack
_unpack_q = struct.Struct("<q").unpack
_pack_d = struct.Struct("<d").pack
_unpack_d = struct.Struct("<d").unpack
_INT_MIN, _INT_MAX = -(1 << 63), (1 << 63) - 1
_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()


def _special_float(x: float) -> bool:
    return x != x or x in (math.inf, -math.inf) or (x == 0.0 and math.copysign(1.0, x) < 0)


def _path(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if key.isidentifier() else f'{path}["{key}"]'


def to_wire(value: Any, path: str = "$") -> Any:
    t = type(value)
    if t is str or value is None or t is bool:
        return value
    if t is float:
        if _special_float(value):
            return {"$float": _b64(_pack_d(value)).decode()}
        return value
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise ValueError(f"Integer {value} does not fit in int64 at {path}")
        return {"$integer": _b64(_pack_q(value)).decode()}
    if t is list:
        return [to_wire(v, _path(path, i)) for i, v in enumerate(value)]
    if t is dict:
        out = {}
        for k, v in value.items():
            if type(k) is not str:
                raise ValueError(f"Object keys must be strings, got {type(k).__name__} at {path}")
            if v is UNDEFINED:
                continue
            if k.startswith("$"):
                raise ValueError(f'Field name "{k}" starts with "$", which is reserved at {path}')
            out[k] = to_wire(v, _path(path, k))
        return out
    if t is bytes or t is bytearray or t is memoryview:
        return {"$bytes": _b64(bytes(value)).decode()}
    if t is tuple:
        return [to_wire(v, _path(path, i)) for i, v in enumerate(value)]
    raise ValueError(f"{t.__name__} is not a supported Convex value at {path}")


def _decode_b64(text: Any, path: str, what: str) -> bytes:
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a base64 string at {path}")
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except Exception:
        raise ValueError(f"{what} is not valid base64 at {path}") from None


def from_wire(obj: Any, path: str = "$") -> Any:
    t = type(obj)
    if t is str or obj is None or t is bool or t is float:
        return obj
    if t is int:
        return float(obj)
    if t is list:
        return [from_wire(v, _path(path, i)) for i, v in enumerate(obj)]
    if t is dict:
        if len(obj) == 1:
            (key,) = obj
            if key == "$integer":
                raw = _decode_b64(obj[key], path, "$integer")
                if len(raw) != 8:
                    raise ValueError(f"$integer must be 8 bytes at {path}")
                return _unpack_q(raw)[0]
            if key == "$float":
                raw = _decode_b64(obj[key], path, "$float")
                if len(raw) != 8:
                    raise ValueError(f"$float must be 8 bytes at {path}")
                x = _unpack_d(raw)[0]
                if not _special_float(x) and x != 0.0:
                    raise ValueError(f"$float {x} should be encoded as a number at {path}")
                return x
            if key == "$bytes":
                return _decode_b64(obj[key], path, "$bytes")
            if key in ("$set", "$map"):
                raise ValueError(f"{key} is no longer supported at {path}")
        out = {}
        for k, v in obj.items():
            if k.startswith("$"):
                raise ValueError(f'Field name "{k}" starts with "$", which is reserved at {path}')
            out[k] = from_wire(v, _path(path, k))
        return out
    raise ValueError(f"unexpected JSON value at {path}")


def encode_json(value: Any) -> bytes:
    return _encoder.encode(to_wire(value))


def decode_json(data: bytes | str) -> Any:
    return from_wire(_decoder.decode(data))


def to_clean_json(value: Any) -> Any:
    t = type(value)
    if t is str or value is None or t is bool:
        return value
    if t is float:
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if t is int:
        return str(value)
    if t is list or t is tuple:
        return [to_clean_json(v) for v in value]
    if t is dict:
        return {k: to_clean_json(v) for k, v in value.items() if v is not UNDEFINED}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _b64(bytes(value)).decode()
    raise ValueError(f"{t.__name__} is not a supported Convex value")


def check_field_name(name: str, *, document: bool) -> None:
    if not isinstance(name, str):
        raise ValueError(f"Field name {name!r} is not a string")
    if len(name) > 1024:
        raise ValueError(f"Field name {name[:40]}... is longer than 1024 characters")
    if name.startswith("$"):
        raise ValueError(f'Field name "{name}" starts with "$", which is reserved')
    if not all(32 <= ord(c) <= 126 for c in name):
        raise ValueError(f"Field name {name!r} must contain only printable ASCII characters")
    if document and name.startswith("_") and name not in ("_id", "_creationTime"):
        raise ValueError(f'Field name "{name}" starts with "_", which is reserved for system fields')


def value_size(value: Any) -> int:
    """Approximate Convex size in bytes (used for the document, argument and result limits)."""
    t = type(value)
    if t is str:
        return len(value.encode()) + 2
    if t is float or t is int:
        return 9
    if value is None or t is bool:
        return 1
    if t is bytes or t is bytearray:
        return len(value) + 2
    if t is list or t is tuple:
        return 2 + sum(value_size(v) for v in value)
    if t is dict:
        return 2 + sum(len(k) + 1 + value_size(v) for k, v in value.items())
    return 0


def compare_values(a: Any, b: Any) -> int:
    """Convex's total order across types (the index-key order)."""
    if type(a) is type(b) and type(a) in (str, float, int) and a == a and b == b:
        return (a > b) - (a < b) if not (type(a) is float and a == 0 and b == 0) else \
            (encode_value(a) > encode_value(b)) - (encode_value(a) < encode_value(b))
    ka, kb = encode_value(a), encode_value(b)
    return (ka > kb) - (ka < kb)


def convex_type_name(value: Any) -> str:
    t = type(value)
    if t is float:
        return "float64"
    if t is int:
        return "int64"
    if t is bool:
        return "boolean"
    if t is str:
        return "string"
    if value is None:
        return "null"
    if t is bytes or t is bytearray:
        return "bytes"
    if t is list:
        return "array"
    if t is dict:
        return "object"
    return t.__name__
