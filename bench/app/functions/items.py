"""Queries and mutations the subscription benchmark subscribes to and writes with."""

from engine import mutation, query, v

_doc = v.object({"owner": v.string(), "rank": v.float64(), "tag": v.string()})


@query(args={"owner": v.string()})
async def byOwner(ctx, args):
    """Every item of one owner (an index range on by_owner)."""
    return await ctx.db.query("items").with_index("by_owner", lambda q: q.eq("owner", args["owner"])).collect()


@query(args={"owner": v.string(), "n": v.float64()})
async def topByOwner(ctx, args):
    """The first n items of one owner by rank (a range cut short where take(n) stopped)."""
    return await (ctx.db.query("items").with_index("by_owner_rank", lambda q: q.eq("owner", args["owner"]))
                  .take(int(args["n"])))


@query(args={"id": v.id("items")})
async def get(ctx, args):
    """One item by id (a point on by_id)."""
    return await ctx.db.get(args["id"])


@mutation(args={"docs": v.array(_doc)})
async def fill(ctx, args):
    return [await ctx.db.insert("items", d) for d in args["docs"]]


@mutation(args={"owner": v.string(), "rank": v.float64(), "tag": v.string()})
async def add(ctx, args):
    return await ctx.db.insert("items", dict(args))


@mutation(args={"id": v.id("items"), "tag": v.string()})
async def setTag(ctx, args):
    await ctx.db.patch(args["id"], {"tag": args["tag"]})
    return None
