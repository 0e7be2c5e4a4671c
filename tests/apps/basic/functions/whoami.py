"""Auth: `whoami` returns `ctx.auth.get_user_identity()` (None when anonymous); `whoamiAction` does the
same from an action, and `whoamiViaQuery` checks the identity reaches `ctx.run_query`."""

from engine import action, query


@query
async def whoami(ctx, args):
    return await ctx.auth.get_user_identity()


@action
async def whoamiAction(ctx, args):
    return await ctx.auth.get_user_identity()


@action
async def whoamiViaQuery(ctx, args):
    return await ctx.run_query("whoami:whoami", {})
