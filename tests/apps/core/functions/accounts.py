from engine import mutation, query, v


@mutation(args={"owner": v.string(), "balance": v.int64()})
async def open(ctx, args):
    return await ctx.db.insert("accounts", dict(args))


@mutation(args={"src": v.id("accounts"), "dst": v.id("accounts"), "amount": v.int64()})
async def transfer(ctx, args):
    src = await ctx.db.get(args["src"])
    dst = await ctx.db.get(args["dst"])
    if src["balance"] < args["amount"]:
        return False
    await ctx.db.patch(src["_id"], {"balance": src["balance"] - args["amount"]})
    await ctx.db.patch(dst["_id"], {"balance": dst["balance"] + args["amount"]})
    return True


@query
async def total(ctx, args):
    return sum(a["balance"] for a in await ctx.db.query("accounts").collect())
