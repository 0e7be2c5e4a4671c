"""Notifications to agents: undelivered agent notifications pushed to OpenClaw's `/hooks/agent`.

    delivery:deliverDue   (internal action) run by the cron every minute and by POST /notifications/deliver

Each notification is one `POST {OPENCLAW_GATEWAY_URL}/hooks/agent` with
`{message, sessionKey, agentId, wakeMode: "now", deliver: false}`, `Authorization: Bearer
$OPENCLAW_HOOKS_TOKEN` and `Idempotency-Key: nova-notification-<id>` (stable: a retry after a lost
answer is the same request to the gateway).

Invariants:
- `delivered` turns true only after a 2xx answer (with `deliveredAt`, and the gateway's `runId`
  as `openclawRunId`, so the run it starts is recognised by the event hook);
- a failure never loses a notification: it stays undelivered with `deliveryAttempts`,
  `lastDeliveryError` and `nextAttemptAt` (back-off: 30 s doubling per attempt up to 1 h; a
  `Retry-After` of a 429/503 is honoured when longer). Nothing is ever given up;
- claiming is a mutation that pushes `nextAttemptAt` a lease (2 min) ahead before the POST, so the
  cron and the HTTP trigger never send one notification at the same time, and a crash mid-POST
  only delays it until the lease ends (the retry reuses the Idempotency-Key);
- unconfigured (no OPENCLAW_GATEWAY_URL / OPENCLAW_HOOKS_TOKEN): nothing is claimed or written.
"""

from __future__ import annotations

from typing import Any

from engine import internal, internal_action, internal_mutation, v

from ._clock import now_ms
from ._gateway import GatewayAnswer, agent_id_of, configured, missing_settings, post_agent_hook
from .openclaw import NOTIFICATION_PREFIX

MAX_PER_RUN = 200
GATEWAY_UNAVAILABLE = (429, 502, 503, 504)
LEASE_MS = 120_000.0
BASE_BACKOFF_MS = 30_000.0
MAX_BACKOFF_MS = 3_600_000.0

claimed = v.object({
    "id": v.id("notifications"),
    "sessionKey": v.string(),
    "message": v.string(),
    "attempt": v.number(),
})


def backoff_ms(attempts: int, retry_after_ms: float | None = None) -> float:
    """The wait after the `attempts`-th failed attempt."""
    delay = min(MAX_BACKOFF_MS, BASE_BACKOFF_MS * 2 ** max(0, attempts - 1))
    if retry_after_ms is not None:
        delay = max(delay, min(retry_after_ms, MAX_BACKOFF_MS))
    return delay


def message_for(notification: dict[str, Any]) -> str:
    lines = [f"{NOTIFICATION_PREFIX} {notification['content']}", f"Kind: {notification['sourceType']}"]
    if notification.get("sourceId"):
        lines.append(f"About: {notification['sourceId']}")
    lines.append(f"Notification: {notification['_id']}")
    return "\n".join(lines)


def idempotency_key(notification_id: str) -> str:
    return f"nova-notification-{notification_id}"


@internal_mutation(args={"limit": v.number()}, returns=v.array(claimed))
async def claimDue(ctx, args):
    """Up to `limit` agent notifications due for an attempt (never tried first, then the oldest
    `nextAttemptAt`), each leased for LEASE_MS and counted as an attempt."""
    now = now_ms()
    due = await (ctx.db.query("notifications")
                 .with_index("by_delivery", lambda q: q.eq("recipientType", "agent").eq("delivered", False)
                             .lte("nextAttemptAt", now))
                 .take(int(args["limit"])))
    out = []
    for notification in due:
        attempt = int(notification.get("deliveryAttempts", 0)) + 1
        agent_id = ctx.db.normalize_id("agents", notification["recipientId"])
        agent = await ctx.db.get(agent_id) if agent_id is not None else None
        if agent is None or agent["tenantId"] != notification["tenantId"]:
            # Kept, not dropped: it is retried rarely in case the agent's id becomes valid (an import).
            await ctx.db.patch(notification["_id"], {
                "deliveryAttempts": float(attempt), "nextAttemptAt": now + MAX_BACKOFF_MS,
                "lastDeliveryError": f"no agent {notification['recipientId']!r} in the tenant"})
            continue
        await ctx.db.patch(notification["_id"], {"deliveryAttempts": float(attempt), "nextAttemptAt": now + LEASE_MS})
        out.append({"id": notification["_id"], "sessionKey": agent["sessionKey"],
                    "message": message_for(notification), "attempt": float(attempt)})
    return out


@internal_mutation(args={
    "id": v.id("notifications"),
    "ok": v.boolean(),
    "runId": v.optional(v.string()),
    "error": v.optional(v.string()),
    "retryAfterMs": v.optional(v.number()),
}, returns=v.null())
async def recordDelivery(ctx, args):
    notification = await ctx.db.get(args["id"])
    if notification is None:
        return None
    now = now_ms()
    if args["ok"]:
        fields: dict[str, Any] = {"delivered": True, "deliveredAt": now}
        if "runId" in args:
            fields["openclawRunId"] = args["runId"]
        await ctx.db.patch(notification["_id"], fields)
        return None
    if notification["delivered"]:
        return None  # delivered meanwhile (read by a human, marked by the agent)
    attempts = int(notification.get("deliveryAttempts", 1))
    await ctx.db.patch(notification["_id"], {
        "nextAttemptAt": now + backoff_ms(attempts, args.get("retryAfterMs")),
        "lastDeliveryError": (args.get("error") or "failed")[:500],
    })
    return None


def _outcome(item: dict[str, Any], answer: GatewayAnswer) -> dict[str, Any]:
    outcome: dict[str, Any] = {"id": item["id"], "ok": answer.ok}
    if answer.run_id is not None:
        outcome["runId"] = answer.run_id
    if answer.error is not None:
        outcome["error"] = answer.error
    if answer.retry_after_ms is not None:
        outcome["retryAfterMs"] = answer.retry_after_ms
    return outcome


@internal_action(args={}, returns=v.object({
    "configured": v.boolean(),
    "attempted": v.number(),
    "delivered": v.number(),
    "failed": v.number(),
    "missing": v.array(v.string()),
}))
async def deliverDue(ctx, args):
    """Send every due agent notification (at most MAX_PER_RUN per run); returns counts."""
    summary: dict[str, Any] = {"configured": configured(), "attempted": 0.0, "delivered": 0.0, "failed": 0.0,
                               "missing": missing_settings()}
    if not summary["configured"]:
        return summary
    # One claim at a time: when the gateway itself is unavailable (no answer, throttled,
    # restarting), the run stops and the others keep their turn instead of each burning an attempt.
    while summary["attempted"] < MAX_PER_RUN:
        batch = await ctx.run_mutation(internal.delivery.claimDue, {"limit": 1.0})
        if not batch:
            break
        item = batch[0]
        body = {"message": item["message"], "sessionKey": item["sessionKey"], "wakeMode": "now",
                "deliver": False, "name": "Nova Command"}
        agent_id = agent_id_of(item["sessionKey"])
        if agent_id is not None:
            body["agentId"] = agent_id
        answer = await post_agent_hook(body, idempotency_key(item["id"]))
        await ctx.run_mutation(internal.delivery.recordDelivery, _outcome(item, answer))
        summary["attempted"] += 1
        summary["delivered" if answer.ok else "failed"] += 1
        if not answer.ok:
            print(f"notification {item['id']} not delivered (attempt {int(item['attempt'])}): {answer.error}")
            if answer.status is None or answer.status in GATEWAY_UNAVAILABLE:
                break
    return summary
