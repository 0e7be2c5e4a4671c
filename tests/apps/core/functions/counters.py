from engine import mutation, query, v, internal_mutation


@mutation(args={"name": v.string()})
async def increment(ctx, args):
    doc = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", args["name"])).unique()
    if doc is None:
        await ctx.db.insert("counters", {"name": args["name"], "value": 1.0})
        return 1.0
    await ctx.db.patch(doc["_id"], {"value": doc["value"] + 1})
    return doc["value"] + 1


@query(args={"name": v.string()})
async def get(ctx, args):
    doc = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", args["name"])).unique()
    return None if doc is None else doc["value"]


@internal_mutation
async def reset(ctx, args):
    for doc in await ctx.db.query("counters").collect():
        await ctx.db.delete(doc["_id"])
