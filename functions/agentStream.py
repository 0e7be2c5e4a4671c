"""The agent stream: each OpenClaw run of an agent as one document whose chunks grow in order.

Reads: an agent's current run (the newest still "running") and its recent runs; a run by `runId`.
Writes (OpenClaw, through the admin key or the event hook): start a run, append chunks, finish it.
Starting and finishing a run also record `agent_started` / `agent_completed` in the activity feed.
"""

from typing import Any

from engine import mutation, query, v

from ._clock import now_ms
from ._docs import doc
from ._errors import app_error
from ._feed import log_activity
from ._tenancy import Actor, current_caller, load_agent

chunk_type = v.union(*[v.literal(t) for t in ("thinking", "tool_call", "tool_result", "output", "error")])
DEFAULT_RECENT = 10


async def run_by_id(ctx, run_id, tenant_id):
    run = await ctx.db.query("agentStream").with_index("by_run", lambda q: q.eq("runId", run_id)).first()
    if run is None or run["tenantId"] != tenant_id:
        raise app_error("NOT_FOUND", f"No agent run {run_id!r}.", runId=run_id)
    return run


@query(args={"agentId": v.string(), "limit": v.optional(v.number())},
       returns=v.object({"current": v.union(doc("agentStream"), v.null()), "recent": v.array(doc("agentStream"))}))
async def listByAgent(ctx, args):
    """`current`: the newest running run (or null); `recent`: the newest runs, newest first."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    limit = args.get("limit", DEFAULT_RECENT)
    if not 1 <= limit <= 100:
        raise app_error("INVALID_ARGUMENTS", f"limit must be between 1 and 100, got {limit!r}.")
    recent = await (ctx.db.query("agentStream").with_index("by_agent", lambda q: q.eq("agentId", agent["_id"]))
                    .order("desc").take(int(limit)))
    current = next((r for r in recent if r["status"] == "running"), None)
    return {"current": current, "recent": recent}


@query(args={"runId": v.string()}, returns=doc("agentStream"))
async def getRun(ctx, args):
    caller = await current_caller(ctx)
    return await run_by_id(ctx, args["runId"], caller.tenant_id)


@mutation(args={"agentId": v.string(), "runId": v.string(), "prompt": v.optional(v.string())},
          returns=v.id("agentStream"))
async def startRun(ctx, args):
    """Start (or, for a known runId, resume) a run; the agent becomes active."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    now = now_ms()
    existing = await ctx.db.query("agentStream").with_index("by_run", lambda q: q.eq("runId", args["runId"])).first()
    if existing is not None:
        if existing["tenantId"] != caller.tenant_id or existing["agentId"] != agent["_id"]:
            raise app_error("DUPLICATE", f"Run {args['runId']!r} belongs to another agent.", runId=args["runId"])
        await ctx.db.patch(existing["_id"], {"status": "running"})
        await ctx.db.patch(agent["_id"], {"status": "active", "lastActiveAt": now})
        return existing["_id"]
    run_id = await ctx.db.insert("agentStream", {
        "agentId": agent["_id"], "runId": args["runId"], "chunks": [], "status": "running",
        "progress": 0.0, "startedAt": now, "tenantId": caller.tenant_id,
    })
    await ctx.db.patch(agent["_id"], {"status": "active", "lastActiveAt": now})
    await log_activity(ctx, caller.tenant_id, "agent_started", f"{agent['name']} started a run",
                       actor=Actor(agent["_id"], "agent", agent["name"], agent), target_id=run_id,
                       target_type="agentStream",
                       metadata={"runId": args["runId"], **({"prompt": args["prompt"]} if "prompt" in args else {})})
    return run_id


@mutation(args={"runId": v.string(), "type": chunk_type, "content": v.string(), "progress": v.optional(v.number())},
          returns=v.null())
async def appendChunk(ctx, args):
    caller = await current_caller(ctx)
    run = await run_by_id(ctx, args["runId"], caller.tenant_id)
    now = now_ms()
    fields: dict[str, Any] = {"chunks": [*run["chunks"], {"type": args["type"], "content": args["content"], "timestamp": now}]}
    if "progress" in args:
        if not 0 <= args["progress"] <= 100:
            raise app_error("INVALID_PROGRESS", f"Progress is a percentage from 0 to 100, got {args['progress']!r}.")
        fields["progress"] = float(args["progress"])
    await ctx.db.patch(run["_id"], fields)
    await ctx.db.patch(run["agentId"], {"lastActiveAt": now})
    return None


@mutation(args={
    "runId": v.string(),
    "status": v.union(v.literal("completed"), v.literal("error"), v.literal("paused")),
    "error": v.optional(v.string()),
}, returns=v.object({"durationMs": v.number()}))
async def finishRun(ctx, args):
    """End a run; the agent goes idle. Returns the run's duration."""
    caller = await current_caller(ctx)
    run = await run_by_id(ctx, args["runId"], caller.tenant_id)
    now = now_ms()
    fields = {"status": args["status"]}
    if args["status"] != "paused":
        fields["completedAt"] = now
    if args["status"] == "completed":
        fields["progress"] = 100.0
    if "error" in args:
        fields["chunks"] = [*run["chunks"], {"type": "error", "content": args["error"], "timestamp": now}]
    await ctx.db.patch(run["_id"], fields)
    agent = await ctx.db.get(run["agentId"])
    await ctx.db.patch(agent["_id"], {"status": "idle", "lastActiveAt": now})
    duration = now - run["startedAt"]
    await log_activity(ctx, caller.tenant_id, "agent_completed",
                       f"{agent['name']} {'finished' if args['status'] == 'completed' else args['status']} a run",
                       actor=Actor(agent["_id"], "agent", agent["name"], agent), target_id=run["_id"],
                       target_type="agentStream",
                       metadata={"runId": args["runId"], "status": args["status"], "durationMs": duration})
    return {"durationMs": duration}
