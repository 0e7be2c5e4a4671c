"""ctx.db.query: index ranges, order, the filter language, terminal reads, and the read set each
query records (the intervals OCC and subscriptions compare against written keys)."""

from __future__ import annotations

from typing import Any

import pytest

from engine import query
from engine.deployment import Deployment
from engine.errors import EngineError
from engine.index_keys import encode_value
from engine.reads import successor
from engine.registration import RegisteredFunction
from engine.runner import QueryRun

from test_core_support import NOBODY, dep, db_path, ok, read, read_error  # noqa: F401  (fixtures)

A = list(range(10))  # ranks of group "a"


@pytest.fixture
async def items(dep: Deployment) -> Deployment:
    await ok(dep, "items:fill", {"group": "a", "start": 0.0, "count": 10.0})
    await ok(dep, "items:fill", {"group": "b", "start": 0.0, "count": 3.0})
    await ok(dep, "items:add", {"group": "c", "rank": 1.0, "tags": ["x", "y"]})
    return dep


def ranks(docs: list[dict[str, Any]]) -> list[float]:
    return [d["rank"] for d in docs]


def by_rank(db, range_fn):
    return db.query("items").with_index("by_group_rank", range_fn)


# -- index ranges --------------------------------------------------------------------------------

@pytest.mark.parametrize(("range_fn", "expected"), [
    (lambda q: q.eq("group", "a"), A),
    (lambda q: q.eq("group", "a").gt("rank", 2.0), A[3:]),
    (lambda q: q.eq("group", "a").gte("rank", 2.0), A[2:]),
    (lambda q: q.eq("group", "a").lt("rank", 2.0), A[:2]),
    (lambda q: q.eq("group", "a").lte("rank", 2.0), A[:3]),
    (lambda q: q.eq("group", "a").gt("rank", 2.0).lt("rank", 5.0), [3, 4]),
    (lambda q: q.eq("group", "a").gte("rank", 2.0).lte("rank", 5.0), [2, 3, 4, 5]),
    (lambda q: q.eq("group", "a").gt("rank", 2.5).lt("rank", 3.5), [3]),
    (lambda q: q.eq("group", "a").gt("rank", 5.0).lt("rank", 5.0), []),
    (lambda q: q.eq("group", "a").eq("rank", 7.0), [7]),
    (lambda q: q.eq("group", "zzz"), []),
    (lambda q: q.gte("group", "b"), [0, 1, 2, 1]),  # groups b then c
    (lambda q: q.lt("group", "b"), A),
])
async def test_with_index_ranges(items: Deployment, range_fn, expected: list[int]) -> None:
    assert ranks(await read(items, lambda db: by_rank(db, range_fn).collect())) == [float(x) for x in expected]
    desc = await read(items, lambda db: by_rank(db, range_fn).order("desc").collect())
    assert ranks(desc) == [float(x) for x in reversed(expected)]


async def test_default_index_is_creation_order(items: Deployment) -> None:
    docs = await read(items, lambda db: db.query("items").collect())
    assert [d["group"] for d in docs] == ["a"] * 10 + ["b"] * 3 + ["c"]
    times = [d["_creationTime"] for d in docs]
    assert times == sorted(times) and len(set(times)) == len(times)
    desc = await read(items, lambda db: db.query("items").order("desc").collect())
    assert desc == docs[::-1]


@pytest.mark.parametrize(("range_fn", "words"), [
    (lambda q: q.eq("rank", 1.0), 'expected a condition on "group"'),
    (lambda q: q.gt("group", "a").eq("rank", 1.0), "eq() must come before"),
    (lambda q: q.gt("group", "a").gt("rank", 1.0), 'after a range on "group"'),
    (lambda q: q.gt("group", "a").gte("group", "b"), "two lower bounds"),
    (lambda q: q.eq("group", "a").eq("rank", 1.0).eq("_creationTime", 1.0).eq("_id", "x").eq("more", 1),
     "(no more fields)"),
    (lambda q: None, None),  # returning None is accepted (the builder was used in place)
    (lambda q: "nope", "must return the builder"),
])
async def test_invalid_index_ranges_name_the_problem(items: Deployment, range_fn, words: str | None) -> None:
    if words is None:
        assert len(await read(items, lambda db: by_rank(db, range_fn).collect())) == 14
        return
    error = await read_error(items, lambda db: by_rank(db, range_fn).collect())
    assert error.code == "InvalidIndexRange" and words in error.message, error.message


async def test_unknown_index_and_bad_builders(items: Deployment) -> None:
    error = await read_error(items, lambda db: db.query("items").with_index("by_nothing").collect())
    assert error.code == "IndexNotFound" and '"items.by_nothing"' in error.message
    with pytest.raises(EngineError, match="asc.*desc"):
        await read(items, lambda db: db.query("items").order("up").collect())
    with pytest.raises(EngineError, match="once"):
        await read(items, lambda db: db.query("items").order("asc").order("desc").collect())


# -- filters -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("predicate", "expected"), [
    (lambda q: q.eq(q.field("rank"), 3.0), [3]),
    (lambda q: q.neq(q.field("rank"), 3.0), [0, 1, 2, 4, 5, 6, 7, 8, 9]),
    (lambda q: q.lt(q.field("rank"), 2.0), [0, 1]),
    (lambda q: q.lte(q.field("rank"), 2.0), [0, 1, 2]),
    (lambda q: q.gt(q.field("rank"), 7.0), [8, 9]),
    (lambda q: q.gte(q.field("rank"), 7.0), [7, 8, 9]),
    (lambda q: q.and_(q.gt(q.field("rank"), 2.0), q.lt(q.field("rank"), 5.0)), [3, 4]),
    (lambda q: q.or_(q.eq(q.field("rank"), 1.0), q.eq(q.field("rank"), 8.0)), [1, 8]),
    (lambda q: q.not_(q.lt(q.field("rank"), 8.0)), [8, 9]),
    (lambda q: q.and_(), A),  # empty conjunction is true
    (lambda q: q.or_(), []),
    (lambda q: q.eq(q.mod(q.field("rank"), 3.0), 0.0), [0, 3, 6, 9]),
    (lambda q: q.gt(q.add(q.field("rank"), 1.0), 8.0), [8, 9]),
    (lambda q: q.lt(q.sub(q.field("rank"), 1.0), 0.0), [0]),
    (lambda q: q.eq(q.mul(q.field("rank"), 2.0), 8.0), [4]),
    (lambda q: q.eq(q.div(q.field("rank"), 2.0), 1.5), [3]),
    (lambda q: q.eq(q.neg(q.field("rank")), -5.0), [5]),
    (lambda q: q.eq(q.field("tags"), None), []),  # a missing field is undefined, not null
    (lambda q: q.lt(q.field("rank"), "a string"), A),  # cross-type order: numbers < strings
    (lambda q: q.eq(q.field("group"), "a"), A),
    (lambda q: q.field("rank"), []),  # a non-boolean result does not match
    (lambda q: True, A),
])
async def test_filter_language(items: Deployment, predicate, expected: list[int]) -> None:
    docs = await read(items, lambda db: by_rank(db, lambda q: q.eq("group", "a")).filter(predicate).collect())
    assert ranks(docs) == [float(x) for x in expected]


async def test_filters_chain_and_see_nested_fields(items: Deployment) -> None:
    docs = await read(items, lambda db: db.query("items")
                      .filter(lambda q: q.eq(q.field("group"), "a"))
                      .filter(lambda q: q.gte(q.field("rank"), 8.0)).collect())
    assert ranks(docs) == [8.0, 9.0]
    tagged = await read(items, lambda db: db.query("items").filter(lambda q: q.eq(q.field("tags"), ["x", "y"])).collect())
    assert [d["group"] for d in tagged] == ["c"]


async def test_arithmetic_on_mixed_types_is_an_error(items: Deployment) -> None:
    error = await read_error(items, lambda db: db.query("items").filter(lambda q: q.eq(q.add(q.field("rank"), 1), 2.0)).collect())
    assert error.code == "InvalidFilter" and "same type" in error.message


# -- terminal reads ------------------------------------------------------------------------------

async def test_take_first_unique_collect(items: Deployment) -> None:
    group_a = lambda db: by_rank(db, lambda q: q.eq("group", "a"))  # noqa: E731
    assert ranks(await read(items, lambda db: group_a(db).take(3))) == [0.0, 1.0, 2.0]
    assert ranks(await read(items, lambda db: group_a(db).take(3.0))) == [0.0, 1.0, 2.0]
    assert await read(items, lambda db: group_a(db).take(0)) == []
    assert len(await read(items, lambda db: group_a(db).take(100))) == 10
    assert (await read(items, lambda db: group_a(db).order("desc").first()))["rank"] == 9.0
    assert await read(items, lambda db: by_rank(db, lambda q: q.eq("group", "none")).first()) is None
    assert (await read(items, lambda db: by_rank(db, lambda q: q.eq("group", "c")).unique()))["tags"] == ["x", "y"]
    assert await read(items, lambda db: by_rank(db, lambda q: q.eq("group", "none")).unique()) is None
    error = await read_error(items, lambda db: group_a(db).unique())
    assert error.code == "UniqueQueryMatchedMultiple" and '"items"' in error.message
    for bad in (-1, 1.5, True, "3"):
        error = await read_error(items, lambda db: group_a(db).take(bad))
        assert error.code == "InvalidQuery"


async def test_async_for_with_break(items: Deployment) -> None:
    async def first_over_four(db):
        seen = []
        async for doc in by_rank(db, lambda q: q.eq("group", "a")):
            seen.append(doc["rank"])
            if doc["rank"] > 4:
                break
        return seen

    assert await read(items, first_over_four) == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]


# -- read sets -----------------------------------------------------------------------------------

def adhoc(handler) -> RegisteredFunction:
    """A query function defined next to its assertions (the runner only needs a registered function)."""
    fn = query(handler)
    fn.path = f"adhoc:{handler.__name__}"
    return fn


async def run(dep: Deployment, handler, args: dict[str, Any] | None = None) -> QueryRun:
    result, _ = await dep.runner.run_query(adhoc(handler), args or {}, NOBODY)
    return result


async def test_get_reads_a_point_on_by_id(items: Deployment) -> None:
    doc_id = (await read(items, lambda db: db.query("items").first()))["_id"]

    async def get_one(ctx, args):
        return await ctx.db.get(args["id"])

    result = await run(items, get_one, {"id": doc_id})
    by_id = items.catalog.table("items").by_id.id
    key = encode_value(doc_id)
    assert list(result.reads) == [(by_id, key, successor(key))]
    assert result.value["_id"] == doc_id


async def test_collect_reads_its_whole_range(items: Deployment) -> None:
    async def all_of_a(ctx, args):
        return await ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", "a")).collect()

    result = await run(items, all_of_a)
    ix = items.catalog.table("items").indexes["by_group_rank"]
    prefix = encode_value("a")
    assert list(result.reads) == [(ix.id, prefix, prefix + b"\xff")]


async def test_take_stops_early_and_the_interval_ends_at_the_last_key(items: Deployment) -> None:
    async def three_of_a(ctx, args):
        q = ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", "a"))
        return await (q.order(args["order"]).take(3))

    ix = items.catalog.table("items").indexes["by_group_rank"]
    prefix = encode_value("a")

    asc = await run(items, three_of_a, {"order": "asc"})
    assert ranks(asc.value) == [0.0, 1.0, 2.0]
    assert list(asc.reads) == [(ix.id, prefix, successor(ix.key(asc.value[-1])))]

    desc = await run(items, three_of_a, {"order": "desc"})
    assert ranks(desc.value) == [9.0, 8.0, 7.0]
    assert list(desc.reads) == [(ix.id, ix.key(desc.value[-1]), prefix + b"\xff")]

    # A write past where the scan stopped does not touch the read set; one inside it does.
    await ok(items, "items:add", {"group": "a", "rank": 50.0})
    await ok(items, "items:add", {"group": "a", "rank": 0.5})
    written = list(items.committer.write_log.since(asc.ts))
    assert [asc.reads.overlaps(keys) for _, keys in written] == [False, True]
    assert [desc.reads.overlaps(keys) for _, keys in written] == [True, False]


async def test_filtered_take_covers_every_row_it_walked(items: Deployment) -> None:
    async def two_even(ctx, args):
        q = ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", "a"))
        return await q.filter(lambda f: f.eq(f.mod(f.field("rank"), 2.0), 0.0)).filter(
            lambda f: f.gt(f.field("rank"), 0.0)).take(2)

    result = await run(items, two_even)
    assert ranks(result.value) == [2.0, 4.0]
    ix = items.catalog.table("items").indexes["by_group_rank"]
    assert list(result.reads) == [(ix.id, encode_value("a"), successor(ix.key(result.value[-1])))]


async def test_async_for_break_records_up_to_the_last_yielded_key(items: Deployment) -> None:
    async def until_three(ctx, args):
        seen = []
        async for doc in ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", "a")):
            seen.append(doc)
            if doc["rank"] >= 3:
                break
        return seen

    result = await run(items, until_three)
    ix = items.catalog.table("items").indexes["by_group_rank"]
    assert ranks(result.value) == [0.0, 1.0, 2.0, 3.0]
    assert list(result.reads) == [(ix.id, encode_value("a"), successor(ix.key(result.value[-1])))]


async def test_an_empty_range_still_reads_the_range(items: Deployment) -> None:
    async def none_in_z(ctx, args):
        return await ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", "z")).first()

    result = await run(items, none_in_z)
    ix = items.catalog.table("items").indexes["by_group"]
    assert result.value is None
    assert list(result.reads) == [(ix.id, encode_value("z"), encode_value("z") + b"\xff")]


@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize("group", ["a", "c", "z"])
async def test_first_reads_what_take_one_reads(items: Deployment, order: str, group: str) -> None:
    """first() has a path of its own (no take() loop): the same document and the same read set."""
    async def first_of(ctx, args):
        q = ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", args["group"]))
        return await q.order(args["order"]).first()

    async def take_one_of(ctx, args):
        q = ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", args["group"]))
        return (await q.order(args["order"]).take(1) or [None])[0]

    first = await run(items, first_of, {"group": group, "order": order})
    take = await run(items, take_one_of, {"group": group, "order": order})
    assert first.value == take.value
    assert list(first.reads) == list(take.reads) != []


async def test_first_sees_the_transactions_own_writes(items: Deployment) -> None:
    """Inside a mutation, first() merges what the transaction wrote before it: an insert that sorts
    first, a patch that moves a document out of the range, a delete."""
    from engine.database import DatabaseWriter
    from engine.transaction import Transaction

    txn = Transaction(items.catalog, await items.persistence.snapshot(), writable=True)
    try:
        db = DatabaseWriter(txn)
        group_a = lambda: by_rank(db, lambda q: q.eq("group", "a"))  # noqa: E731
        zero = await group_a().first()
        assert zero["rank"] == 0.0
        new_id = await db.insert("items", {"group": "a", "rank": -1.0})
        assert (await group_a().first())["_id"] == new_id
        await db.patch(new_id, {"group": "b"})
        assert (await group_a().first())["_id"] == zero["_id"]
        await db.delete(zero["_id"])
        assert (await group_a().first())["rank"] == 1.0
        assert (await group_a().order("desc").first())["rank"] == 9.0
    finally:
        txn.close()
