"""Convex's customErrors.ts, translated: every way an error reaches a client."""

from engine import ConvexError, action, api, mutation, query


class FooError(ConvexError):
    """A subclass reports its own name, as `class FooError extends ConvexError { name = "FooError" }`."""


@query
async def queryThrowingConvexError(ctx, args):
    raise ConvexError("Boom boom bop")


@query
async def queryThrowingNormalError(ctx, args):
    raise Exception("Normal error")


@query
async def queryThrowingConvexErrorSubclass(ctx, args):
    raise FooError({"message": "Boom boom bop", "code": 123})


@mutation
async def mutationThrowingConvexError(ctx, args):
    raise ConvexError({"message": "Boom boom bop", "code": 123})


@action
async def actionThrowingConvexError(ctx, args):
    raise ConvexError("Boom boom bop")


@action
async def actionCallingQueryThrowingConvexError(ctx, args):
    return await ctx.run_query(api.customErrors.queryThrowingConvexError)


@action
async def actionCallingQueryThrowingConvexErrorSubclass(ctx, args):
    return await ctx.run_query(api.customErrors.queryThrowingConvexErrorSubclass)


@action
async def actionCallingMutationThrowingConvexError(ctx, args):
    return await ctx.run_mutation(api.customErrors.mutationThrowingConvexError)


@action
async def actionCallingActionThrowingConvexError(ctx, args):
    return await ctx.run_action(api.customErrors.actionThrowingConvexError)


@action
async def actionCallingQueryThrowingNormalError(ctx, args):
    return await ctx.run_query(api.customErrors.queryThrowingNormalError)


@action
async def actionCatchingNestedConvexError(ctx, args):
    """What the calling action can see of a nested ConvexError: its data and its message."""
    try:
        await ctx.run_mutation(api.customErrors.mutationThrowingConvexError)
    except ConvexError as e:
        return {"data": e.data, "message": str(e), "isConvexError": True}
    return None


@query
async def queryThrowingValues(ctx, args):
    """Every kind of value, as Convex's JSON.stringify prints it in the message."""
    raise ConvexError({"int": 1234567890123, "float": 1.5, "whole": 3.0, "big": 1e21, "tiny": 1e-7,
                       "nested": [None, True, "é\n\"q\""], "bytes": b"\x00\x01", "neg": -0.0})
