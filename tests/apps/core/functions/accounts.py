"""Bank accounts with int64 balances: the serializability test's workload.

`pauses` inserts `await asyncio.sleep(0)` between the reads and the writes of a transfer; that only
hands the event loop to other mutations (an interleaving), it never waits for anything.
"""

import asyncio

from engine import mutation, query, v


@mutation(args={"owner": v.string(), "balance": v.int64()})
async def open(ctx, args):
    return await ctx.db.insert("accounts", dict(args))


@mutation(args={"src": v.id("accounts"), "dst": v.id("accounts"), "amount": v.int64(),
                "pauses": v.optional(v.int64())})
async def transfer(ctx, args):
    pauses = args.get("pauses", 0)
    src = await ctx.db.get(args["src"])
    for _ in range(pauses):
        await asyncio.sleep(0)
    dst = await ctx.db.get(args["dst"])
    if src["balance"] < args["amount"]:
        return False
    await ctx.db.patch(src["_id"], {"balance": src["balance"] - args["amount"]})
    for _ in range(pauses):
        await asyncio.sleep(0)
    await ctx.db.patch(dst["_id"], {"balance": dst["balance"] + args["amount"]})
    return True


@query
async def total(ctx, args):
    return sum(a["balance"] for a in await ctx.db.query("accounts").collect())


@query
async def balances(ctx, args):
    """{owner: balance} for every account."""
    return {a["owner"]: a["balance"] for a in await ctx.db.query("accounts").collect()}
