"""Items of a named list ordered by rank: insert/delete, the whole list, and a paginated view."""

import asyncio

from engine import mutation, pagination_opts_validator, query, v


def _in_list(args):
    return lambda q: q.eq("list", args["list"])


@mutation(args={"list": v.string(), "rank": v.float64()})
async def add(ctx, args):
    return await ctx.db.insert("items", {"list": args["list"], "rank": args["rank"]})


@mutation(args={"list": v.string(), "rank": v.float64(), "delayMs": v.float64()})
async def addSlowly(ctx, args):
    """An insert that reads nothing: two runs of it can only conflict on their idempotency key."""
    await asyncio.sleep(args["delayMs"] / 1000)
    return await ctx.db.insert("items", {"list": args["list"], "rank": args["rank"]})


@mutation(args={"list": v.string(), "ranks": v.array(v.float64())})
async def addMany(ctx, args):
    return [await ctx.db.insert("items", {"list": args["list"], "rank": r}) for r in args["ranks"]]


@mutation(args={"id": v.id("items")})
async def remove(ctx, args):
    await ctx.db.delete(args["id"])
    return None


@query(args={"list": v.string()})
async def all(ctx, args):
    return await ctx.db.query("items").with_index("by_list_rank", _in_list(args)).collect()


@query(args={"list": v.string(), "paginationOpts": pagination_opts_validator})
async def page(ctx, args):
    return await ctx.db.query("items").with_index("by_list_rank", _in_list(args)).paginate(args["paginationOpts"])
