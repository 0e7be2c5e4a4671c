"""Channels: text and voice rooms of a tenant. Names are unique within a tenant."""

from engine import mutation, query, v

from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller, load


@query(args={"type": v.optional(v.union(v.literal("text"), v.literal("voice")))},
       returns=v.array(doc("channels")))
async def list(ctx, args):
    caller = await current_caller(ctx)
    channels = await (ctx.db.query("channels")
                      .with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id))
                      .collect())
    if "type" in args:
        channels = [c for c in channels if c["type"] == args["type"]]
    return sorted(channels, key=lambda c: c["name"])


@query(args={"id": v.string()}, returns=doc("channels"))
async def get(ctx, args):
    caller = await current_caller(ctx)
    return await load(ctx, "channels", args["id"], caller.tenant_id)


@mutation(args={
    "name": v.string(),
    "type": v.union(v.literal("text"), v.literal("voice")),
    "description": v.optional(v.string()),
}, returns=v.id("channels"))
async def create(ctx, args):
    caller = await current_caller(ctx)
    name = args["name"].strip()
    if not name:
        raise app_error("EMPTY_CONTENT", "A channel needs a name.")
    existing = await (ctx.db.query("channels")
                      .with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id))
                      .filter(lambda q: q.eq(q.field("name"), name))
                      .first())
    if existing is not None:
        raise app_error("DUPLICATE", f"A channel named {name!r} exists already.", name=name)
    channel = {"name": name, "type": args["type"], "tenantId": caller.tenant_id}
    if "description" in args:
        channel["description"] = args["description"]
    return await ctx.db.insert("channels", channel)
