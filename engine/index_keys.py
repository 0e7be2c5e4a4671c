"""Order-preserving index keys: bytes whose memcmp order equals Convex's value order.

Type order: undefined < null < int64 < float64 < boolean < string < bytes < array < object.
Every encoded value starts with a type tag in 0x01..0x0A and is self-delimiting, so a tuple of values
encodes as the plain concatenation and compares element by element (a shorter tuple sorts first).
The byte that follows a complete encoded value is always a tag or a 0x00 terminator, never 0xFF, so
"every key that starts with prefix P" is exactly the interval [P, P + b"\\xff").

- int64: tag + 8 bytes big-endian with the sign bit flipped.
- float64: tag + 8 bytes of the IEEE-754 total-order transform (negative: flip all bits; otherwise flip
  the sign bit): -inf < ... < -0.0 < 0.0 < ... < inf < NaN. NaN bits are kept as they are, as in
  Convex, so the (unusual) NaN with its sign bit set sorts before -inf; Python's float("nan") sorts last.
- boolean: one tag each for false and true.
- string/bytes: tag + raw bytes (UTF-8 for strings) with 0x00 escaped as 0x00 0xFF, then 0x00 0x00.
- array: tag + encoded elements + 0x00. object: tag + (encoded key string, encoded value) per field in
  sorted key order + 0x00; fields whose value is UNDEFINED are absent.
decode_key(encode_key(xs)) == xs exactly (ints stay int, floats keep their bits).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

__all__ = ["UNDEFINED", "encode_value", "encode_key", "decode_key", "value_end", "boundaries"]


class _Undefined:
    """A missing field (JavaScript's `undefined`); sorts before null. A falsy singleton."""

    __slots__ = ()
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

(T_UNDEFINED, T_NULL, T_INT, T_FLOAT, T_FALSE, T_TRUE, T_STR, T_BYTES, T_ARRAY,
 T_OBJECT) = range(1, 11)

_SIGN = 1 << 63
_MASK = (1 << 64) - 1
_INT_BASE = (T_INT << 64) + _SIGN  # value + _INT_BASE == tag byte, then value with its sign bit flipped
_pack_tag_u64 = struct.Struct(">BQ").pack
_unpack_u64 = struct.Struct(">Q").unpack_from
_pack_u64 = struct.Struct(">Q").pack
_pack_d = struct.Struct(">d").pack
_unpack_d = struct.Struct(">d").unpack
_UNDEF = bytes((T_UNDEFINED,))
_NULL = bytes((T_NULL,))
_FALSE = bytes((T_FALSE,))
_TRUE = bytes((T_TRUE,))
_ARRAY = bytes((T_ARRAY,))
_OBJECT = bytes((T_OBJECT,))
_STR_FMT = bytes((T_STR,)) + b"%s\x00\x00"
_BYTES_FMT = bytes((T_BYTES,)) + b"%s\x00\x00"
_END = b"\x00"


def encode_value(value: Any) -> bytes:
    """One value's order-preserving, self-delimiting key bytes (ValueError for non-Convex values)."""
    t = type(value)
    if t is str:
        return _STR_FMT % value.encode().replace(b"\x00", b"\x00\xff")
    if t is float:
        (bits,) = _unpack_u64(_pack_d(value))
        return _pack_tag_u64(T_FLOAT, (bits ^ _MASK) if bits & _SIGN else (bits | _SIGN))
    if value is None:
        return _NULL
    if t is int:
        if not -_SIGN <= value < _SIGN:
            raise ValueError(f"Integer {value} does not fit in int64")
        return (value + _INT_BASE).to_bytes(9, "big")
    if t is bool:
        return _TRUE if value else _FALSE
    if value is UNDEFINED:
        return _UNDEF
    if t is dict:
        parts = [_OBJECT]
        for k in sorted(value):
            v = value[k]
            if v is UNDEFINED:
                continue
            if type(k) is not str:
                raise ValueError(f"Object keys must be strings, got {type(k).__name__}")
            parts.append(_STR_FMT % k.encode().replace(b"\x00", b"\x00\xff"))
            parts.append(encode_value(v))
        parts.append(_END)
        return b"".join(parts)
    if t is list or t is tuple:
        return _ARRAY + b"".join([encode_value(v) for v in value]) + _END
    if t is bytes or t is bytearray or t is memoryview:
        return _BYTES_FMT % bytes(value).replace(b"\x00", b"\x00\xff")
    raise ValueError(f"{t.__name__} is not a supported Convex value")


def encode_key(values: Sequence[Any]) -> bytes:
    """Key bytes of a tuple of values: the concatenation of their encodings."""
    return b"".join([encode_value(v) for v in values])


def _unescape(b: bytes, i: int) -> tuple[bytes, int]:
    """Raw bytes of an escaped run starting at i, and the position after its 0x00 0x00 terminator."""
    j = b.index(0, i)
    if b[j + 1] == 0:  # common case: no embedded 0x00
        return b[i:j], j + 2
    out = bytearray()
    while True:
        out += b[i:j]
        nxt = b[j + 1]
        if nxt == 0:
            return bytes(out), j + 2
        if nxt != 0xFF:
            raise ValueError(f"bad escape byte {nxt:#04x} at byte {j + 1}")
        out.append(0)
        i = j + 2
        j = b.index(0, i)


def _decode(b: bytes, i: int) -> tuple[Any, int]:
    tag = b[i]
    i += 1
    if tag == T_STR:
        raw, i = _unescape(b, i)
        return raw.decode(), i
    if tag == T_FLOAT:
        (bits,) = _unpack_u64(b, i)
        bits = (bits ^ _SIGN) if bits & _SIGN else (bits ^ _MASK)
        return _unpack_d(_pack_u64(bits))[0], i + 8
    if tag == T_INT:
        (n,) = _unpack_u64(b, i)
        return n - _SIGN, i + 8
    if tag == T_NULL:
        return None, i
    if tag == T_UNDEFINED:
        return UNDEFINED, i
    if tag == T_FALSE:
        return False, i
    if tag == T_TRUE:
        return True, i
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
            if b[i] != T_STR:
                raise ValueError(f"bad object key tag {b[i]} at byte {i}")
            raw, i = _unescape(b, i + 1)
            obj[raw.decode()], i = _decode(b, i)
        return obj, i + 1
    raise ValueError(f"bad index key tag {tag} at byte {i - 1}")


def value_end(b: bytes, i: int) -> int:
    """Offset just past the encoded value starting at `i`, or -1 if it is cut short."""
    n = len(b)
    if i >= n:
        return -1
    tag = b[i]
    if tag in (T_STR, T_BYTES):
        j = i + 1
        while True:
            j = b.find(b"\x00", j)
            if j < 0 or j + 1 >= n:
                return -1
            if b[j + 1] == 0xFF:
                j += 2
                continue
            return j + 2 if b[j + 1] == 0 else -1
    if tag in (T_INT, T_FLOAT):
        return i + 9 if i + 9 <= n else -1
    if tag in (T_NULL, T_UNDEFINED, T_FALSE, T_TRUE):
        return i + 1
    if tag == T_ARRAY:
        j = i + 1
        while j < n and b[j] != 0:
            j = value_end(b, j)
            if j < 0:
                return -1
        return j + 1 if j < n else -1
    if tag == T_OBJECT:
        j = i + 1
        while j < n and b[j] != 0:
            j = value_end(b, j)  # key
            if j < 0:
                return -1
            j = value_end(b, j)  # value
            if j < 0:
                return -1
        return j + 1 if j < n else -1
    return -1


def boundaries(b: bytes) -> list[int]:
    """Offsets at which a complete encoded value ends, starting with 0 (a partial tail is ignored)."""
    out = [0]
    i = 0
    while True:
        i = value_end(b, i)
        if i < 0:
            return out
        out.append(i)


def decode_key(b: bytes) -> list[Any]:
    """Inverse of encode_key (for cursors and debugging); ValueError on malformed input."""
    b = bytes(b)
    out = []
    i = 0
    n = len(b)
    try:
        while i < n:
            value, i = _decode(b, i)
            out.append(value)
    except (IndexError, struct.error, UnicodeDecodeError) as e:
        raise ValueError(f"malformed index key ({e})") from None
    except ValueError as e:
        raise ValueError(f"malformed index key: {e}") from None
    return out
