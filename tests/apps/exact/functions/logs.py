"""Functions that log, then fail: the client still gets their logLines."""

from engine import ConvexError, action, mutation, query


@query
async def logThenThrow(ctx, args):
    print("about to fail", 1)
    raise Exception("query failed after logging")


@mutation
async def logThenThrowMutation(ctx, args):
    print("mutation log line")
    await ctx.db.insert("events", {"tag": "never committed"})
    raise ConvexError("mutation failed after logging")


@action
async def logThenThrowAction(ctx, args):
    print("action log line")
    raise Exception("action failed after logging")
