"""Pieces of `transfer:transfer`, for `python -m bench.transfer_inprocess --parts` (where the CPU
of a transfer goes): its two indexed reads alone, and one read with one patch and the commit."""

from engine import mutation, v


@mutation(args={"amount": v.number(), "from_id": v.number(), "to_id": v.number()})
async def reads(ctx, args):
    """The two `by_account_id` lookups of a transfer, nothing written (no commit)."""
    for account in (args["from_id"], args["to_id"]):
        await ctx.db.query("accounts").with_index("by_account_id", lambda q, a=account: q.eq("id", a)).first()
    return None


@mutation(args={"amount": v.number(), "from_id": v.number(), "to_id": v.number()})
async def one_patch(ctx, args):
    """One lookup and one patch: a commit of one document."""
    account = await ctx.db.query("accounts").with_index("by_account_id",
                                                        lambda q: q.eq("id", args["from_id"])).first()
    if account is not None:
        await ctx.db.patch(account["_id"], {"balance": account["balance"] - args["amount"]})
    return None
