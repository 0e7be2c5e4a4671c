"""Notifications of one recipient (an agent id or a user id): undelivered first, then the latest delivered.

Delivery is the push to the recipient (an agent's heartbeat, a webhook); reading is the human opening it.
"""

from engine import mutation, query, v

from ._clock import now_ms
from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller, load, resolve_actor

DEFAULT_DELIVERED_LIMIT = 50


@query(args={
    "recipientId": v.optional(v.string()),
    "recipientType": v.optional(v.union(v.literal("user"), v.literal("agent"))),
    "limit": v.optional(v.number()),
}, returns=v.array(doc("notifications")))
async def list(ctx, args):
    """Undelivered notifications (oldest first, all of them), then up to `limit` delivered ones
    (newest first). Without a recipient: the calling user's."""
    caller = await current_caller(ctx)
    recipient = await resolve_actor(ctx, caller, args.get("recipientId"), args.get("recipientType"))
    limit = args.get("limit", DEFAULT_DELIVERED_LIMIT)
    if not 0 <= limit <= 1000:
        raise app_error("INVALID_ARGUMENTS", f"limit must be between 0 and 1000, got {limit!r}.")

    def mine(delivered):
        return lambda q: q.eq("recipientId", recipient.id).eq("delivered", delivered).eq("tenantId", caller.tenant_id)

    undelivered = await ctx.db.query("notifications").with_index("by_recipient", mine(False)).collect()
    delivered = await (ctx.db.query("notifications").with_index("by_recipient", mine(True))
                       .order("desc").take(int(limit)))
    return undelivered + delivered


@mutation(args={"ids": v.array(v.string())}, returns=v.null())
async def markDelivered(ctx, args):
    caller = await current_caller(ctx)
    notifications = [await load(ctx, "notifications", i, caller.tenant_id) for i in args["ids"]]
    for notification in notifications:
        if not notification["delivered"]:
            await ctx.db.patch(notification["_id"], {"delivered": True})
    return None


@mutation(args={"id": v.string()}, returns=v.null())
async def markRead(ctx, args):
    """Reading implies delivery."""
    caller = await current_caller(ctx)
    notification = await load(ctx, "notifications", args["id"], caller.tenant_id)
    if "readAt" not in notification:
        await ctx.db.patch(notification["_id"], {"delivered": True, "readAt": now_ms()})
    return None
