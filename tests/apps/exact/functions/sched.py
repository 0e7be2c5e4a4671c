"""Scheduled functions that cancel themselves, and a way to read every job's document."""

from engine import action, internal, internal_action, internal_mutation, mutation, query, v


async def _own_job(ctx, name):
    # A running job reads itself inProgress (Convex stages that state for the mutation itself).
    async for job in ctx.db.system.query("_scheduled_functions"):
        if job["name"] == name and job["state"]["kind"] == "inProgress":
            return job
    return None


@internal_mutation
async def selfCancellingMutation(ctx, args):
    job = await _own_job(ctx, "sched.js:selfCancellingMutation")
    await ctx.db.insert("events", {"tag": f"mutation saw {job['state']['kind']}"})
    await ctx.scheduler.cancel(job["_id"])


@internal_action
async def selfCancellingAction(ctx, args):
    job = await ctx.run_query(internal.sched.ownJob, {"name": "sched.js:selfCancellingAction"})
    await ctx.run_mutation(internal.sched.record, {"tag": "action canceled itself"})
    await ctx.scheduler.cancel(job["_id"])  # last: a client that sees it canceled sees the event too


@internal_mutation
async def failing(ctx, args):
    raise Exception("scheduled failure")


@internal_mutation(args={"tag": v.string()})
async def record(ctx, args):
    await ctx.db.insert("events", {"tag": args["tag"]})


@query(args={"name": v.string()})
async def ownJob(ctx, args):
    return await _own_job(ctx, args["name"])


@mutation(args={"which": v.string(), "delay": v.optional(v.float64())})
async def schedule(ctx, args):
    target = {"mutation": internal.sched.selfCancellingMutation, "action": internal.sched.selfCancellingAction,
              "failing": internal.sched.failing, "record": internal.sched.record}[args["which"]]
    extra = {"tag": "scheduled"} if args["which"] == "record" else {}
    return await ctx.scheduler.run_after(args.get("delay", 0), target, extra)


@mutation(args={"id": v.id("_scheduled_functions")})
async def cancel(ctx, args):
    await ctx.scheduler.cancel(args["id"])


@query(args={"id": v.id("_scheduled_functions")})
async def job(ctx, args):
    return await ctx.db.system.get(args["id"])


@query
async def events(ctx, args):
    return [e["tag"] for e in await ctx.db.query("events").collect()]
