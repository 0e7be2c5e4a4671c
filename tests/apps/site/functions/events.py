"""Events written by the webhook routes (through ctx.run_mutation) and read back over /api/query."""

from engine import internal_mutation, query, v


@internal_mutation(args={"source": v.string(), "text": v.string()})
async def record(ctx, args):
    return await ctx.db.insert("events", {"source": args["source"], "text": args["text"]})


@query(args={"source": v.string()})
async def by_source(ctx, args):
    return await (ctx.db.query("events")
                  .with_index("by_source", lambda q: q.eq("source", args["source"]))
                  .collect())
