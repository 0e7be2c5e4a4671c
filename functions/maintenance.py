"""Weekly cleanup (crons.py, Sunday 03:00 UTC; `POST /maintenance/cleanup`), and `cronRun`, which
tells a cron action the time its run was planned for.

`cleanup` deletes, across every tenant, what has been finished for longer than the retention
($NOVA_RETENTION_DAYS, default 30 days; or the `retentionDays` argument):
- agent streams that finished (status "completed" or "error") before the cutoff — by `completedAt`,
  else `startedAt` — together with their rows in `agentStreamChunks` (chunks first, the stream
  last, so an interrupted cleanup leaves nothing orphaned that the next one would not find);
- notifications that were read (`readAt`) before the cutoff.
Running or paused streams and unread notifications are kept however old. Tasks, documents,
comments, messages, activities, memory and standups are never deleted.
Work is done in batches (one mutation each, at most BATCH_DELETES deletions), so a large backlog
stays within transaction limits and an interrupted cleanup resumes where it left off next time.

Time: the cutoff is measured from the cron run's start on the deployment's clock (`cronRun`), or
from now when triggered over HTTP.
"""

from __future__ import annotations

import math
from typing import Any

from engine import env, internal, internal_action, internal_mutation, internal_query, v

from ._clock import now_ms
from ._errors import app_error

CLEANUP_JOB = "weekly cleanup"     # the cron job's name (crons.py)
RETENTION_ENV = "NOVA_RETENTION_DAYS"
DEFAULT_RETENTION_DAYS = 30.0
DAY_MS = 86_400_000
PAGE = 128                         # documents examined per batch
BATCH_DELETES = 2_000              # deletions per batch (well under the 16 000 writes of a transaction)
FINISHED = ("completed", "error")


cron_run = v.union(v.null(), v.object({
    "planned": v.number(), "started": v.number(),
    "previous": v.union(v.null(), v.object({"planned": v.number(), "started": v.number(), "ok": v.boolean()})),
}))
batch_args = {"cutoffMs": v.number(), "cursor": v.union(v.string(), v.null())}


@internal_query(args={"name": v.string()}, returns=cron_run)
async def cronRun(ctx, args):
    """The running cron job `name`: {planned, started, previous: {planned, started, ok} | None},
    or None when it is not running (called outside its cron)."""
    job = await (ctx.db.system.query("_cron_jobs")
                 .with_index("by_name", lambda q: q.eq("name", args["name"])).first())
    if job is None or job["state"]["kind"] != "inProgress":
        return None
    last = job.get("lastRun")
    previous = None
    if isinstance(last, dict):
        previous = {"planned": last["scheduledTime"], "started": last["ts"], "ok": last["outcome"] == "success"}
    return {"planned": job["nextRun"], "started": job.get("startedAt", job["nextRun"]), "previous": previous}


def retention_days(given: float | None) -> float:
    if given is None:
        raw = env.get(RETENTION_ENV)
        if not raw:
            return DEFAULT_RETENTION_DAYS
        try:
            given = float(raw)
        except ValueError:
            given = math.nan
        where = RETENTION_ENV
    else:
        where = "retentionDays"
    if not (math.isfinite(given) and 0 < given <= 36_500):
        raise app_error("CONFIG_INVALID" if where == RETENTION_ENV else "INVALID_ARGUMENTS",
                        f"{where} must be a number of days above 0 (at most 36500).")
    return given


@internal_mutation(args=batch_args, returns=v.object({
    "cursor": v.union(v.string(), v.null()), "done": v.boolean(), "streams": v.number(), "chunks": v.number()}))
async def trimStreams(ctx, args):
    """One batch: finished agent streams older than the cutoff, and their chunks."""
    cutoff = args["cutoffMs"]
    page = await (ctx.db.query("agentStream")
                  .with_index("by_creation_time", lambda q: q.lt("_creationTime", cutoff))
                  .paginate({"numItems": float(PAGE), "cursor": args["cursor"]}))
    budget = BATCH_DELETES
    streams = chunks = 0
    for stream in page["page"]:
        if stream["status"] not in FINISHED or stream.get("completedAt", stream["startedAt"]) >= cutoff:
            continue
        rows = await (ctx.db.query("agentStreamChunks")
                      .with_index("by_run", lambda q: q.eq("tenantId", stream["tenantId"]).eq("runId", stream["runId"]))
                      .take(budget))
        for row in rows:
            await ctx.db.delete(row["_id"])
        chunks += len(rows)
        budget -= len(rows)
        if budget <= 0:
            # Out of budget, maybe mid-stream: this page again next batch (what was deleted is gone).
            return {"cursor": args["cursor"], "done": False, "streams": float(streams), "chunks": float(chunks)}
        await ctx.db.delete(stream["_id"])
        streams += 1
        budget -= 1
    return {"cursor": page["continueCursor"], "done": page["isDone"], "streams": float(streams),
            "chunks": float(chunks)}


@internal_mutation(args=batch_args, returns=v.object({
    "cursor": v.union(v.string(), v.null()), "done": v.boolean(), "notifications": v.number()}))
async def trimNotifications(ctx, args):
    """One batch: notifications read before the cutoff (created before it, too)."""
    cutoff = args["cutoffMs"]
    page = await (ctx.db.query("notifications")
                  .with_index("by_creation_time", lambda q: q.lt("_creationTime", cutoff))
                  .paginate({"numItems": float(PAGE), "cursor": args["cursor"]}))
    deleted = 0
    for notification in page["page"]:
        read_at = notification.get("readAt")
        if read_at is not None and read_at < cutoff:
            await ctx.db.delete(notification["_id"])
            deleted += 1
    return {"cursor": page["continueCursor"], "done": page["isDone"], "notifications": float(deleted)}


@internal_action(args={"retentionDays": v.optional(v.number()), "trigger": v.optional(v.string())},
                 returns=v.object({"cutoffMs": v.number(), "retentionDays": v.number(), "streamsDeleted": v.number(),
                                   "chunksDeleted": v.number(), "notificationsDeleted": v.number()}))
async def cleanup(ctx, args):
    days = retention_days(args.get("retentionDays"))
    run = await ctx.run_query(internal.maintenance.cronRun, {"name": CLEANUP_JOB}) \
        if args.get("trigger") == "cron" else None
    now = run["started"] if run else now_ms()
    cutoff = now - days * DAY_MS
    totals = {"streams": 0.0, "chunks": 0.0, "notifications": 0.0}
    for step in (internal.maintenance.trimStreams, internal.maintenance.trimNotifications):
        cursor: Any = None
        while True:
            batch = await ctx.run_mutation(step, {"cutoffMs": cutoff, "cursor": cursor})
            for key in totals:
                totals[key] += batch.get(key, 0.0)
            if batch["done"]:
                break
            cursor = batch["cursor"]
    print(f"cleanup: retention {days:g} days: deleted {totals['streams']:g} agent streams "
          f"({totals['chunks']:g} chunks) and {totals['notifications']:g} read notifications")
    return {"cutoffMs": cutoff, "retentionDays": float(days), "streamsDeleted": totals["streams"],
            "chunksDeleted": totals["chunks"], "notificationsDeleted": totals["notifications"]}
