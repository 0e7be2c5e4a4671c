"""`ctx.vector_search` in actions: Convex's vector search API, limits and errors.

    results = await ctx.vector_search("foods", "by_embedding", {
        "vector": embedding, "limit": 16,
        "filter": lambda q: q.or_(q.eq("cuisine", "French"), q.eq("cuisine", "Thai")),
    })
    # [{"_id": "...", "_score": 0.93}, ...]  most similar first (cosine similarity)

Rules (Convex's `VectorSearch` / `QdrantSchema::compile`):
- `vector` is a non-empty list of numbers with exactly the index's `dimensions`;
- `limit` defaults to 10 and is at most 256;
- `filter` combines `q.eq(field, value)` with `q.or_(...)` only (no `and`, no other operators);
  the fields must be the index's `filterFields`; a result passes when ANY condition holds (several
  values of one field, or conditions on several fields, alike); at most 64 conditions in all;
- results are `{_id, _score}` (cosine similarity of float32 vectors), best first. Documents whose
  field is not an array of exactly `dimensions` float64 are not in the index.
Like Convex's, a vector search reads the latest committed state and is not part of any read set
(actions are not reactive). Then load the documents with `ctx.run_query`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import EngineError
from ..index_keys import UNDEFINED, encode_value
from .backend import check_available
from .spec import VectorIndexInfo
from .tokens import filter_bytes

if TYPE_CHECKING:
    from ..deployment import Deployment

__all__ = ["vector_search", "VectorFilterBuilder", "MAX_VECTOR_RESULTS", "DEFAULT_VECTOR_LIMIT",
           "MAX_FILTER_LENGTH"]

MAX_VECTOR_RESULTS = 256
DEFAULT_VECTOR_LIMIT = 10
MAX_FILTER_LENGTH = 64
MAX_QUERY_DIMENSIONS = 4096


class _Expr:
    __slots__ = ("op", "args")

    def __init__(self, op: str, args: tuple[Any, ...]) -> None:
        self.op = op
        self.args = args


class VectorFilterBuilder:
    """The `q` of a vector search's `filter`: `q.eq(field, value)` and `q.or_(...)`."""

    __slots__ = ()

    def eq(self, field_name: str, value: Any = UNDEFINED) -> _Expr:
        if not isinstance(field_name, str):
            raise EngineError("InvalidVectorSearchFilter", "The first argument to `q.eq` must be a field name.")
        return _Expr("eq", (field_name, value))

    def or_(self, *exprs: Any) -> _Expr:
        return _Expr("or", exprs)

    or_.__name__ = "or_"


def _conditions(expr: Any, out: dict[str, list[Any]]) -> None:
    if isinstance(expr, _Expr) and expr.op == "eq":
        field, value = expr.args
        try:
            encode_value(value)
        except (ValueError, TypeError):
            raise EngineError("InvalidVectorSearchFilter",
                              "`q.eq` must take a field path as its first argument and a value as its second") from None
        out.setdefault(field, []).append(value)
        return
    if isinstance(expr, _Expr) and expr.op == "or":
        for e in expr.args:
            _conditions(e, out)
        return
    raise EngineError("InvalidVectorSearchFilter", "Filters should be a combination of `q.eq` and `q.or`.")


def _parse_query(query: Any) -> tuple[list[float], int, dict[str, list[Any]]]:
    if not isinstance(query, dict):
        raise EngineError("InvalidVectorSearch", "vector_search() takes a query object: {vector, limit?, filter?}.")
    unknown = set(query) - {"vector", "limit", "filter"}
    if unknown:
        raise EngineError("InvalidVectorSearch", f"Unknown vector search option(s): {', '.join(sorted(unknown))}.")
    vector = query.get("vector")
    if not isinstance(vector, (list, tuple)) or len(vector) == 0:
        raise EngineError("InvalidVectorSearch", "`vector` must be a non-empty Array in vectorSearch")
    for x in vector:
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise EngineError("InvalidVectorSearch", "`vector` must be an Array of numbers in vectorSearch")
    limit = query.get("limit", DEFAULT_VECTOR_LIMIT)
    if limit is None:
        limit = DEFAULT_VECTOR_LIMIT
    if isinstance(limit, float) and limit.is_integer():
        limit = int(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0 or limit >= 2 ** 32:
        raise EngineError("InvalidVectorSearch", f"`limit` must be a non-negative integer, got {limit!r}.")
    conditions: dict[str, list[Any]] = {}
    filt = query.get("filter")
    if filt is not None:
        if not callable(filt):
            raise EngineError("InvalidVectorSearch", "`filter` must be a function of the filter builder `q`.")
        _conditions(filt(VectorFilterBuilder()), conditions)
    return [float(x) for x in vector], limit, conditions


async def vector_search(dep: Deployment, table_name: str, index_name: str, query: Any) -> list[dict[str, Any]]:
    if not isinstance(table_name, str) or not isinstance(index_name, str):
        raise EngineError("InvalidVectorSearch", "vector_search() takes a table name, an index name and a query.")
    vector, limit, conditions = _parse_query(query)
    printable = f"{table_name}.{index_name}"
    if len(vector) > MAX_QUERY_DIMENSIONS:
        raise EngineError("VectorDimensionsMismatch",
                          f"Expected a vector with dimensions {MAX_QUERY_DIMENSIONS}, received {len(vector)}.")
    store = dep.persistence.search
    # A storage backend without search, or one that could not build this index (engine.search.backend).
    check_available(store, printable)
    table = dep.catalog.table(table_name)
    if table is None:
        return []
    info = table.search.get(index_name)
    if not isinstance(info, VectorIndexInfo):
        if info is None:
            raise EngineError("IndexNotFoundError", f"Index {printable} not found.")
        raise EngineError("IndexNotAVectorIndexError", f"Index {printable} is not a vector index")
    if not info.ready:
        raise EngineError("IndexBackfillingError",
                          f"Index {printable} is currently backfilling and not available to query yet.")
    if limit > MAX_VECTOR_RESULTS:
        raise EngineError("VectorLimitTooLargeError",
                          f"Vector queries can fetch at most {MAX_VECTOR_RESULTS} results, requested {limit}.")
    filters: dict[int, list[bytes]] = {}
    length = 0
    for field, values in conditions.items():
        if field not in info.filter_fields:
            raise EngineError("IncorrectVectorFilterField",
                              f'Vector query against {printable} contains a filter on "{field}" but that field '
                              "isn't indexed for filtering in `filterFields`.")
        distinct = sorted({filter_bytes(v) for v in values})  # Convex keeps a set of values per field
        filters[info.filter_fields.index(field)] = distinct
        length += len(distinct)
    if length > MAX_FILTER_LENGTH:
        raise EngineError("TooManyElementsInVectorQueryError",
                          f"Vector query against {printable} has too many conditions. Max: {MAX_FILTER_LENGTH} "
                          f"Actual: {length}")
    if len(vector) != info.dimensions:
        raise EngineError("VectorDimensionsMismatch",
                          f"Expected a vector with dimensions {info.dimensions}, received {len(vector)}.")
    if limit == 0:
        return []
    snapshot = await dep.persistence.snapshot()
    try:
        found = await store.vector_reader(snapshot, info).search(vector, limit, filters)
    finally:
        snapshot.close()
    return [{"_id": doc_id, "_score": score} for doc_id, score in found]
