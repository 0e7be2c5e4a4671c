"""Actions: one that commits through a mutation, one that only reads, one that echoes."""

from engine import action, v


@action(args={"name": v.string()})
async def incrementTwice(ctx, args):
    await ctx.run_mutation("counters:increment", {"name": args["name"]})
    return await ctx.run_mutation("counters:increment", {"name": args["name"]})


@action(args={"name": v.string()})
async def read(ctx, args):
    return await ctx.run_query("counters:get", {"name": args["name"]})


@action
async def echo(ctx, args):
    print("echo", len(args))
    return args
