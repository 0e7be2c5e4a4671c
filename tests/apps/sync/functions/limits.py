"""Functions that misbehave on purpose: spinning on the CPU, awaiting forever (execution limits)."""

import asyncio

from engine import action, mutation, query, v


@query
async def spin(ctx, args):
    while True:
        pass


@mutation(args={"name": v.string()})
async def writeThenSpin(ctx, args):
    await ctx.db.insert("counters", {"name": args["name"], "value": 1.0})
    while True:
        pass


@action
async def forever(ctx, args):
    await asyncio.Event().wait()


@action
async def spinAction(ctx, args):
    while True:
        pass


@mutation(args={"name": v.string()})
async def incrementYielding(ctx, args):
    """Read, hand the loop to others, then write: concurrent runs really conflict."""
    row = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", args["name"])).unique()
    await asyncio.sleep(0)
    if row is None:
        await ctx.db.insert("counters", {"name": args["name"], "value": 1.0})
        return 1.0
    await ctx.db.patch(row["_id"], {"value": row["value"] + 1.0})
    return row["value"] + 1.0
