from engine import mutation, v


@mutation(args={"count": v.number(), "body": v.string(), "channel": v.optional(v.string())})
async def fill(ctx, args):
    for i in range(int(args["count"])):
        await ctx.db.insert("messages", {"body": args["body"], "channel": args.get("channel", "general"),
                                         "n": float(i)})
