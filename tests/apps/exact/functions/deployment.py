"""What a function sees of its own deployment."""

from engine import action, env, query


@query
async def urls(ctx, args):
    return {"cloud": env.get("CONVEX_CLOUD_URL"), "site": env.get("CONVEX_SITE_URL")}


@action
async def urlsInAction(ctx, args):
    return {"cloud": env.get("CONVEX_CLOUD_URL"), "site": env.get("CONVEX_SITE_URL")}


@query
async def whoami(ctx, args):
    return await ctx.auth.get_user_identity()
