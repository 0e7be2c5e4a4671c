"""An ordered log per stream. `append` can be slow (it sleeps after reading the stream's length and
before writing), so two mutations running concurrently would both read the same length."""

import asyncio

from engine import mutation, query, v


@mutation(args={"stream": v.string(), "tag": v.string(), "delayMs": v.optional(v.float64())})
async def append(ctx, args):
    existing = await ctx.db.query("events").with_index("by_stream_seq", lambda q: q.eq("stream", args["stream"])).collect()
    if args.get("delayMs"):
        await asyncio.sleep(args["delayMs"] / 1000)
    seq = float(len(existing))
    await ctx.db.insert("events", {"stream": args["stream"], "tag": args["tag"], "seq": seq})
    return seq


@query(args={"stream": v.string()})
async def list(ctx, args):
    rows = await ctx.db.query("events").with_index("by_stream_seq", lambda q: q.eq("stream", args["stream"])).collect()
    return [row["tag"] for row in rows]
