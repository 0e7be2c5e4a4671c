"""Tasks: the kanban board, assignments, and the comment threads of the spec's "Thread Subscriptions".

Invariants kept by every mutation here:
- `tasks.assigneeIds` and the `taskAssignees` rows of a task name the same agents, and every row's
  `status` equals its task's status (assign/unassign/move maintain both), so "tasks assigned to
  agent X in status S" is one range of `taskAssignees.by_agent`;
- `updatedAt` changes with every write; `completedAt` is set exactly while the status is "done";
  `blockedReason` exists only while it is "blocked";
- the auto-subscribe rules: creating, being assigned, commenting and being @mentioned subscribe.
"""

import re

from engine import UNDEFINED, mutation, query, v

from ._clock import now_ms
from ._docs import doc
from ._errors import app_error
from ._feed import log_activity, notify, subscribe_to_task, touch_agent
from ._tenancy import current_caller, load, load_agent, resolve_actor

STATUSES = ("inbox", "assigned", "in_progress", "review", "done", "blocked", "archived")
BOARD_COLUMNS = ("inbox", "assigned", "in_progress", "review", "done", "blocked")

actor_args = {
    "actorId": v.optional(v.string()),
    "actorType": v.optional(v.union(v.literal("user"), v.literal("agent"))),
}
priority = v.union(v.literal("low"), v.literal("medium"), v.literal("high"), v.literal("urgent"))
task_with_thread = v.object({
    "task": doc("tasks"),
    "comments": v.array(doc("taskComments")),
    "assignees": v.array(doc("agents")),
})


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise app_error("INVALID_STATUS", f"{status!r} is not a task status; expected one of {', '.join(STATUSES)}.",
                        status=status)
    return status


def check_progress(progress: float) -> float:
    if not 0 <= progress <= 100:  # NaN fails too
        raise app_error("INVALID_PROGRESS", f"Progress is a percentage from 0 to 100, got {progress!r}.",
                        progress=progress)
    return float(progress)


async def actor_of(ctx, caller, args):
    return await resolve_actor(ctx, caller, args.get("actorId"), args.get("actorType"))


async def assignee_rows(ctx, task_id):
    return await ctx.db.query("taskAssignees").with_index("by_task", lambda q: q.eq("taskId", task_id)).collect()


async def set_status(ctx, task, status, fields=None):
    """Patch a task's status (and `fields`), keeping the invariants above."""
    now = now_ms()
    patch = {"status": status, "updatedAt": now, **(fields or {})}
    if status == "done":
        if task["status"] != "done":
            patch["completedAt"] = now
    elif "completedAt" in task:
        patch["completedAt"] = UNDEFINED
    if status != "blocked" and "blockedReason" in task:
        patch["blockedReason"] = UNDEFINED
    await ctx.db.patch(task["_id"], patch)
    if status != task["status"]:
        for row in await assignee_rows(ctx, task["_id"]):
            await ctx.db.patch(row["_id"], {"status": status})


# -- queries ------------------------------------------------------------------------------------


@query(args={"status": v.optional(v.string())}, returns=v.array(doc("tasks")))
async def list(ctx, args):
    """The tenant's tasks in one status, or every task not archived (oldest first)."""
    caller = await current_caller(ctx)
    if "status" in args:
        status = check_status(args["status"])
        return await (ctx.db.query("tasks")
                      .with_index("by_status", lambda q: q.eq("status", status).eq("tenantId", caller.tenant_id))
                      .collect())
    return await (ctx.db.query("tasks")
                  .with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id))
                  .filter(lambda q: q.neq(q.field("status"), "archived"))
                  .collect())


@query(args={}, returns=v.object({c: v.array(doc("tasks")) for c in BOARD_COLUMNS}))
async def board(ctx, args):
    """The kanban: one column per status (archived tasks are off the board)."""
    caller = await current_caller(ctx)
    columns = {}
    for status in BOARD_COLUMNS:
        columns[status] = await (ctx.db.query("tasks")
                                 .with_index("by_status", lambda q: q.eq("status", status).eq("tenantId", caller.tenant_id))
                                 .collect())
    return columns


@query(args={"id": v.string()}, returns=task_with_thread)
async def get(ctx, args):
    """A task with its comments (oldest first) and its assignees."""
    caller = await current_caller(ctx)
    task = await load(ctx, "tasks", args["id"], caller.tenant_id)
    comments = await (ctx.db.query("taskComments")
                      .with_index("by_task", lambda q: q.eq("taskId", task["_id"]))
                      .collect())
    assignees = [a for a in [await ctx.db.get(i) for i in task["assigneeIds"]] if a is not None]
    return {"task": task, "comments": comments, "assignees": assignees}


@query(args={"id": v.string()}, returns=v.array(doc("threadSubscriptions")))
async def subscribers(ctx, args):
    """Who follows a task's thread, in subscription order."""
    caller = await current_caller(ctx)
    task = await load(ctx, "tasks", args["id"], caller.tenant_id)
    return await (ctx.db.query("threadSubscriptions")
                  .with_index("by_task", lambda q: q.eq("taskId", task["_id"]))
                  .collect())


@query(args={"agentId": v.string(), "status": v.optional(v.string())}, returns=v.array(doc("tasks")))
async def listForAgent(ctx, args):
    """Tasks assigned to an agent (optionally in one status), in assignment order."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    status = check_status(args["status"]) if "status" in args else None
    return await assigned_tasks(ctx, caller.tenant_id, agent["_id"], status)


async def assigned_tasks(ctx, tenant_id, agent_id, status=None):
    def by_agent(q):
        q = q.eq("tenantId", tenant_id).eq("agentId", agent_id)
        return q.eq("status", status) if status is not None else q
    rows = await ctx.db.query("taskAssignees").with_index("by_agent", by_agent).collect()
    tasks = [await ctx.db.get(row["taskId"]) for row in rows]
    return [t for t in tasks if t is not None]


# -- mutations ----------------------------------------------------------------------------------


@mutation(args={
    "title": v.string(),
    "description": v.optional(v.string()),
    "priority": v.optional(priority),
    "tags": v.optional(v.array(v.string())),
    "assigneeIds": v.optional(v.array(v.string())),
    "channelId": v.optional(v.string()),
    "borderColor": v.optional(v.string()),
    "openclawRunId": v.optional(v.string()),
    **actor_args,
}, returns=v.id("tasks"))
async def create(ctx, args):
    """Create a task in "inbox" ("assigned" when it has assignees); the creator is subscribed."""
    caller = await current_caller(ctx)
    creator = await actor_of(ctx, caller, args)
    if not args["title"].strip():
        raise app_error("EMPTY_CONTENT", "A task needs a title.")
    assignees = []
    for agent_id in args.get("assigneeIds", []):
        agent = await load_agent(ctx, agent_id, caller.tenant_id)
        if agent not in assignees:
            assignees.append(agent)
    task = {
        "title": args["title"],
        "description": args.get("description", ""),
        "status": "assigned" if assignees else "inbox",
        "assigneeIds": [a["_id"] for a in assignees],
        "tags": args.get("tags", []),
        "priority": args.get("priority", "medium"),
        "progress": 0.0,
        "updatedAt": now_ms(),
        "tenantId": caller.tenant_id,
    }
    if "channelId" in args:
        task["channelId"] = (await load(ctx, "channels", args["channelId"], caller.tenant_id))["_id"]
    for key in ("borderColor", "openclawRunId"):
        if key in args:
            task[key] = args[key]
    task_id = await ctx.db.insert("tasks", task)
    await subscribe_to_task(ctx, task_id, creator.id, creator.type, caller.tenant_id)
    await log_activity(ctx, caller.tenant_id, "task_created", f'{creator.name} created "{task["title"]}"',
                       actor=creator, target_id=task_id)
    for agent in assignees:
        await record_assignment(ctx, {**task, "_id": task_id}, agent, creator)
    await touch_agent(ctx, creator)
    return task_id


@mutation(args={
    "id": v.string(),
    "title": v.optional(v.string()),
    "description": v.optional(v.string()),
    "tags": v.optional(v.array(v.string())),
    "priority": v.optional(priority),
    "channelId": v.optional(v.union(v.string(), v.null())),
    "openclawRunId": v.optional(v.string()),
    **actor_args,
}, returns=v.null())
async def update(ctx, args):
    caller = await current_caller(ctx)
    actor = await actor_of(ctx, caller, args)
    task = await load(ctx, "tasks", args["id"], caller.tenant_id)
    fields = {k: args[k] for k in ("title", "description", "tags", "priority", "openclawRunId") if k in args}
    if "title" in fields and not fields["title"].strip():
        raise app_error("EMPTY_CONTENT", "A task needs a title.")
    if "channelId" in args:
        fields["channelId"] = (UNDEFINED if args["channelId"] is None
                               else (await load(ctx, "channels", args["channelId"], caller.tenant_id))["_id"])
    await ctx.db.patch(task["_id"], {**fields, "updatedAt": now_ms()})
    await touch_agent(ctx, actor)
    return None


async def move_task(ctx, caller, args, status):
    status = check_status(status)
    actor = await actor_of(ctx, caller, args)
    task = await load(ctx, "tasks", args["id"], caller.tenant_id)
    fields = {"blockedReason": args["reason"]} if status == "blocked" and "reason" in args else {}
    await set_status(ctx, task, status, fields)
    if status != task["status"]:
        if status == "done":
            await log_activity(ctx, caller.tenant_id, "task_completed", f'{actor.name} completed "{task["title"]}"',
                               actor=actor, target_id=task["_id"])
        else:
            await log_activity(ctx, caller.tenant_id, "task_moved",
                               f'{actor.name} moved "{task["title"]}" to {status}', actor=actor,
                               target_id=task["_id"], metadata={"from": task["status"], "to": status})
    await touch_agent(ctx, actor)


@mutation(args={"id": v.string(), "status": v.string(), "reason": v.optional(v.string()), **actor_args},
          returns=v.null())
async def move(ctx, args):
    """Move a task to another column: activity `task_completed` for "done", else `task_moved`.
    `reason` explains a move to "blocked" (the standup shows it)."""
    caller = await current_caller(ctx)
    await move_task(ctx, caller, args, args["status"])
    return None


@mutation(args={"id": v.string(), **actor_args}, returns=v.null())
async def archive(ctx, args):
    """Take a task off the board (status "archived")."""
    caller = await current_caller(ctx)
    await move_task(ctx, caller, args, "archived")
    return None


async def record_assignment(ctx, task, agent, actor):
    """The assignee's row, subscription, notification and activity (task already lists the agent)."""
    await ctx.db.insert("taskAssignees", {
        "taskId": task["_id"], "agentId": agent["_id"], "status": task["status"], "tenantId": task["tenantId"],
    })
    await subscribe_to_task(ctx, task["_id"], agent["_id"], "agent", task["tenantId"])
    await notify(ctx, task["tenantId"], agent["_id"], "agent", f'You were assigned "{task["title"]}"',
                 "assignment", task["_id"])
    await log_activity(ctx, task["tenantId"], "task_assigned", f'{actor.name} assigned "{task["title"]}" to {agent["name"]}',
                       actor=actor, target_id=task["_id"], metadata={"assigneeId": agent["_id"]})


@mutation(args={"taskId": v.string(), "agentId": v.string(), **actor_args}, returns=v.null())
async def assign(ctx, args):
    """Add an assignee (no-op if already assigned); an inbox task moves to "assigned"."""
    caller = await current_caller(ctx)
    actor = await actor_of(ctx, caller, args)
    task = await load(ctx, "tasks", args["taskId"], caller.tenant_id)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    if agent["_id"] in task["assigneeIds"]:
        return None
    status = "assigned" if task["status"] == "inbox" else task["status"]
    await set_status(ctx, task, status, {"assigneeIds": [*task["assigneeIds"], agent["_id"]]})
    await record_assignment(ctx, {**task, "status": status}, agent, actor)
    await touch_agent(ctx, actor)
    return None


@mutation(args={"taskId": v.string(), "agentId": v.string(), **actor_args}, returns=v.null())
async def unassign(ctx, args):
    """Remove an assignee (no-op if not assigned); an "assigned" task left without one returns to the inbox.
    The agent stays subscribed to the thread."""
    caller = await current_caller(ctx)
    actor = await actor_of(ctx, caller, args)
    task = await load(ctx, "tasks", args["taskId"], caller.tenant_id)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    if agent["_id"] not in task["assigneeIds"]:
        return None
    remaining = [a for a in task["assigneeIds"] if a != agent["_id"]]
    for row in await assignee_rows(ctx, task["_id"]):
        if row["agentId"] == agent["_id"]:
            await ctx.db.delete(row["_id"])
    status = "inbox" if not remaining and task["status"] == "assigned" else task["status"]
    await set_status(ctx, task, status, {"assigneeIds": remaining})
    await touch_agent(ctx, actor)
    return None


@mutation(args={"id": v.string(), "progress": v.number(), **actor_args}, returns=v.null())
async def setProgress(ctx, args):
    caller = await current_caller(ctx)
    progress = check_progress(args["progress"])
    actor = await actor_of(ctx, caller, args)
    task = await load(ctx, "tasks", args["id"], caller.tenant_id)
    await ctx.db.patch(task["_id"], {"progress": progress, "updatedAt": now_ms()})
    await touch_agent(ctx, actor)
    return None


@mutation(args={"id": v.string(), "borderColor": v.union(v.string(), v.null())}, returns=v.null())
async def setBorderColor(ctx, args):
    """A card's border colour (any CSS colour); null removes it."""
    caller = await current_caller(ctx)
    task = await load(ctx, "tasks", args["id"], caller.tenant_id)
    color = args["borderColor"]
    await ctx.db.patch(task["_id"], {"borderColor": UNDEFINED if color is None else color, "updatedAt": now_ms()})
    return None


# -- comments (the spec's "Thread Subscriptions") -------------------------------------------------

MENTION = re.compile(r"(?<![\w@.])@([A-Za-z0-9_][A-Za-z0-9_-]*)")
DECISION = re.compile(r"^\s*decision:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def parse_mentions(content: str):
    """`@Name` tokens, lower-cased, in order, once each (an e-mail address is not a mention)."""
    seen = []
    for name in MENTION.findall(content):
        if name.lower() not in seen:
            seen.append(name.lower())
    return seen


async def mentioned_agents(ctx, tenant_id, content):
    """The squad members the content @mentions: names match case-insensitively, `@all` is everyone,
    unknown names are ignored."""
    names = parse_mentions(content)
    if not names:
        return []
    squad = await ctx.db.query("agents").with_index("by_tenant", lambda q: q.eq("tenantId", tenant_id)).collect()
    if "all" in names:
        return squad
    return [a for a in squad if a["name"].lower() in names]


async def create_mention_notification(ctx, agent, task, author):
    await subscribe_to_task(ctx, task["_id"], agent["_id"], "agent", task["tenantId"])
    await notify(ctx, task["tenantId"], agent["_id"], "agent", f'{author.name} mentioned you on "{task["title"]}"',
                 "mention", task["_id"])


@mutation(args={
    "taskId": v.string(),
    "authorId": v.string(),
    "authorType": v.union(v.literal("user"), v.literal("agent")),
    "content": v.string(),
    "attachments": v.optional(v.array(v.string())),
}, returns=v.id("taskComments"))
async def addComment(ctx, args):
    caller = await current_caller(ctx)
    task = await load(ctx, "tasks", args["taskId"], caller.tenant_id)
    author = await resolve_actor(ctx, caller, args["authorId"], args["authorType"])
    if not args["content"].strip():
        raise app_error("EMPTY_CONTENT", "A comment needs content.")
    comment = {
        "taskId": task["_id"],
        "authorId": author.id,
        "authorType": author.type,
        "content": args["content"],
        "tenantId": caller.tenant_id,
    }
    if "attachments" in args:
        comment["attachments"] = [(await load(ctx, "documents", d, caller.tenant_id))["_id"]
                                  for d in args["attachments"]]
    # Add comment
    comment_id = await ctx.db.insert("taskComments", comment)

    # Auto-subscribe author
    await subscribe_to_task(ctx, task["_id"], author.id, author.type, caller.tenant_id)

    # Get all subscribers
    subscribers = await (ctx.db.query("threadSubscriptions")
                         .with_index("by_task", lambda q: q.eq("taskId", task["_id"]))
                         .collect())

    # Create notifications for all except author
    for sub in subscribers:
        if sub["subscriberId"] != author.id:
            await notify(ctx, caller.tenant_id, sub["subscriberId"], sub["subscriberType"],
                         f'New comment on "{task["title"]}"', "thread", task["_id"])

    # Parse @mentions and notify those too
    for agent in await mentioned_agents(ctx, caller.tenant_id, args["content"]):
        if agent["_id"] != author.id:
            await create_mention_notification(ctx, agent, task, author)

    # "Decision: ..." lines become the standup's key decisions.
    decisions = DECISION.findall(args["content"])
    await log_activity(ctx, caller.tenant_id, "comment", f'{author.name} commented on "{task["title"]}"',
                       actor=author, target_id=task["_id"],
                       metadata={"commentId": comment_id, **({"decisions": decisions} if decisions else {})})
    await ctx.db.patch(task["_id"], {"updatedAt": now_ms()})
    await touch_agent(ctx, author)
    return comment_id
