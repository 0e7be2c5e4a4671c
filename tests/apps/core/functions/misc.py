"""Small functions that exercise one core behaviour each (tests/test_core_*.py)."""

from engine import internal_query, mutation, query, v


@query(args={"name": v.string()})
async def hello(ctx, args):
    print("hello", args["name"], 2)
    print({"a": 1.5})
    return "ok"


@query(args={"table": v.string(), "id": v.string()})
async def normalize(ctx, args):
    return ctx.db.normalize_id(args["table"], args["id"])


@query(args={"id": v.string()})
async def get(ctx, args):
    return await ctx.db.get(args["id"])


@internal_query
async def secret(ctx, args):
    return "internal"


@mutation
async def ryow(ctx, args):
    """Reads inside a mutation see the mutation's own earlier writes, through get and index scans."""
    seen = {}
    a = await ctx.db.insert("items", {"group": "ryow", "rank": 1.0})
    b = await ctx.db.insert("items", {"group": "ryow", "rank": 2.0})
    seen["get_after_insert"] = (await ctx.db.get(a))["rank"]
    by_rank = ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", "ryow"))
    seen["scan_after_insert"] = [d["rank"] for d in await by_rank.collect()]
    await ctx.db.patch(a, {"rank": 3.0})
    seen["get_after_patch"] = (await ctx.db.get(a))["rank"]
    by_rank = ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", "ryow"))
    seen["scan_after_patch"] = [d["rank"] for d in await by_rank.collect()]
    await ctx.db.replace(b, {"group": "other", "rank": 9.0})
    by_group = ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", "ryow"))
    seen["scan_after_replace"] = [d["rank"] for d in await by_group.collect()]
    await ctx.db.delete(a)
    seen["get_after_delete"] = await ctx.db.get(a)
    by_group = ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", "ryow"))
    seen["scan_after_delete"] = [d["rank"] for d in await by_group.collect()]
    seen["desc_full_scan"] = [d["rank"] async for d in ctx.db.query("items").order("desc")]
    return seen


@mutation(args={"group": v.string()})
async def insertThenDelete(ctx, args):
    doc_id = await ctx.db.insert("items", {"group": args["group"], "rank": 0.0})
    await ctx.db.delete(doc_id)
    return doc_id


@mutation(args={"id": v.id("items")})
async def patchThenFail(ctx, args):
    await ctx.db.patch(args["id"], {"rank": -1.0})
    await ctx.db.insert("items", {"group": "ghost", "rank": 0.0})
    raise RuntimeError("boom after writes")
