"""Document ids: strings that carry their table, so `v.id("channels")` and `db.get(id)` need no scan.

An id is the base32 text (Convex's lowercase alphabet, no padding) of:

    16 random bytes | table number as a LEB128 varint | 2-byte Fletcher-16 checksum

Table numbers are assigned once per deployment (user tables from 10001, system tables below) and
persisted, so an id stays valid across restarts, exports and imports. A string that does not decode,
or whose checksum fails, is not an id of any table.
"""

from __future__ import annotations

import os
from operator import mul
import re

__all__ = ["new_id", "decode_id", "FIRST_USER_TABLE_NUMBER"]

FIRST_USER_TABLE_NUMBER = 10001
_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_DECODE = {c: i for i, c in enumerate(_ALPHABET)}
_RANDOM_BYTES = 16


def _fletcher16(data: bytes) -> bytes:
    # a = sum of the bytes; b = sum of the running sums = each byte weighted by how many running
    # sums it is part of (n - i). Both mod 255, exactly the byte-at-a-time definition.
    n = len(data)
    a = sum(data) % 255
    b = sum(map(mul, data, range(n, 0, -1))) % 255
    return bytes((b, a))


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _b32encode(data: bytes) -> str:
    n = int.from_bytes(data, "big")
    bits = len(data) * 8
    chars = []
    # Pad the bit string on the right to a multiple of 5 so every character is full.
    pad = (-bits) % 5
    n <<= pad
    for shift in range(bits + pad - 5, -5, -5):
        chars.append(_ALPHABET[(n >> shift) & 31])
    return "".join(chars)


def _b32decode(text: str) -> bytes | None:
    n = 0
    for ch in text:
        value = _DECODE.get(ch)
        if value is None:
            return None
        n = (n << 5) | value
    bits = len(text) * 5
    nbytes = bits // 8
    pad = bits - nbytes * 8
    # A canonical encoding pads fewer than 5 bits; a whole spare character (e.g. an appended "0")
    # would otherwise decode to the same bytes, giving one document two accepted ids.
    if pad >= 5 or n & ((1 << pad) - 1):
        return None
    return (n >> pad).to_bytes(nbytes, "big")


def new_id(table_number: int) -> str:
    body = os.urandom(_RANDOM_BYTES) + _varint(table_number)
    return _b32encode(body + _fletcher16(body))


# decode_id is pure and ids recur (every get, patch and index key of a document decodes its id):
# remember recent answers. Bounded: when full it starts over.
_DECODED: dict[str, int | None] = {}
_DECODED_MAX = 100_000


def decode_id(text: object) -> int | None:
    """The table number an id belongs to, or None if `text` is not a well-formed id."""
    if type(text) is str:
        try:
            return _DECODED[text]
        except KeyError:
            pass
    if not isinstance(text, str) or not 31 <= len(text) <= 37:
        return None
    number = _decode_id(text)
    if len(_DECODED) >= _DECODED_MAX:
        _DECODED.clear()
    _DECODED[text] = number
    return number


# Our alphabet mapped onto int()'s base-32 digits, so the C integer parser does the work.
_TO_INT_DIGITS = str.maketrans(_ALPHABET, "0123456789abcdefghijklmnopqrstuv")
_BAD_CHARS = re.compile(f"[^{_ALPHABET}]")


def _fast_b32decode(text: str) -> bytes | None:
    """_b32decode, at C speed."""
    if not text or _BAD_CHARS.search(text):
        return None
    n = int(text.translate(_TO_INT_DIGITS), 32)
    bits = len(text) * 5
    nbytes = bits // 8
    pad = bits - nbytes * 8
    if pad >= 5 or n & ((1 << pad) - 1):
        return None
    return (n >> pad).to_bytes(nbytes, "big")


def _decode_id(text: str) -> int | None:
    raw = _fast_b32decode(text)
    if raw is None or len(raw) < _RANDOM_BYTES + 3:
        return None
    body, check = raw[:-2], raw[-2:]
    if _fletcher16(body) != check:
        return None
    number = shift = 0
    for i, byte in enumerate(body[_RANDOM_BYTES:]):
        number |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return number if _RANDOM_BYTES + i + 1 == len(body) else None
    return None
