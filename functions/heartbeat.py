"""What an agent reads when it wakes: the spec's "Heartbeat Check Procedure" as one query.

Keys in the spec's priority order:
  workingMemory  WORKING.md ("On Wake: read WORKING.md for current task state")
  mentions       undelivered @mention notifications ("1. Direct @mentions (respond immediately)")
  inProgress     tasks assigned to the agent in "in_progress"
  assigned       tasks assigned to the agent in "assigned"
  inbox          unassigned "inbox" tasks, only for a lead (empty for everyone else)
`heartbeatOk` is true when there is nothing to do (mentions and the three task lists are empty).
"""

from engine import query, v

from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller, load_agent
from .agents import by_session_key
from .memory import memory_of
from .tasks import assigned_tasks

tasks_list = v.array(doc("tasks"))


@query(args={"agentId": v.optional(v.string()), "sessionKey": v.optional(v.string())}, returns=v.object({
    "agent": doc("agents"),
    "workingMemory": v.union(v.string(), v.null()),
    "mentions": v.array(doc("notifications")),
    "inProgress": tasks_list,
    "assigned": tasks_list,
    "inbox": tasks_list,
    "heartbeatOk": v.boolean(),
}))
async def check(ctx, args):
    caller = await current_caller(ctx)
    if ("agentId" in args) == ("sessionKey" in args):
        raise app_error("INVALID_ARGUMENTS", "Pass exactly one of `agentId` and `sessionKey`.")
    if "agentId" in args:
        agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    else:
        agent = await by_session_key(ctx, args["sessionKey"], caller.tenant_id)
        if agent is None:
            raise app_error("NOT_AN_AGENT", f"No agent with sessionKey {args['sessionKey']!r}.",
                            sessionKey=args["sessionKey"])
    tenant_id = caller.tenant_id

    # On Wake: 1. Read WORKING.md for current task state
    working = await memory_of(ctx, agent["_id"], "working")

    # Priority 1: direct @mentions
    mentions = await (ctx.db.query("notifications")
                      .with_index("by_recipient", lambda q: q.eq("recipientId", agent["_id"])
                                  .eq("delivered", False).eq("tenantId", tenant_id))
                      .filter(lambda q: q.eq(q.field("sourceType"), "mention"))
                      .collect())

    # Priority 2 and 3: assigned tasks in "in_progress", then in "assigned"
    in_progress = await assigned_tasks(ctx, tenant_id, agent["_id"], "in_progress")
    assigned = await assigned_tasks(ctx, tenant_id, agent["_id"], "assigned")

    # Priority 4: unassigned tasks in "inbox" (only if lead)
    inbox = []
    if agent["level"] == "lead":
        inbox = await (ctx.db.query("tasks")
                       .with_index("by_status", lambda q: q.eq("status", "inbox").eq("tenantId", tenant_id))
                       .filter(lambda q: q.eq(q.field("assigneeIds"), []))
                       .collect())

    return {
        "agent": agent,
        "workingMemory": working["content"] if working is not None else None,
        "mentions": mentions,
        "inProgress": in_progress,
        "assigned": assigned,
        "inbox": inbox,
        "heartbeatOk": not (mentions or in_progress or assigned or inbox),
    }
