"""Auth: `whoami` returns the caller's identity (None when anonymous); `greeting` never reads auth."""

from engine import action, query


@query
async def whoami(ctx, args):
    return await ctx.auth.get_user_identity()


@query
async def greeting(ctx, args):
    return "hello"


@action
async def whoamiAction(ctx, args):
    return await ctx.auth.get_user_identity()
