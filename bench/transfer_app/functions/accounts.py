"""Seeding and reading accounts (keynote-2's `convex/accounts.ts` and `seed.ts`, plus a range read
for the conservation check)."""

from engine import internal_mutation, query, v


@query(args={"id": v.number()})
async def get_account(ctx, args):
    return await ctx.db.query("accounts").with_index("by_account_id", lambda q: q.eq("id", args["id"])).first()


@query(args={"start": v.number(), "count": v.number()})
async def balances(ctx, args):
    """[id, balance] of accounts start .. start+count-1, in id order."""
    rows = await (ctx.db.query("accounts")
                  .with_index("by_account_id", lambda q: q.gte("id", args["start"]).lt("id", args["start"] + args["count"]))
                  .collect())
    return [[r["id"], r["balance"]] for r in rows]


@internal_mutation(args={"start": v.number(), "count": v.number(), "balance": v.number()})
async def seed(ctx, args):
    for i in range(int(args["start"]), int(args["start"] + args["count"])):
        await ctx.db.insert("accounts", {"id": float(i), "balance": args["balance"]})
    return None
