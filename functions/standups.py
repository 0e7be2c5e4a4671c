"""Daily standups: `generateDailyStandup` (the 23:30 cron) writes one standup per tenant and date.

Shaped like the spec's, with its fixes: every tenant (the spec hard-coded "default"), "completed
today" from `tasks.completedAt` (the spec's `wasUpdatedToday` had no field to read), blocked tasks
with their reason, and key decisions from today's activities ("Decision: ..." lines of comments).
Running it again for the same date refreshes that tenant's standup instead of adding a second one.
Task categories use the task's first assignee, as the spec does; unassigned tasks are left out of the
per-agent categories (the standup's `agentId` is required).
"""

import builtins  # this module exports a query named `list`

from engine import internal_mutation, query, v

from ._clock import day_bounds, now_ms, utc_date
from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller


async def all_tenants(ctx):
    """Every tenant with agents or tasks: a skip scan of the `by_tenant` indexes, one read per tenant."""
    found = set()
    for table in ("agents", "tasks"):
        last = None
        while True:
            rest = (lambda q: q.gt("tenantId", last)) if last is not None else None
            first = await ctx.db.query(table).with_index("by_tenant", rest).first()
            if first is None:
                break
            last = first["tenantId"]
            found.add(last)
    return sorted(found)


async def tasks_in(ctx, status, tenant_id):
    return await (ctx.db.query("tasks")
                  .with_index("by_status", lambda q: q.eq("status", status).eq("tenantId", tenant_id))
                  .collect())


async def get_key_decisions(ctx, tenant_id, date):
    start, end = day_bounds(date)
    activities = await (ctx.db.query("activities")
                        .with_index("by_tenant", lambda q: q.eq("tenantId", tenant_id)
                                    .gte("_creationTime", start).lt("_creationTime", end))
                        .collect())
    decisions = []
    for activity in activities:
        metadata = activity.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("decisions"), builtins.list):
            decisions += [d for d in metadata["decisions"] if isinstance(d, str)]
    return decisions


async def standup_for(ctx, tenant_id, date):
    start, end = day_bounds(date)

    # Get tasks completed today
    done_today = await (ctx.db.query("tasks")
                        .with_index("by_completed", lambda q: q.eq("tenantId", tenant_id)
                                    .gte("completedAt", start).lt("completedAt", end))
                        .collect())

    # Categorize
    completed = [{"agentId": t["assigneeIds"][0], "taskTitle": t["title"]}
                 for t in done_today if t["status"] == "done" and t["assigneeIds"]]

    in_progress = [{"agentId": t["assigneeIds"][0], "taskTitle": t["title"], "progress": t["progress"]}
                   for t in await tasks_in(ctx, "in_progress", tenant_id) if t["assigneeIds"]]

    blocked = [{"agentId": t["assigneeIds"][0], "reason": t.get("blockedReason", t["title"])}
               for t in await tasks_in(ctx, "blocked", tenant_id) if t["assigneeIds"]]

    needs_review = [{"taskId": t["_id"], "taskTitle": t["title"]} for t in await tasks_in(ctx, "review", tenant_id)]

    # Get key decisions from activities
    decisions = await get_key_decisions(ctx, tenant_id, date)

    return {
        "date": date,
        "completed": completed,
        "inProgress": in_progress,
        "blocked": blocked,
        "needsReview": needs_review,
        "decisions": decisions,
        "tenantId": tenant_id,
    }


@internal_mutation(args={"date": v.optional(v.string())}, returns=v.object({
    "date": v.string(),
    "standups": v.array(v.object({"tenantId": v.string(), "standupId": v.id("standups"), "created": v.boolean()})),
}))
async def generateDailyStandup(ctx, args):
    today = args["date"] if "date" in args else utc_date(now_ms())
    day_bounds(today)  # INVALID_DATE before anything is written
    results = []
    for tenant_id in await all_tenants(ctx):
        standup = await standup_for(ctx, tenant_id, today)
        existing = await (ctx.db.query("standups")
                          .with_index("by_date", lambda q: q.eq("date", today).eq("tenantId", tenant_id))
                          .first())
        if existing is not None:
            # Save standup (again): refreshed, still one per (date, tenant), delivery state kept
            await ctx.db.patch(existing["_id"], standup)
            results.append({"tenantId": tenant_id, "standupId": existing["_id"], "created": False})
        else:
            # Save standup
            standup_id = await ctx.db.insert("standups", {**standup, "sentToTelegram": False})
            results.append({"tenantId": tenant_id, "standupId": standup_id, "created": True})
    return {"date": today, "standups": results}


@query(args={"limit": v.optional(v.number())}, returns=v.array(doc("standups")))
async def list(ctx, args):
    """The tenant's standups, newest date first."""
    caller = await current_caller(ctx)
    limit = args.get("limit", 30)
    if not 1 <= limit <= 366:
        raise app_error("INVALID_ARGUMENTS", f"limit must be between 1 and 366, got {limit!r}.")
    standups = await (ctx.db.query("standups")
                      .with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id))
                      .collect())
    return sorted(standups, key=lambda s: s["date"], reverse=True)[:int(limit)]


@query(args={"date": v.string()}, returns=v.union(doc("standups"), v.null()))
async def get(ctx, args):
    """The standup of one date ("2026-01-31"), or null if none was generated."""
    caller = await current_caller(ctx)
    day_bounds(args["date"])
    return await (ctx.db.query("standups")
                  .with_index("by_date", lambda q: q.eq("date", args["date"]).eq("tenantId", caller.tenant_id))
                  .first())


@internal_mutation(args={"id": v.id("standups")}, returns=v.null())
async def markSent(ctx, args):
    """For the Telegram sender: the standup went out."""
    await ctx.db.patch(args["id"], {"sentToTelegram": True})
    return None
