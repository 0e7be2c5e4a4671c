"""`ctx.db.query(table)`: index ranges, order, filters, and the terminal reads.

    await (ctx.db.query("messages")
           .with_index("by_channel", lambda q: q.eq("channelId", cid).gt("_creationTime", t))
           .order("desc").filter(lambda q: q.neq(q.field("authorType"), "agent")).take(20))

An index range is eq() on a prefix of the index's fields, then at most one lower bound (gt/gte) and
one upper bound (lt/lte) on the next field; it becomes one [lo, hi) interval of index-key bytes.
Filters are expressions evaluated per scanned document with Convex's cross-type value order; they
do not narrow the read set (the documents were scanned).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from .errors import EngineError
from .index_keys import UNDEFINED, encode_value
from .storage.base import MAX_PAGE
from .values import compare_values

if TYPE_CHECKING:
    from .database import DatabaseReader

__all__ = ["Query", "IndexRange", "FilterBuilder", "Expr"]

_TOP = b"\xff"


class IndexRange:
    """Builder passed to `with_index`'s range function."""

    __slots__ = ("_table", "_index", "_fields", "_eq", "_lower", "_upper", "_range_field")

    def __init__(self, table: str, index: str, fields: tuple[str, ...]) -> None:
        self._table = table
        self._index = index
        self._fields = fields
        self._eq: list[Any] = []
        self._lower: tuple[str, Any] | None = None
        self._upper: tuple[str, Any] | None = None
        self._range_field: str | None = None

    @property
    def _name(self) -> str:  # for messages only: formatted when one is raised
        return f"{self._table}.{self._index}"

    def _next_field(self, field: str, op: str) -> None:
        position = len(self._eq)
        if self._range_field is not None:
            if field != self._range_field:
                raise EngineError("InvalidIndexRange",
                                  f'Index range on "{self._name}": after a range on "{self._range_field}", '
                                  f'"{op}" on "{field}" is not allowed.')
            return
        if position >= len(self._fields) or self._fields[position] != field:
            expected = self._fields[position] if position < len(self._fields) else "(no more fields)"
            raise EngineError("InvalidIndexRange",
                              f'Index range on "{self._name}": expected a condition on "{expected}" '
                              f'(fields in index order: {", ".join(self._fields)}), got {op}("{field}").')

    def eq(self, field: str, value: Any) -> IndexRange:
        if self._range_field is not None:
            raise EngineError("InvalidIndexRange", f'Index range on "{self._name}": eq() must come before gt/lt bounds.')
        eq = self._eq
        if len(eq) >= len(self._fields) or self._fields[len(eq)] != field:
            self._next_field(field, "eq")  # raises
        eq.append(value)
        return self

    def _bound(self, which: str, op: str, field: str, value: Any) -> IndexRange:
        self._next_field(field, op)
        if (self._lower if which == "lower" else self._upper) is not None:
            raise EngineError("InvalidIndexRange", f'Index range on "{self._name}": two {which} bounds on "{field}".')
        self._range_field = field
        setattr(self, f"_{which}", (op, value))
        return self

    def gt(self, field: str, value: Any) -> IndexRange:
        return self._bound("lower", "gt", field, value)

    def gte(self, field: str, value: Any) -> IndexRange:
        return self._bound("lower", "gte", field, value)

    def lt(self, field: str, value: Any) -> IndexRange:
        return self._bound("upper", "lt", field, value)

    def lte(self, field: str, value: Any) -> IndexRange:
        return self._bound("upper", "lte", field, value)

    def interval(self) -> tuple[bytes, bytes]:
        eq = self._eq
        prefix = encode_value(eq[0]) if len(eq) == 1 else b"".join([encode_value(v) for v in eq])
        lo, hi = prefix, prefix + _TOP
        if self._lower is not None:
            op, value = self._lower
            lo = prefix + encode_value(value) + (_TOP if op == "gt" else b"")
        if self._upper is not None:
            op, value = self._upper
            hi = prefix + encode_value(value) + (_TOP if op == "lte" else b"")
        return lo, hi


class Expr:
    """A filter expression node; `evaluate(doc)` returns a Convex value (or UNDEFINED)."""

    __slots__ = ("_fn",)

    def __init__(self, fn: Callable[[dict[str, Any]], Any]) -> None:
        self._fn = fn

    def evaluate(self, doc: dict[str, Any]) -> Any:
        return self._fn(doc)


def _lift(x: Any) -> Expr:
    if isinstance(x, Expr):
        return x
    return Expr(lambda doc, x=x: x)


def _cmp(a: Any, b: Any) -> int:
    if a is UNDEFINED or b is UNDEFINED:
        return (a is not UNDEFINED) - (b is not UNDEFINED)
    return compare_values(a, b)


def _arith(name: str, a: Any, b: Any) -> Any:
    if type(a) is not type(b) or not isinstance(a, (int, float)) or isinstance(a, bool):
        raise EngineError("InvalidFilter", f"q.{name}() needs two numbers of the same type, got {a!r} and {b!r}.")
    if name == "add":
        return a + b
    if name == "sub":
        return a - b
    if name == "mul":
        return a * b
    if name == "div":
        if isinstance(a, int):
            if b == 0:
                raise EngineError("InvalidFilter", "q.div(): division by zero.")
            q = abs(a) // abs(b)
            return q if (a >= 0) == (b >= 0) else -q
        return a / b if b else (float("nan") if a == 0 else float("inf") * (1 if a > 0 else -1))
    if isinstance(a, int):
        if b == 0:
            raise EngineError("InvalidFilter", "q.mod(): modulo by zero.")
        return a - b * _arith("div", a, b)
    import math

    return math.fmod(a, b)


class FilterBuilder:
    """The `q` in `.filter(lambda q: ...)` — Convex's filter expression language."""

    def field(self, path: str) -> Expr:
        parts = path.split(".")

        def get(doc: dict[str, Any]) -> Any:
            value: Any = doc
            for part in parts:
                if not isinstance(value, dict):
                    return UNDEFINED
                value = value.get(part, UNDEFINED)
            return value

        return Expr(get)

    def eq(self, a: Any, b: Any) -> Expr:
        x, y = _lift(a), _lift(b)
        return Expr(lambda d: _cmp(x.evaluate(d), y.evaluate(d)) == 0)

    def neq(self, a: Any, b: Any) -> Expr:
        x, y = _lift(a), _lift(b)
        return Expr(lambda d: _cmp(x.evaluate(d), y.evaluate(d)) != 0)

    def lt(self, a: Any, b: Any) -> Expr:
        x, y = _lift(a), _lift(b)
        return Expr(lambda d: _cmp(x.evaluate(d), y.evaluate(d)) < 0)

    def lte(self, a: Any, b: Any) -> Expr:
        x, y = _lift(a), _lift(b)
        return Expr(lambda d: _cmp(x.evaluate(d), y.evaluate(d)) <= 0)

    def gt(self, a: Any, b: Any) -> Expr:
        x, y = _lift(a), _lift(b)
        return Expr(lambda d: _cmp(x.evaluate(d), y.evaluate(d)) > 0)

    def gte(self, a: Any, b: Any) -> Expr:
        x, y = _lift(a), _lift(b)
        return Expr(lambda d: _cmp(x.evaluate(d), y.evaluate(d)) >= 0)

    def and_(self, *xs: Any) -> Expr:
        es = [_lift(x) for x in xs]
        return Expr(lambda d: all(e.evaluate(d) is True for e in es))

    def or_(self, *xs: Any) -> Expr:
        es = [_lift(x) for x in xs]
        return Expr(lambda d: any(e.evaluate(d) is True for e in es))

    def not_(self, x: Any) -> Expr:
        e = _lift(x)
        return Expr(lambda d: e.evaluate(d) is not True)

    def neg(self, x: Any) -> Expr:
        e = _lift(x)
        return Expr(lambda d: _arith("sub", type(v := e.evaluate(d))(0), v))

    def _binary(name: str) -> Callable[..., Expr]:  # type: ignore[misc]
        def method(self: FilterBuilder, a: Any, b: Any) -> Expr:
            x, y = _lift(a), _lift(b)
            return Expr(lambda d: _arith(name, x.evaluate(d), y.evaluate(d)))

        method.__name__ = name
        return method

    add = _binary("add")
    sub = _binary("sub")
    mul = _binary("mul")
    div = _binary("div")
    mod = _binary("mod")
    del _binary


_FILTER_BUILDER = FilterBuilder()


class Query:
    """A lazy query over one table; nothing is read until a terminal method is awaited."""

    __slots__ = ("_db", "_table", "_index", "_range", "_desc", "_filters", "_ordered", "_indexed", "_search")

    def __init__(self, db: DatabaseReader, table: str) -> None:
        self._db = db
        self._table = table
        self._index = "by_creation_time"
        self._range: Callable[[IndexRange], Any] | None = None
        self._desc = False
        self._filters: list[Expr] = []
        self._ordered = False
        self._indexed = False
        self._search: tuple[str, Callable[[Any], Any]] | None = None  # with_search_index (engine.search)

    # -- builders (each returns self: a query is built once and consumed once) ----------------
    def with_index(self, name: str, range_fn: Callable[[IndexRange], Any] | None = None) -> Query:
        if self._indexed:
            raise EngineError("InvalidQuery", "with_index() can be called once per query.")
        self._indexed = True
        self._index = name
        self._range = range_fn
        return self

    def with_search_index(self, name: str, search_filter: Callable[[Any], Any]) -> Query:
        """Results of a full-text search index in relevance order (engine.search.text):
        `lambda q: q.search("body", text).eq("channel", c)`."""
        if self._indexed:
            raise EngineError("InvalidQuery", "with_search_index() cannot follow with_index() or another "
                              "with_search_index() on the same query.")
        if self._ordered:
            raise EngineError("InvalidQuery",
                              "Search queries must always be in relevance order. Can not set order manually.")
        if not callable(search_filter):
            raise EngineError("InvalidQuery", "with_search_index() takes the index name and a search filter function.")
        self._indexed = True
        self._search = (name, search_filter)
        return self

    def full_table_scan(self) -> Query:
        self._indexed = True
        return self

    def order(self, order: str) -> Query:
        if order not in ("asc", "desc"):
            raise EngineError("InvalidQuery", f'order() takes "asc" or "desc", got {order!r}.')
        if self._search is not None:
            raise EngineError("InvalidQuery",
                              "Search queries must always be in relevance order. Can not set order manually.")
        if self._ordered:
            raise EngineError("InvalidQuery", "order() can be called once per query.")
        self._ordered = True
        self._desc = order == "desc"
        return self

    def filter(self, predicate: Callable[[FilterBuilder], Any]) -> Query:
        self._filters.append(_lift(predicate(_FILTER_BUILDER)))
        return self

    # -- execution -----------------------------------------------------------------------------
    async def _open(self) -> Any:  # RangeScan, or engine.search.text.SearchScan for a search
        db = self._db
        table = db._txn.catalog.by_name.get(self._table) if type(self._table) is str else None
        if table is not None and not table.private and table.system == db._system_tables:
            txn = db._txn  # a table that exists, on this reader's side: nothing to check or create
        else:
            txn, table = await db._reader(self._table)
        if table is None:
            return None
        if self._search is not None:
            from .search.text import open_search

            return await open_search(txn, table, self._search[0], self._search[1], txn.catalog.persistence.search)
        ix = txn.catalog.index(table, self._index)
        builder = IndexRange(self._table, self._index, ix.fields)
        if self._range is not None:
            result = self._range(builder)
            if result is not None and result is not builder:
                raise EngineError("InvalidIndexRange", "The index range function must return the builder it was given.")
        lo, hi = builder.interval()
        return txn.scan(table, ix, lo, hi, self._desc)

    def _matches(self, doc: dict[str, Any]) -> bool:
        return all(f.evaluate(doc) is True for f in self._filters)

    @staticmethod
    def _all(doc: dict[str, Any]) -> bool:  # _matches without filters
        return True

    async def take(self, n: int) -> list[dict[str, Any]]:
        if type(n) is not int and isinstance(n, float) and n.is_integer():
            n = int(n)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise EngineError("InvalidQuery", f"take() needs a non-negative integer, got {n!r}.")
        scan = await self._open()
        if scan is None:
            return []
        out: list[dict[str, Any]] = []
        if n == 0:
            return out
        matches = self._matches if self._filters else self._all
        # The first page asks for as many rows as are wanted (filters may need more pages). A
        # plain loop, not `async for`: an async generator left part-way costs a task to close.
        limit = min(n, MAX_PAGE)
        while (page := await scan.next_page(limit)) is not None:
            for key, doc in page:
                if matches(doc):
                    out.append(doc)
                    if len(out) >= n:
                        scan.last_key = key  # what was read ends here, not at the page's end
                        scan.finish(False)
                        return out
            limit = min(limit * 2, MAX_PAGE)
        scan.finish(True)
        return out

    async def collect(self) -> list[dict[str, Any]]:
        scan = await self._open()
        if scan is None:
            return []
        matches = self._matches
        out = []
        async for page in scan.pages():
            out.extend(doc for _, doc in page if matches(doc))
        scan.finish()
        return out

    async def first(self) -> dict[str, Any] | None:
        if self._filters:
            docs = await self.take(1)
            return docs[0] if docs else None
        scan = await self._open()  # take(1) without its loop: the first row of the range, if any
        if scan is None:
            return None
        page = await scan.next_page(1)
        if page is None:
            scan.finish(True)
            return None
        key, doc = page[0]
        scan.last_key = key  # what was read ends here
        scan.finish(False)
        return doc

    async def unique(self) -> dict[str, Any] | None:
        docs = await self.take(2)
        if len(docs) > 1:
            raise EngineError("UniqueQueryMatchedMultiple",
                              f'unique() on "{self._table}" matched more than one document: '
                              f"{docs[0]['_id']} and {docs[1]['_id']}.")
        return docs[0] if docs else None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        # A consumer may stop early (`break`); the transaction records an unfinished scan's
        # interval up to the last key it yielded when the function returns.
        scan = await self._open()
        if scan is None:
            return
        async for _, doc in scan:
            if self._matches(doc):
                yield doc
        scan.finish(True)

    async def paginate(self, opts: dict[str, Any]) -> dict[str, Any]:
        if self._search is not None:
            from .search.pagination import paginate_search

            return await paginate_search(self, opts)
        from .pagination import paginate

        return await paginate(self, opts)
