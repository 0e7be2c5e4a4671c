"""Functions that fail on purpose: ConvexError (object and string data) and plain exceptions, and
`maybe`, which fails only while the counter it reads is negative."""

from engine import ConvexError, action, mutation, query, v

BAD = {"code": "BAD", "n": 1}


@query
async def convexQuery(ctx, args):
    print("about to fail")
    raise ConvexError(BAD)


@query
async def convexString(ctx, args):
    raise ConvexError("just a string")


@query
async def plainQuery(ctx, args):
    raise Exception("plain query boom")


@mutation
async def convexMutation(ctx, args):
    raise ConvexError(BAD)


@mutation
async def plainMutation(ctx, args):
    raise Exception("plain mutation boom")


@action
async def convexAction(ctx, args):
    raise ConvexError(BAD)


@query(args={"name": v.string()})
async def maybe(ctx, args):
    row = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", args["name"])).unique()
    value = None if row is None else row["value"]
    if value is not None and value < 0:
        raise ConvexError({"negative": value})
    return value
