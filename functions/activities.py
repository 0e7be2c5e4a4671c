"""The activity feed: newest first, paginated, optionally one event type."""

from engine import pagination_opts_validator, query, v

from ._docs import doc, paginated
from ._tenancy import current_caller

activity_type = v.union(*[v.literal(t) for t in (
    "task_created", "task_moved", "task_assigned", "task_completed", "comment",
    "document_created", "agent_started", "agent_completed", "message")])


@query(args={"paginationOpts": pagination_opts_validator, "type": v.optional(activity_type)},
       returns=paginated(doc("activities")))
async def list(ctx, args):
    caller = await current_caller(ctx)
    if "type" in args:
        feed = ctx.db.query("activities").with_index(
            "by_type", lambda q: q.eq("type", args["type"]).eq("tenantId", caller.tenant_id))
    else:
        feed = ctx.db.query("activities").with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id))
    return await feed.order("desc").paginate(args["paginationOpts"])
