"""The squad: list, get (by id or sessionKey), create, update, set status, report a heartbeat.

`lastActiveAt` is kept by every write an agent makes (`_feed.touch_agent`) and by `reportHeartbeat`
(the spec's "If no work: report HEARTBEAT_OK, update lastActiveAt").
"""

from engine import UNDEFINED, mutation, query, v

from ._clock import now_ms
from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller, load, load_agent

agent_status = v.union(v.literal("active"), v.literal("idle"), v.literal("blocked"))
agent_level = v.union(v.literal("lead"), v.literal("specialist"), v.literal("intern"))


async def by_session_key(ctx, session_key: str, tenant_id: str):
    return await (ctx.db.query("agents")
                  .with_index("by_session", lambda q: q.eq("sessionKey", session_key).eq("tenantId", tenant_id))
                  .first())


@query(args={}, returns=v.array(doc("agents")))
async def list(ctx, args):
    caller = await current_caller(ctx)
    return await (ctx.db.query("agents")
                  .with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id))
                  .collect())


@query(args={"id": v.optional(v.string()), "sessionKey": v.optional(v.string())}, returns=doc("agents"))
async def get(ctx, args):
    caller = await current_caller(ctx)
    if ("id" in args) == ("sessionKey" in args):
        raise app_error("INVALID_ARGUMENTS", "Pass exactly one of `id` and `sessionKey`.")
    if "id" in args:
        return await load(ctx, "agents", args["id"], caller.tenant_id)
    agent = await by_session_key(ctx, args["sessionKey"], caller.tenant_id)
    if agent is None:
        raise app_error("NOT_FOUND", f"No agent with sessionKey {args['sessionKey']!r}.",
                        sessionKey=args["sessionKey"])
    return agent


@mutation(args={
    "name": v.string(),
    "role": v.string(),
    "avatar": v.string(),
    "level": agent_level,
    "sessionKey": v.string(),
    "personality": v.optional(v.string()),
    "status": v.optional(agent_status),
}, returns=v.id("agents"))
async def create(ctx, args):
    caller = await current_caller(ctx)
    if not args["name"].strip():
        raise app_error("EMPTY_CONTENT", "An agent needs a name.")
    if await by_session_key(ctx, args["sessionKey"], caller.tenant_id) is not None:
        raise app_error("DUPLICATE", f"An agent with sessionKey {args['sessionKey']!r} exists already.",
                        sessionKey=args["sessionKey"])
    return await ctx.db.insert("agents", {
        "name": args["name"],
        "role": args["role"],
        "avatar": args["avatar"],
        "status": args.get("status", "idle"),
        "level": args["level"],
        "sessionKey": args["sessionKey"],
        **({"personality": args["personality"]} if "personality" in args else {}),
        "tenantId": caller.tenant_id,
    })


@mutation(args={
    "id": v.string(),
    "name": v.optional(v.string()),
    "role": v.optional(v.string()),
    "avatar": v.optional(v.string()),
    "level": v.optional(agent_level),
    "personality": v.optional(v.string()),
}, returns=v.null())
async def update(ctx, args):
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["id"], caller.tenant_id)
    fields = {k: args[k] for k in ("name", "role", "avatar", "level", "personality") if k in args}
    if "name" in fields and not fields["name"].strip():
        raise app_error("EMPTY_CONTENT", "An agent needs a name.")
    if fields:
        await ctx.db.patch(agent["_id"], fields)
    return None


@mutation(args={
    "id": v.string(),
    "status": agent_status,
    "currentTaskId": v.optional(v.union(v.string(), v.null())),
}, returns=v.null())
async def setStatus(ctx, args):
    """Set status (and optionally the task being worked on; null clears it)."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["id"], caller.tenant_id)
    fields = {"status": args["status"], "lastActiveAt": now_ms()}
    if "currentTaskId" in args:
        task_id = args["currentTaskId"]
        fields["currentTaskId"] = (UNDEFINED if task_id is None
                                   else (await load(ctx, "tasks", task_id, caller.tenant_id))["_id"])
    await ctx.db.patch(agent["_id"], fields)
    return None


@mutation(args={"id": v.string()}, returns=v.object({"lastActiveAt": v.number()}))
async def reportHeartbeat(ctx, args):
    """HEARTBEAT_OK: the agent woke up and found nothing to do."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["id"], caller.tenant_id)
    now = now_ms()
    await ctx.db.patch(agent["_id"], {"lastActiveAt": now})
    return {"lastActiveAt": now}
