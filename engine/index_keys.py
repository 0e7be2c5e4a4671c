"""Order-preserving index keys: bytes whose memcmp order equals Convex's value order.

Type order: undefined < null < int64 < float64 < boolean < string < bytes < array < object.
Each encoded value starts with a type tag in 0x01..0x09 and is self-delimiting, so a tuple of values
encodes as the plain concatenation and compares element by element. Because every byte that can
follow an encoded value is a tag (<= 0x09) or a terminator (0x00), "every key that starts with
prefix P" is exactly the interval [P, P + b"\\xff").

- int64: big-endian with the sign bit flipped.
- float64: IEEE-754 total order (negative: all bits flipped; otherwise the sign bit flipped).
- string/bytes: 0x00 escaped as 0x00 0xFF, terminated by 0x00 0x00 (strings by UTF-8 bytes).
- array: elements, then 0x00. object: (key as string, value) per field in sorted key order, then 0x00.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["UNDEFINED", "encode_value", "encode_key", "decode_key"]


class _Undefined:
    """A missing field (JavaScript's `undefined`); sorts before null."""

    _instance: _Undefined | None = None

    def __new__(cls) -> _Undefined:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()

T_UNDEFINED, T_NULL, T_INT, T_FLOAT, T_BOOL, T_STR, T_BYTES, T_ARRAY, T_OBJECT = range(1, 10)
_pack_q = struct.Struct(">Q").pack
_unpack_q = struct.Struct(">Q").unpack
_pack_d = struct.Struct(">d").pack
_unpack_d = struct.Struct(">d").unpack
_SIGN = 1 << 63
_MASK = (1 << 64) - 1
_NULL = bytes((T_NULL,))
_UNDEF = bytes((T_UNDEFINED,))
_TRUE = bytes((T_BOOL, 1))
_FALSE = bytes((T_BOOL, 0))


def _escape(tag: int, raw: bytes) -> bytes:
    return bytes((tag,)) + raw.replace(b"\x00", b"\x00\xff") + b"\x00\x00"


def encode_value(value: Any) -> bytes:
    t = type(value)
    if t is str:
        return _escape(T_STR, value.encode())
    if t is float:
        (bits,) = _unpack_q(_pack_d(value))
        bits = (bits ^ _MASK) if bits & _SIGN else (bits | _SIGN)
        return bytes((T_FLOAT,)) + _pack_q(bits)
    if value is None:
        return _NULL
    if t is bool:
        return _TRUE if value else _FALSE
    if t is int:
        if not -_SIGN <= value < _SIGN:
            raise ValueError(f"integer {value} does not fit in int64")
        return bytes((T_INT,)) + _pack_q((value + _SIGN) & _MASK)
    if value is UNDEFINED:
        return _UNDEF
    if t is bytes or isinstance(value, (bytes, bytearray)):
        return _escape(T_BYTES, bytes(value))
    if isinstance(value, list):
        return bytes((T_ARRAY,)) + b"".join(encode_value(v) for v in value) + b"\x00"
    if isinstance(value, dict):
        parts = [bytes((T_OBJECT,))]
        for k in sorted(value):
            parts.append(_escape(T_STR, k.encode()))
            parts.append(encode_value(value[k]))
        parts.append(b"\x00")
        return b"".join(parts)
    raise TypeError(f"cannot index a value of type {t.__name__}")


def encode_key(values: Sequence[Any]) -> bytes:
    return b"".join(encode_value(v) for v in values)


def _unescape(b: bytes, i: int) -> tuple[bytes, int]:
    out = bytearray()
    while True:
        j = b.index(b"\x00", i)
        out += b[i:j]
        if b[j + 1] == 0xFF:
            out.append(0)
            i = j + 2
        else:  # 0x00 0x00 terminator
            return bytes(out), j + 2


def _decode(b: bytes, i: int) -> tuple[Any, int]:
    tag = b[i]
    i += 1
    if tag == T_STR:
        raw, i = _unescape(b, i)
        return raw.decode(), i
    if tag == T_FLOAT:
        (bits,) = _unpack_q(b[i:i + 8])
        bits = (bits ^ _SIGN) if bits & _SIGN else (bits ^ _MASK)
        return _unpack_d(_pack_q(bits))[0], i + 8
    if tag == T_INT:
        (n,) = _unpack_q(b[i:i + 8])
        return n - _SIGN, i + 8
    if tag == T_NULL:
        return None, i
    if tag == T_UNDEFINED:
        return UNDEFINED, i
    if tag == T_BOOL:
        return b[i] == 1, i + 1
    if tag == T_BYTES:
        return _unescape(b, i)
    if tag == T_ARRAY:
        items = []
        while b[i] != 0:
            item, i = _decode(b, i)
            items.append(item)
        return items, i + 1
    if tag == T_OBJECT:
        obj = {}
        while b[i] != 0:
            i += 1  # the key's string tag
            raw, i = _unescape(b, i)
            obj[raw.decode()], i = _decode(b, i)
        return obj, i + 1
    raise ValueError(f"bad index key tag {tag} at byte {i - 1}")


def decode_key(b: bytes) -> list[Any]:
    out = []
    i = 0
    while i < len(b):
        value, i = _decode(b, i)
        out.append(value)
    return out
