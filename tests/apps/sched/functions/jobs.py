"""Functions that schedule, are scheduled, and look at `_scheduled_functions`."""

from engine import ConvexError, action, internal, internal_action, internal_mutation, mutation, query, v

from . import _gates


@internal_mutation(args={"tag": v.string(), "hold": v.optional(v.string())})
async def record(ctx, args):
    """Insert an event; with `hold`, wait for the test to open that gate first (mid-run restarts)."""
    if "hold" in args:
        _gates.started(args["hold"]).set()
        await _gates.gate(args["hold"]).wait()
    await ctx.db.insert("events", {"tag": args["tag"], "by": "mutation"})
    return args["tag"]


@internal_mutation
async def boom(ctx, args):
    await ctx.db.insert("events", {"tag": "boom-wrote", "by": "mutation"})
    raise ConvexError({"reason": "boom"})


@internal_action(args={"tag": v.string(), "hold": v.optional(v.string())})
async def act(ctx, args):
    """Record that the action started (a committed mutation), then optionally wait on a gate."""
    await ctx.run_mutation(internal.jobs.record, {"tag": args["tag"] + ":started"})
    if "hold" in args:
        _gates.started(args["hold"]).set()
        await _gates.gate(args["hold"]).wait()
    await ctx.run_mutation(internal.jobs.record, {"tag": args["tag"] + ":done"})
    return None


@internal_action
async def act_fails(ctx, args):
    raise RuntimeError("the action broke")


@query
async def ping(ctx, args):
    return "pong"


@mutation(args={"delay": v.number(), "tag": v.string(), "fail": v.optional(v.boolean()),
                "fn": v.optional(v.string()), "hold": v.optional(v.string())})
async def schedule(ctx, args):
    """Schedule jobs:record (or `fn`) after `delay` ms; with `fail`, throw after scheduling."""
    fn_args = {"tag": args["tag"]}
    if "hold" in args:
        fn_args["hold"] = args["hold"]
    job_id = await ctx.scheduler.run_after(args["delay"], args.get("fn", internal.jobs.record), fn_args)
    await ctx.db.insert("notes", {"jobId": job_id})
    if args.get("fail"):
        raise ConvexError("failed after scheduling")
    return job_id


@mutation(args={"at": v.number(), "tag": v.string()})
async def schedule_at(ctx, args):
    return await ctx.scheduler.run_at(args["at"], internal.jobs.record, {"tag": args["tag"]})


@mutation(args={"delay": v.number(), "tag": v.string(), "hold": v.optional(v.string())})
async def schedule_action(ctx, args):
    fn_args = {"tag": args["tag"]}
    if "hold" in args:
        fn_args["hold"] = args["hold"]
    return await ctx.scheduler.run_after(args["delay"], internal.jobs.act, fn_args)


@mutation(args={"name": v.string(), "delay": v.number()})
async def schedule_by_name(ctx, args):
    """Schedule any path (including ones that do not exist) with no arguments."""
    return await ctx.scheduler.run_after(args["delay"], args["name"], {})


@action(args={"delay": v.number(), "tag": v.string(), "fail": v.optional(v.boolean())})
async def schedule_from_action(ctx, args):
    job_id = await ctx.scheduler.run_after(args["delay"], internal.jobs.record, {"tag": args["tag"]})
    if args.get("fail"):
        raise RuntimeError("the action failed after scheduling")
    return job_id


@action(args={"id": v.id("_scheduled_functions")})
async def cancel_from_action(ctx, args):
    await ctx.scheduler.cancel(args["id"])


@mutation(args={"id": v.id("_scheduled_functions")})
async def cancel(ctx, args):
    await ctx.scheduler.cancel(args["id"])


@mutation(args={"tag": v.string()})
async def chain(ctx, args):
    """A scheduled mutation that schedules another one for right now."""
    await ctx.scheduler.run_after(0, internal.jobs.record, {"tag": args["tag"]})


@query
async def events(ctx, args):
    return [e["tag"] for e in await ctx.db.query("events").collect()]


@query(args={"id": v.id("_scheduled_functions")})
async def job(ctx, args):
    return await ctx.db.system.get(args["id"])


@query(args={"id": v.id("_scheduled_functions")})
async def job_two_args(ctx, args):
    return await ctx.db.system.get("_scheduled_functions", args["id"])


@query
async def jobs(ctx, args):
    return await ctx.db.system.query("_scheduled_functions").collect()


@query
async def crons(ctx, args):
    return await ctx.db.system.query("_cron_jobs").collect()


@query(args={"id": v.id("_scheduled_functions")})
async def read_job_via_db(ctx, args):
    return await ctx.db.get(args["id"])


@query
async def scan_jobs_via_db(ctx, args):
    return await ctx.db.query("_scheduled_functions").collect()


@query
async def system_reads_app_table(ctx, args):
    return await ctx.db.system.query("events").collect()


@mutation(args={"id": v.id("_scheduled_functions")})
async def patch_job(ctx, args):
    await ctx.db.patch(args["id"], {"state": {"kind": "success"}})


@mutation(args={"id": v.id("_scheduled_functions")})
async def delete_job(ctx, args):
    await ctx.db.delete(args["id"])


@mutation
async def insert_job(ctx, args):
    return await ctx.db.insert("_scheduled_functions", {"name": "x", "args": [{}], "scheduledTime": 0.0,
                                                        "state": {"kind": "pending"}})
