"""Named float64 counters. `getTraced` prints how many times it has run in this process, so every
re-run produces different logLines and therefore reaches subscribers: a test can see re-runs."""

import asyncio

from engine import internal_query, mutation, query, v

_runs = {"n": 0}


async def _find(ctx, name):
    return await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()


@query(args={"name": v.string()})
async def get(ctx, args):
    row = await _find(ctx, args["name"])
    return None if row is None else row["value"]


@query(args={"name": v.string()})
async def getTraced(ctx, args):
    _runs["n"] += 1
    print("run", _runs["n"])
    row = await _find(ctx, args["name"])
    return None if row is None else row["value"]


@query(args={"names": v.array(v.string())})
async def getMany(ctx, args):
    return [None if (row := await _find(ctx, n)) is None else row["value"] for n in args["names"]]


@query
async def all(ctx, args):
    return {row["name"]: row["value"] async for row in ctx.db.query("counters")}


@mutation(args={"name": v.string(), "by": v.optional(v.float64()), "delayMs": v.optional(v.float64())})
async def increment(ctx, args):
    row = await _find(ctx, args["name"])
    if args.get("delayMs"):
        # Slow on purpose: keeps the mutation in flight while a test does something else.
        await asyncio.sleep(args["delayMs"] / 1000)
    by = args.get("by", 1.0)
    if row is None:
        await ctx.db.insert("counters", {"name": args["name"], "value": by})
        return by
    value = row["value"] + by
    await ctx.db.patch(row["_id"], {"value": value})
    return value


async def _set(ctx, name, value):
    row = await _find(ctx, name)
    if row is None:
        await ctx.db.insert("counters", {"name": name, "value": value})
    else:
        await ctx.db.patch(row["_id"], {"value": value})


@mutation(args={"name": v.string(), "value": v.float64()})
async def set(ctx, args):
    await _set(ctx, args["name"], args["value"])
    return None


@mutation(args={"name": v.string()})
async def remove(ctx, args):
    row = await _find(ctx, args["name"])
    if row is not None:
        await ctx.db.delete(row["_id"])
    return None


@internal_query(args={"name": v.string()})
async def getInternal(ctx, args):
    row = await _find(ctx, args["name"])
    return None if row is None else row["value"]


@mutation(args={"names": v.array(v.string()), "value": v.float64()})
async def setMany(ctx, args):
    """Sets several counters in one transaction (a snapshot shows all of them or none)."""
    for name in args["names"]:
        await _set(ctx, name, args["value"])
    return None
