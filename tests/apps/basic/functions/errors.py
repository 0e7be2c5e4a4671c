"""Functions that fail on purpose: ConvexError with object or string data, and a plain exception."""

from engine import ConvexError, action, mutation, query

BAD = {"code": "BAD", "n": 1}


@query
async def convexQuery(ctx, args):
    raise ConvexError(BAD)


@mutation
async def convexMutation(ctx, args):
    raise ConvexError(BAD)


@action
async def convexAction(ctx, args):
    raise ConvexError(BAD)


@query
async def convexString(ctx, args):
    raise ConvexError("just a string")


@query
async def plainQuery(ctx, args):
    raise Exception("plain query boom")


@mutation
async def plainMutation(ctx, args):
    raise Exception("plain mutation boom")
