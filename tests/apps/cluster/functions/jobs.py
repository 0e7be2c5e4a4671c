"""Scheduled and cron work that records where it ran."""

import asyncio

from engine import env, internal, internal_action, internal_mutation, internal_query, mutation, query, v

from . import _gates


def _node() -> str:
    return env.get("NODE_NAME", "?")


async def _flag(ctx, name: str) -> bool:
    row = await ctx.db.query("flags").with_index("by_name", lambda q: q.eq("name", name)).unique()
    return row is not None and row["on"]


async def _planned(ctx, name: str) -> float:
    """The planned time of the cron run in progress: its `_cron_jobs` document's `nextRun`, which
    moves on only when the run's outcome commits."""
    async for job in ctx.db.system.query("_cron_jobs"):
        if job["name"] == name:
            return job["nextRun"]
    raise RuntimeError(f"no cron job {name}")


@internal_mutation(args={"tag": v.string(), "planned": v.optional(v.float64())})
async def record(ctx, args):
    await ctx.db.insert("runs", {"tag": args["tag"], "node": _node(), **({"planned": args["planned"]}
                                                                      if "planned" in args else {})})


@internal_action(args={"tag": v.string()})
async def act(ctx, args):
    await ctx.run_mutation(internal.jobs.record, {"tag": args["tag"]})


@internal_action(args={"tag": v.string()})
async def hang(ctx, args):
    """Record that it started, then never finish (until its node goes)."""
    await ctx.run_mutation(internal.jobs.record, {"tag": args["tag"]})
    _gates.started(args["tag"]).set()
    await asyncio.sleep(3600)


@mutation(args={"tag": v.string(), "n": v.float64(), "kind": v.string()})
async def scheduleMany(ctx, args):
    fn = {"mutation": internal.jobs.record, "action": internal.jobs.act, "hang": internal.jobs.hang}[args["kind"]]
    return [await ctx.scheduler.run_after(0, fn, {"tag": args["tag"]}) for _ in range(int(args["n"]))]


@internal_mutation
async def tick(ctx, args):
    if await _flag(ctx, "tick"):
        await ctx.db.insert("runs", {"tag": "tick", "node": _node(), "planned": await _planned(ctx, "tick")})


@internal_query
async def workPlan(ctx, args):
    return {"hang": await _flag(ctx, "hang"), "planned": await _planned(ctx, "work")}


@internal_action
async def work(ctx, args):
    plan = await ctx.run_query(internal.jobs.workPlan, {})
    if plan["hang"]:
        await ctx.run_mutation(internal.jobs.record, {"tag": "work-hang", "planned": plan["planned"]})
        await asyncio.sleep(3600)
    else:
        await ctx.run_mutation(internal.jobs.record, {"tag": "work", "planned": plan["planned"]})


@mutation(args={"name": v.string(), "on": v.boolean()})
async def setFlag(ctx, args):
    row = await ctx.db.query("flags").with_index("by_name", lambda q: q.eq("name", args["name"])).unique()
    if row is None:
        await ctx.db.insert("flags", {"name": args["name"], "on": args["on"]})
    else:
        await ctx.db.patch(row["_id"], {"on": args["on"]})


@query(args={"tag": v.string()})
async def runs(ctx, args):
    return [{"node": r["node"], "planned": r.get("planned")}
            async for r in ctx.db.query("runs").with_index("by_tag", lambda q: q.eq("tag", args["tag"]))]


@query(args={"ids": v.array(v.id("_scheduled_functions"))})
async def states(ctx, args):
    return [(await ctx.db.system.get(i))["state"] for i in args["ids"]]


@query
async def cronJobs(ctx, args):
    return {job["name"]: {"state": job["state"]["kind"], "lastRun": job.get("lastRun"), "nextRun": job["nextRun"]}
            async for job in ctx.db.system.query("_cron_jobs")}


@query(args={"name": v.string()})
async def envValue(ctx, args):
    return env.get(args["name"])


@query
async def flagNames(ctx, args):
    return [f["name"] async for f in ctx.db.query("flags")]
