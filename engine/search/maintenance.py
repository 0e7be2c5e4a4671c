"""Commit-time upkeep: what a changed document means for its table's search and vector indexes.

`Transaction.to_commit` calls `index_changes` for every written document of a table that has search
or vector indexes. For each index whose fields the write may have touched it emits

- a `SearchOp` (the document's new entry, or its removal) into the commit record, which the
  storage backend writes in the same transaction as the document itself;
- for full-text indexes, the written keys (engine.search.tokens) of every token of the old and the
  new version, under each filter field's value and under no filter, into the write log. These are
  what make a search read conflict (OCC) or re-run (subscriptions): a search reads the keys of its
  terms under its filter, so it is touched exactly by writes of documents holding one of its terms
  (or a completion of its prefix) with its filter value, before or after the write.
"""

from __future__ import annotations

import array
import sys
from typing import TYPE_CHECKING, Any

from .backend import SearchOp, TextDoc, VectorRow
from .spec import SearchIndexInfo, VectorIndexInfo
from .tokens import NO_FILTER, filter_bytes, filter_prefix, filter_token, get_path, term_key, tokenize

if TYPE_CHECKING:
    from ..catalog import TableInfo

__all__ = ["index_changes", "text_entry", "vector_entry"]

_NO_FILTER_PREFIX = filter_prefix(NO_FILTER)


def text_entry(info: SearchIndexInfo, doc: dict[str, Any]) -> tuple[TextDoc, tuple[Any, ...]]:
    """The document's entry, and its filter values (for the written keys)."""
    text = get_path(doc, info.search_path)
    tokens = tuple(tokenize(text)) if isinstance(text, str) else ()
    values = tuple(get_path(doc, p) for p in info.filter_paths)
    ftokens = tuple(filter_token(i, filter_bytes(v)) for i, v in enumerate(values))
    return TextDoc(tokens, ftokens, float(doc.get("_creationTime", 0.0))), values


def vector_entry(info: VectorIndexInfo, doc: dict[str, Any]) -> VectorRow | None:
    """The document's entry: None unless the field holds exactly `dimensions` float64s (Convex
    leaves such documents out of the index)."""
    value = get_path(doc, info.vector_path)
    if not isinstance(value, list) or len(value) != info.dimensions:
        return None
    for x in value:
        if type(x) is not float:
            return None
    packed = array.array("f", value)
    if sys.byteorder != "little":  # pragma: no cover - stored little-endian everywhere
        packed.byteswap()
    return VectorRow(packed.tobytes(), tuple(filter_bytes(get_path(doc, p)) for p in info.filter_paths))


def _keys(info: SearchIndexInfo, entry: TextDoc, values: tuple[Any, ...], out: list[tuple[int, bytes]]) -> None:
    if not entry.tokens:
        return
    prefixes = [_NO_FILTER_PREFIX] + [filter_prefix(i, v) for i, v in enumerate(values)]
    iid = info.id
    for token in set(entry.tokens):
        for prefix in prefixes:
            out.append((iid, term_key(prefix, token)))


def index_changes(table: TableInfo, doc_id: str, old: dict[str, Any] | None, new: dict[str, Any] | None,
                  changed: set[str] | None, keys: list[tuple[int, bytes]], ops: list[Any]) -> None:
    """Append the ops and written keys of one document write (old/new: None = absent; `changed`:
    the top-level fields a patch may have changed, None = any)."""
    for info in table.search.values():
        if changed is not None and changed.isdisjoint(info.roots):
            continue  # a patch that left every field of this index alone
        if isinstance(info, SearchIndexInfo):
            old_entry = text_entry(info, old) if old is not None else None
            new_entry = text_entry(info, new) if new is not None else None
            if old_entry is not None and new_entry is not None and old_entry == new_entry:
                continue
            if old_entry is not None:
                _keys(info, old_entry[0], old_entry[1], keys)
            if new_entry is not None:
                _keys(info, new_entry[0], new_entry[1], keys)
            ops.append(SearchOp(info.id, doc_id, new_entry[0] if new_entry is not None else None))
        else:
            old_row = vector_entry(info, old) if old is not None else None
            new_row = vector_entry(info, new) if new is not None else None
            if old_row == new_row:
                continue  # the same entry (or none) before and after
            ops.append(SearchOp(info.id, doc_id, new_row))
