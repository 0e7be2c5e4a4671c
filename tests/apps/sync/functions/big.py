"""Large results: a Transition over 5 MB is chunked for npm clients only; `padded` makes every
update of a counter a big frame (to fill a socket that is not being read)."""

from engine import query, v


@query(args={"size": v.float64()})
async def blob(ctx, args):
    return "x" * int(args["size"])


@query(args={"name": v.string(), "size": v.float64()})
async def padded(ctx, args):
    """A counter's value with `size` bytes of padding: every change is a big Transition."""
    row = await ctx.db.query("counters").with_index("by_name", lambda q: q.eq("name", args["name"])).unique()
    return {"value": None if row is None else row["value"], "pad": "x" * int(args["size"])}
