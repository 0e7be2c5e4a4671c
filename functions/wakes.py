"""Heartbeats: every agent woken every 15 minutes at its own staggered minute, through OpenClaw.

    wakes:heartbeatTick   (internal action) the cron runs it every minute
    wakes:schedule        (query) each agent's minute and its latest wake

The squad is dynamic, so the schedule is computed, not registered: in each tenant, agents are
ordered lead(s) first, then by creation; the i-th agent's minute is (2*i) mod 15 past each quarter
hour, the spec's 0/2/4/6 pattern continued (0, 2, 4, ... 14, then 1, 3, ... 13: fifteen agents
get fifteen distinct minutes; a sixteenth shares the lead's). Adding an agent appends it; adding a
lead shifts the others by one step.

A tick wakes the agents whose latest slot (their minute's most recent occurrence) is less than
`$OPENCLAW_HEARTBEAT_GRACE_MINUTES` (default 3) old and not yet woken, so a tick that runs late
still wakes them once; slots missed for longer (the server was down) are skipped, not piled up.
A wake is `POST /hooks/agent {message: $OPENCLAW_HEARTBEAT_PROMPT (default "HEARTBEAT"),
sessionKey, agentId, wakeMode: "now", deliver: false}` with `Idempotency-Key:
nova-heartbeat-<agentId>-<slot>`.

Wake state (`agentWakes`): sending -> running (admitted: the gateway answered 2xx) -> ended (the
event hook saw its run end or fail: the run is the gateway's `runId`, or the first run started with
the heartbeat prompt after the wake). An agent whose latest wake is still sending or running is not
woken again (skipped, reason "running") until it ends or `$OPENCLAW_WAKE_TIMEOUT_MINUTES` (default 60)
pass (then it is marked expired). A failed POST is retried at the next tick within the slot's
grace (back-off by `Retry-After`), with the same Idempotency-Key.
"""

from __future__ import annotations

import math
from typing import Any

from engine import env, internal, internal_action, internal_mutation, query, v

from ._clock import now_ms
from ._docs import doc
from ._gateway import agent_id_of, configured, missing_settings, post_agent_hook
from ._tenancy import current_caller
from .openclaw import heartbeat_prompt

PERIOD_MINUTES = 15
STEP_MINUTES = 2
MINUTE_MS = 60_000.0
GRACE_ENV = "OPENCLAW_HEARTBEAT_GRACE_MINUTES"
TIMEOUT_ENV = "OPENCLAW_WAKE_TIMEOUT_MINUTES"
DEFAULT_GRACE_MINUTES = 3.0
DEFAULT_TIMEOUT_MINUTES = 60.0
LEASE_MS = 120_000.0
LIVE = ("sending", "running")


def _minutes(name: str, default: float) -> float:
    try:
        value = float(env.get(name) or default)
    except ValueError:
        return default
    return value if value > 0 else default


def squad_order(agents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(agents, key=lambda a: (a["level"] != "lead", a["_creationTime"], a["_id"]))


def minute_of(index: int) -> int:
    """The i-th agent's minute within each quarter hour."""
    return (STEP_MINUTES * index) % PERIOD_MINUTES


def latest_slot(now: float, minute: int) -> float:
    """The most recent moment <= now (on a minute boundary) whose minute-of-hour is `minute` mod 15."""
    current = math.floor(now / MINUTE_MS)
    back = (current % PERIOD_MINUTES - minute) % PERIOD_MINUTES  # epoch minute 0 is on the hour
    return (current - back) * MINUTE_MS


def wake_key(agent_id: str, slot: float) -> str:
    return f"nova-heartbeat-{agent_id}-{int(slot)}"


async def squads(ctx) -> dict[str, list[dict[str, Any]]]:
    by_tenant: dict[str, list[dict[str, Any]]] = {}
    async for agent in ctx.db.query("agents"):
        by_tenant.setdefault(agent["tenantId"], []).append(agent)
    return {tenant: squad_order(agents) for tenant, agents in by_tenant.items()}


async def latest_wake(ctx, agent_id: str) -> dict[str, Any] | None:
    return await ctx.db.query("agentWakes").with_index("by_agent", lambda q: q.eq("agentId", agent_id)).order("desc").first()


due_wake = v.object({"wakeId": v.id("agentWakes"), "agentId": v.id("agents"), "sessionKey": v.string(),
                     "slot": v.number(), "attempt": v.number()})


@internal_mutation(args={}, returns=v.object({
    "due": v.array(due_wake),
    "skipped": v.array(v.object({"agentId": v.id("agents"), "reason": v.string()})),
}))
async def claimHeartbeats(ctx, args):
    """The wakes to send now, each leased as "sending"; and the due agents skipped, with why."""
    now = now_ms()
    grace = _minutes(GRACE_ENV, DEFAULT_GRACE_MINUTES) * MINUTE_MS
    timeout = _minutes(TIMEOUT_ENV, DEFAULT_TIMEOUT_MINUTES) * MINUTE_MS
    due, skipped = [], []
    for squad in (await squads(ctx)).values():
        for index, agent in enumerate(squad):
            slot = latest_slot(now, minute_of(index))
            if now - slot >= grace:
                continue
            last = await latest_wake(ctx, agent["_id"])
            if last is not None and last["slot"] == slot:
                retry = (last["status"] in ("failed", "sending")
                         and last.get("nextAttemptAt", math.inf) <= now)
                if retry:
                    attempt = int(last["attempts"]) + 1
                    await ctx.db.patch(last["_id"], {"status": "sending", "attempts": float(attempt),
                                                     "nextAttemptAt": now + LEASE_MS})
                    due.append({"wakeId": last["_id"], "agentId": agent["_id"], "sessionKey": agent["sessionKey"],
                                "slot": slot, "attempt": float(attempt)})
                continue  # this slot is handled (sent, in flight, or waiting for its retry)
            if last is not None and last["status"] in LIVE:
                since = last.get("sentAt", last["slot"])
                alive = (now - since < timeout) if last["status"] == "running" \
                    else (last.get("nextAttemptAt", 0.0) > now)
                if alive:
                    skipped.append({"agentId": agent["_id"], "reason": last["status"]})
                    continue
                await ctx.db.patch(last["_id"], {"status": "expired", "endedAt": now})
            wake_id = await ctx.db.insert("agentWakes", {
                "agentId": agent["_id"], "slot": slot, "status": "sending", "attempts": 1.0,
                "nextAttemptAt": now + LEASE_MS, "tenantId": agent["tenantId"],
            })
            due.append({"wakeId": wake_id, "agentId": agent["_id"], "sessionKey": agent["sessionKey"],
                        "slot": slot, "attempt": 1.0})
    return {"due": due, "skipped": skipped}


@internal_mutation(args={
    "wakeId": v.id("agentWakes"),
    "ok": v.boolean(),
    "runId": v.optional(v.string()),
    "error": v.optional(v.string()),
    "retryAfterMs": v.optional(v.number()),
}, returns=v.null())
async def recordWake(ctx, args):
    wake = await ctx.db.get(args["wakeId"])
    if wake is None or wake["status"] != "sending":
        return None  # its run already ended (the event hook was faster than this answer)
    now = now_ms()
    if args["ok"]:
        fields: dict[str, Any] = {"status": "running", "sentAt": now}
        if "runId" in args:
            fields["gatewayRunId"] = args["runId"]
        await ctx.db.patch(wake["_id"], fields)
        await ctx.db.patch(wake["agentId"], {"lastActiveAt": now})
        return None
    retry_at = now + max(MINUTE_MS * 0.5, args.get("retryAfterMs", 0.0))
    await ctx.db.patch(wake["_id"], {"status": "failed", "nextAttemptAt": retry_at,
                                     "lastError": (args.get("error") or "failed")[:500]})
    return None


@internal_action(args={}, returns=v.object({
    "configured": v.boolean(),
    "woken": v.array(v.id("agents")),
    "failed": v.array(v.id("agents")),
    "skipped": v.array(v.object({"agentId": v.id("agents"), "reason": v.string()})),
    "missing": v.array(v.string()),
}))
async def heartbeatTick(ctx, args):
    """Wake the agents due this minute (run by the cron every minute)."""
    summary: dict[str, Any] = {"configured": configured(), "woken": [], "failed": [], "skipped": [],
                               "missing": missing_settings()}
    if not summary["configured"]:
        return summary
    claim = await ctx.run_mutation(internal.wakes.claimHeartbeats, {})
    summary["skipped"] = claim["skipped"]
    for item in claim["due"]:
        body = {"message": heartbeat_prompt(), "sessionKey": item["sessionKey"], "wakeMode": "now",
                "deliver": False, "name": "Nova Command heartbeat"}
        agent_id = agent_id_of(item["sessionKey"])
        if agent_id is not None:
            body["agentId"] = agent_id
        answer = await post_agent_hook(body, wake_key(item["agentId"], item["slot"]))
        outcome: dict[str, Any] = {"wakeId": item["wakeId"], "ok": answer.ok}
        if answer.run_id is not None:
            outcome["runId"] = answer.run_id
        if answer.error is not None:
            outcome["error"] = answer.error
        if answer.retry_after_ms is not None:
            outcome["retryAfterMs"] = answer.retry_after_ms
        await ctx.run_mutation(internal.wakes.recordWake, outcome)
        summary["woken" if answer.ok else "failed"].append(item["agentId"])
        if not answer.ok:
            print(f"heartbeat of {item['sessionKey']} not sent (attempt {int(item['attempt'])}): {answer.error}")
    return summary


@query(args={}, returns=v.array(v.object({
    "agent": doc("agents"),
    "minute": v.number(),
    "lastWake": v.union(doc("agentWakes"), v.null()),
})))
async def schedule(ctx, args):
    """The caller's squad in wake order: each agent's minute past every quarter hour, and its latest wake."""
    caller = await current_caller(ctx)
    agents = await ctx.db.query("agents").with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id)).collect()
    return [{"agent": agent, "minute": float(minute_of(i)), "lastWake": await latest_wake(ctx, agent["_id"])}
            for i, agent in enumerate(squad_order(agents))]
