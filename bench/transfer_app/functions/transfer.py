"""`transfer:transfer`, translated line for line from keynote-2's `convex/transfer.ts`."""

from engine import mutation, v


@mutation(args={"amount": v.number(), "from_id": v.number(), "to_id": v.number()})
async def transfer(ctx, args):
    amount, from_id, to_id = args["amount"], args["from_id"], args["to_id"]
    if from_id == to_id or amount <= 0:
        return None
    from_ = await ctx.db.query("accounts").with_index("by_account_id", lambda q: q.eq("id", from_id)).first()
    to = await ctx.db.query("accounts").with_index("by_account_id", lambda q: q.eq("id", to_id)).first()
    if from_ is None or to is None:
        return None
    from_balance = from_.get("balance", 0)
    to_balance = to.get("balance", 0)
    if from_balance < amount:  # prevent negative balances
        return None
    await ctx.db.patch(from_["_id"], {"balance": from_balance - amount})
    await ctx.db.patch(to["_id"], {"balance": to_balance + amount})
    return None
