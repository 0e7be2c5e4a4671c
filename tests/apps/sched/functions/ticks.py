"""Targets for cron jobs: each run inserts an event tagged with the job's tag."""

from engine import internal_action, internal_mutation, v

from . import _gates


@internal_mutation(args={"tag": v.string()})
async def tick(ctx, args):
    await ctx.db.insert("events", {"tag": args["tag"], "by": "cron"})


@internal_mutation(args={"tag": v.string()})
async def fail(ctx, args):
    await ctx.db.insert("events", {"tag": args["tag"], "by": "cron"})
    raise ValueError(f"cron {args['tag']} failed")


@internal_action(args={"tag": v.string()})
async def slow(ctx, args):
    """Holds until the test opens the gate named after the tag; records start and end."""
    await ctx.run_mutation("ticks:tick", {"tag": args["tag"] + ":started"})
    _gates.started(args["tag"]).set()
    await _gates.gate(args["tag"]).wait()
    await ctx.run_mutation("ticks:tick", {"tag": args["tag"] + ":done"})
