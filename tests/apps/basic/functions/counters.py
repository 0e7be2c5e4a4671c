"""Named float64 counters: a public query and mutation, and an internal mutation only an admin may call."""

from engine import internal_mutation, mutation, query, v


async def _find(ctx, name):
    return await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", name)).unique()


@query(args={"name": v.string()})
async def get(ctx, args):
    row = await _find(ctx, args["name"])
    return None if row is None else row["value"]


@mutation(args={"name": v.string(), "by": v.optional(v.float64())})
async def increment(ctx, args):
    by = args.get("by", 1.0)
    row = await _find(ctx, args["name"])
    if row is None:
        await ctx.db.insert("counters", {"name": args["name"], "value": by})
        return by
    value = row["value"] + by
    await ctx.db.patch(row["_id"], {"value": value})
    return value


@internal_mutation(args={"name": v.string()})
async def reset(ctx, args):
    row = await _find(ctx, args["name"])
    if row is not None:
        await ctx.db.patch(row["_id"], {"value": 0.0})
    return None
