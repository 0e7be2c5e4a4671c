"""Convex's text analysis, filter values, and the keys search reads and writes are made of.

    tokenize("Hello, wörld! 3.14")          # ["hello", "wörld", "3", "14"]
    query_terms("hello wor")               # [("hello", False), ("wor", True)]

Tokenizer (Convex's `convex_en`: tantivy's SimpleTokenizer, RemoveLongFilter(32), LowerCaser):
- a token is a maximal run of characters for which Rust's `char::is_alphanumeric` holds (Unicode
  Alphabetic, or general category Nd / Nl / No); everything else separates;
- a token of 32 UTF-8 bytes or more (measured before lowercasing) is dropped;
- lowercasing is per character (full Unicode mapping, no final-sigma rule: "ΟΔΟΣ" -> "οδοσ").
A search query keeps its first 16 tokens; the last one kept also matches as a prefix.

Filter values compare as Convex values (an int64 1 is not the float64 1.0; a missing field is
`undefined` and can be filtered on). `filter_bytes` is the equality key.

Read-set keys (one mechanism with index reads, engine.reads): a search index is a pseudo-index
whose keys are `[filter ordinal, filter value, *characters of a token, null]` (or `[-1, *chars,
null]` with no filter), encoded like index keys. Each character is its own value, so a prefix of a
token is a prefix of its key ending on a value boundary: the prefix read `hel*` is one interval
that the subscription layer buckets like any index range, and a commit writes the keys of every
token of the old and new version of each changed document.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any

import regex

from ..index_keys import UNDEFINED, encode_key, encode_value

__all__ = [
    "MAX_QUERY_TERMS", "MAX_TEXT_TERM_BYTES", "MAX_CANDIDATES", "MAX_FILTER_CONDITIONS",
    "MAX_UNIQUE_QUERY_TERMS", "MAX_FILTER_FIELDS", "tokenize", "query_terms", "get_path",
    "filter_bytes", "filter_token", "term_key", "prefix_interval", "NO_FILTER",
]

MAX_QUERY_TERMS = 16  # tokens of a query kept (crates/search constants.rs)
MAX_TEXT_TERM_BYTES = 32  # tokens this long or longer are dropped
MAX_CANDIDATES = 1024  # results a search query can produce (MAX_CANDIDATE_REVISIONS)
MAX_FILTER_CONDITIONS = 8  # eq() conditions in one text search
MAX_UNIQUE_QUERY_TERMS = 64  # distinct index terms one query may use (prefix expansions included)
MAX_FILTER_FIELDS = 16  # filter fields of a search or vector index
NO_FILTER = -1  # the filter ordinal of keys that carry no filter value

_TOKEN = regex.compile(r"[\p{Alphabetic}\p{Nd}\p{Nl}\p{No}]+")
_ASCII_TOKEN = regex.compile(r"[A-Za-z0-9]+")


def _lower(token: str) -> str:
    if token.isascii():
        return token.lower()
    if "\u03a3" not in token:  # str.lower() is per character except for the final-sigma rule
        return token.lower()
    return "".join(c.lower() for c in token)


def tokenize(text: str) -> list[str]:
    """Every token of `text`, in order (repeats kept)."""
    if text.isascii():
        return [t.lower() for t in _ASCII_TOKEN.findall(text) if len(t) < MAX_TEXT_TERM_BYTES]
    out = []
    for t in _TOKEN.findall(text):
        if len(t.encode()) < MAX_TEXT_TERM_BYTES:
            out.append(_lower(t))
    return out


def query_terms(text: str) -> list[tuple[str, bool]]:
    """The query's terms (at most 16), each with whether it matches as a prefix (the last)."""
    tokens = tokenize(text)[:MAX_QUERY_TERMS]
    return [(t, i == len(tokens) - 1) for i, t in enumerate(tokens)]


def get_path(doc: Any, path: tuple[str, ...]) -> Any:
    """The value at a field path ("a.b" split), UNDEFINED when absent."""
    value = doc
    for part in path:
        if not isinstance(value, dict):
            return UNDEFINED
        value = value.get(part, UNDEFINED)
    return value


def filter_bytes(value: Any) -> bytes:
    """The equality key of a filter value (Convex's FilterValue: short values as they sort, long
    ones hashed)."""
    raw = encode_value(value)
    return raw if len(raw) < 32 else b"#" + hashlib.sha256(raw).digest()


def filter_token(ordinal: int, fbytes: bytes) -> str:
    """A full-text-index token for "filter field `ordinal` equals the value": never a word token
    (it contains "_", which the tokenizer never keeps)."""
    return f"_{ordinal}_{hashlib.blake2b(fbytes, digest_size=16).hexdigest()}"


@lru_cache(maxsize=65536)
def _chars(token: str) -> bytes:
    return encode_key(list(token))


_END = encode_value(None)


def filter_prefix(ordinal: int, value: Any = None) -> bytes:
    """The key prefix of a filter condition (`NO_FILTER`: keys that carry no filter value)."""
    if ordinal == NO_FILTER:
        return encode_value(NO_FILTER)
    return encode_value(ordinal) + encode_value(value)


def term_key(prefix: bytes, token: str) -> bytes:
    """The key of `token` under a filter prefix: written for each token of a document version,
    read (as a point) for each whole query term."""
    return prefix + _chars(token) + _END


def prefix_interval(prefix: bytes, token: str) -> tuple[bytes, bytes]:
    """Every key of a token starting with `token` (itself included) under a filter prefix."""
    lo = prefix + _chars(token)
    return lo, lo + b"\xff"
