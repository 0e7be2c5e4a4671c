"""What every write leaves behind: activity-feed events, thread subscriptions and notifications.

The spec's helpers `subscribeToTask` / notifications inserts, shared by tasks, messages, documents
and standups. All take the tenant explicitly; callers have already checked access.
"""

from typing import Any

from ._clock import now_ms
from ._tenancy import Actor


async def log_activity(ctx: Any, tenant_id: str, type: str, message: str, *, actor: Actor | None = None,
                       target_id: str | None = None, target_type: str | None = None,
                       metadata: Any = None) -> str:
    activity: dict[str, Any] = {"type": type, "message": message, "tenantId": tenant_id}
    if actor is not None:
        activity.update(actor.activity_fields())
    if target_id is not None:
        activity["targetId"] = target_id
        activity["targetType"] = target_type or "task"
    if metadata is not None:
        activity["metadata"] = metadata
    return await ctx.db.insert("activities", activity)


async def subscribe_to_task(ctx: Any, task_id: str, subscriber_id: str, subscriber_type: str,
                            tenant_id: str) -> bool:
    """Subscribe once; True when a subscription was added."""
    existing = await (ctx.db.query("threadSubscriptions")
                      .with_index("by_task", lambda q: q.eq("taskId", task_id))
                      .filter(lambda q: q.eq(q.field("subscriberId"), subscriber_id))
                      .first())
    if existing is not None:
        return False
    await ctx.db.insert("threadSubscriptions", {
        "taskId": task_id,
        "subscriberId": subscriber_id,
        "subscriberType": subscriber_type,
        "tenantId": tenant_id,
    })
    return True


async def notify(ctx: Any, tenant_id: str, recipient_id: str, recipient_type: str, content: str,
                 source_type: str, source_id: str | None = None) -> str:
    notification: dict[str, Any] = {
        "recipientId": recipient_id,
        "recipientType": recipient_type,
        "content": content,
        "sourceType": source_type,
        "delivered": False,
        "tenantId": tenant_id,
    }
    if source_id is not None:
        notification["sourceId"] = source_id
    return await ctx.db.insert("notifications", notification)


async def touch_agent(ctx: Any, actor: Actor) -> None:
    """Keep `agents.lastActiveAt`: an agent that writes anything is active now."""
    if actor.type == "agent":
        await ctx.db.patch(actor.id, {"lastActiveAt": now_ms()})
