"""Seed: the spec's squad and a few channels, so a fresh deployment shows a living system.

    python -m engine run seed:run                      # tenant $NOVA_AGENT_TENANT ("default")
    python -m engine run seed:run '{"tenantId": "acme"}'

Idempotent: agents are matched by sessionKey and channels by name; running it again adds nothing.
"""

from engine import env, internal_mutation, v

from ._clock import now_ms
from ._feed import log_activity, subscribe_to_task
from ._tenancy import AGENT_TENANT_ENV, DEFAULT_AGENT_TENANT, Actor
from .agents import by_session_key

SQUAD = [
    {"name": "Nova", "role": "Squad Lead", "avatar": "🛰️", "level": "lead", "sessionKey": "agent:main:main",
     "personality": "Calm coordinator. Breaks work down, assigns it, unblocks the squad, writes the standup."},
    {"name": "Friday", "role": "Developer Agent", "avatar": "⚙️", "level": "specialist",
     "sessionKey": "agent:developer:main",
     "personality": "Pragmatic engineer. Small commits, tests first, explains trade-offs."},
    {"name": "Shuri", "role": "Product Agent", "avatar": "🔬", "level": "specialist",
     "sessionKey": "agent:product:main",
     "personality": "Curious product thinker. Tests everything, asks who it is for."},
    {"name": "Loki", "role": "Content Agent", "avatar": "✍️", "level": "specialist",
     "sessionKey": "agent:content:main",
     "personality": "Playful writer. Turns releases into stories people read."},
]

CHANNELS = [
    {"name": "general", "type": "text", "description": "Everything, together."},
    {"name": "dev-tasks", "type": "text", "description": "Engineering work and reviews."},
    {"name": "standup", "type": "text", "description": "Daily standups land here."},
    {"name": "war-room", "type": "voice", "description": "Talk it through, live."},
]


@internal_mutation(args={"tenantId": v.optional(v.string())}, returns=v.object({
    "tenantId": v.string(),
    "agentsCreated": v.number(),
    "channelsCreated": v.number(),
}))
async def run(ctx, args):
    tenant_id = args.get("tenantId") or env.get(AGENT_TENANT_ENV) or DEFAULT_AGENT_TENANT
    agents_created = channels_created = 0
    squad = {}
    for member in SQUAD:
        agent = await by_session_key(ctx, member["sessionKey"], tenant_id)
        if agent is None:
            agent_id = await ctx.db.insert("agents", {**member, "status": "idle", "tenantId": tenant_id})
            agents_created += 1
            squad[member["name"]] = agent_id
        else:
            squad[member["name"]] = agent["_id"]

    existing = {c["name"] for c in await ctx.db.query("channels")
                .with_index("by_tenant", lambda q: q.eq("tenantId", tenant_id)).collect()}
    for channel in CHANNELS:
        if channel["name"] not in existing:
            await ctx.db.insert("channels", {**channel, "tenantId": tenant_id})
            channels_created += 1

    if agents_created == len(SQUAD):  # a fresh tenant: one task in the lead's inbox to start from
        nova = Actor(squad["Nova"], "agent", "Nova")
        task_id = await ctx.db.insert("tasks", {
            "title": "Welcome the squad", "description": "Say hello in #general and plan the first sprint.",
            "status": "inbox", "assigneeIds": [], "tags": ["onboarding"], "priority": "medium",
            "progress": 0.0, "updatedAt": now_ms(), "tenantId": tenant_id,
        })
        await subscribe_to_task(ctx, task_id, nova.id, "agent", tenant_id)
        await log_activity(ctx, tenant_id, "task_created", 'Nova created "Welcome the squad"', actor=nova,
                           target_id=task_id)
    return {"tenantId": tenant_id, "agentsCreated": float(agents_created),
            "channelsCreated": float(channels_created)}
