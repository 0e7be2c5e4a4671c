"""Search across Nova Command: messages, tasks, documents, task comments and agent memory.

    await client.query("search:all", {"query": "auth token"})
    # {"messages": [...], "tasks": [...], "documents": [...], "comments": [...], "memory": [...]}
    await client.query("search:tasks", {"query": "auth", "status": "review", "limit": 20})

Every search runs on the caller's tenant only (each search index filters by `tenantId` first) and
is a query, so a subscribed search re-runs when a matching document is written, and only then.
Results are in relevance order (Convex's full-text rules: whole words, the last word also as a
prefix, so search-as-you-type works). Tasks and documents are searched by title and by text: a
title match ranks before a text-only match. Memory results leave out the stored embedding.
For recall by meaning rather than words, see `memory:recall` (an action).
"""

from engine import query, v

from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller, load, load_agent
from .tasks import check_status

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
MEMORY_TYPES = ("working", "daily", "longterm")


def _limit(args) -> int:
    limit = args.get("limit", DEFAULT_LIMIT)
    if not 1 <= limit <= MAX_LIMIT:
        raise app_error("INVALID_ARGUMENTS", f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}.")
    return int(limit)


async def _search(ctx, table, index, field, text, limit, **eqs):
    def build(q):
        q = q.search(field, text)
        for name, value in eqs.items():
            q = q.eq(name, value)
        return q
    return await ctx.db.query(table).with_search_index(index, build).take(limit)


async def _two_fields(ctx, table, first, second, text, limit, **eqs):
    """Title matches first, then text-only matches, each in relevance order, without repeats."""
    out = await _search(ctx, table, first[0], first[1], text, limit, **eqs)
    seen = {d["_id"] for d in out}
    if len(out) < limit:
        for d in await _search(ctx, table, second[0], second[1], text, limit, **eqs):
            if d["_id"] not in seen:
                out.append(d)
                seen.add(d["_id"])
                if len(out) >= limit:
                    break
    return out


def _memory(m):
    return {k: x for k, x in m.items() if k not in ("embedding", "embeddingModel")}


async def messages_of(ctx, tenant, text, limit, channel_id=None):
    eqs = {"tenantId": tenant}
    if channel_id is not None:
        eqs["channelId"] = channel_id
    return await _search(ctx, "messages", "search_content", "content", text, limit, **eqs)


async def tasks_of(ctx, tenant, text, limit, status=None):
    eqs = {"tenantId": tenant}
    if status is not None:
        eqs["status"] = status
    return await _two_fields(ctx, "tasks", ("search_title", "title"), ("search_description", "description"), text,
                             limit, **eqs)


async def documents_of(ctx, tenant, text, limit, type=None):
    eqs = {"tenantId": tenant}
    if type is not None:
        eqs["type"] = type
    return await _two_fields(ctx, "documents", ("search_title", "title"), ("search_content", "content"), text,
                             limit, **eqs)


async def comments_of(ctx, tenant, text, limit, task_id=None):
    eqs = {"tenantId": tenant}
    if task_id is not None:
        eqs["taskId"] = task_id
    return await _search(ctx, "taskComments", "search_content", "content", text, limit, **eqs)


async def memory_of(ctx, tenant, text, limit, agent_id=None, type=None):
    eqs = {"tenantId": tenant}
    if agent_id is not None:
        eqs["agentId"] = agent_id
    if type is not None:
        eqs["type"] = type
    return [_memory(m) for m in await _search(ctx, "agentMemory", "search_content", "content", text, limit, **eqs)]


def _memory_doc():
    fields = dict(doc("agentMemory").fields)
    fields.pop("embedding", None)
    fields.pop("embeddingModel", None)
    return v.object(fields)


@query(args={"query": v.string(), "limit": v.optional(v.number())},
       returns=v.object({"messages": v.array(doc("messages")), "tasks": v.array(doc("tasks")),
                         "documents": v.array(doc("documents")), "comments": v.array(doc("taskComments")),
                         "memory": v.array(_memory_doc())}))
async def all(ctx, args):
    """Everything of the caller's tenant that matches `query`, per kind, best first (up to `limit`
    of each, default 10)."""
    caller = await current_caller(ctx)
    limit = _limit(args)
    text = args["query"]
    tenant = caller.tenant_id
    return {
        "messages": await messages_of(ctx, tenant, text, limit),
        "tasks": await tasks_of(ctx, tenant, text, limit),
        "documents": await documents_of(ctx, tenant, text, limit),
        "comments": await comments_of(ctx, tenant, text, limit),
        "memory": await memory_of(ctx, tenant, text, limit),
    }


@query(args={"query": v.string(), "channelId": v.optional(v.string()), "limit": v.optional(v.number())},
       returns=v.array(doc("messages")))
async def messages(ctx, args):
    caller = await current_caller(ctx)
    channel_id = None
    if "channelId" in args:
        channel_id = (await load(ctx, "channels", args["channelId"], caller.tenant_id))["_id"]
    return await messages_of(ctx, caller.tenant_id, args["query"], _limit(args), channel_id)


@query(args={"query": v.string(), "status": v.optional(v.string()), "limit": v.optional(v.number())},
       returns=v.array(doc("tasks")))
async def tasks(ctx, args):
    caller = await current_caller(ctx)
    status = check_status(args["status"]) if "status" in args else None
    return await tasks_of(ctx, caller.tenant_id, args["query"], _limit(args), status)


@query(args={"query": v.string(), "type": v.optional(v.string()), "limit": v.optional(v.number())},
       returns=v.array(doc("documents")))
async def documents(ctx, args):
    caller = await current_caller(ctx)
    return await documents_of(ctx, caller.tenant_id, args["query"], _limit(args), args.get("type"))


@query(args={"query": v.string(), "taskId": v.optional(v.string()), "limit": v.optional(v.number())},
       returns=v.array(doc("taskComments")))
async def comments(ctx, args):
    caller = await current_caller(ctx)
    task_id = None
    if "taskId" in args:
        task_id = (await load(ctx, "tasks", args["taskId"], caller.tenant_id))["_id"]
    return await comments_of(ctx, caller.tenant_id, args["query"], _limit(args), task_id)


@query(args={"query": v.string(), "agentId": v.optional(v.string()), "type": v.optional(v.string()),
             "limit": v.optional(v.number())},
       returns=v.array(_memory_doc()))
async def memory(ctx, args):
    caller = await current_caller(ctx)
    agent_id = None
    if "agentId" in args:
        agent_id = (await load_agent(ctx, args["agentId"], caller.tenant_id))["_id"]
    memory_type = args.get("type")
    if memory_type is not None and memory_type not in MEMORY_TYPES:
        raise app_error("INVALID_ARGUMENTS", f"Unknown memory type {memory_type!r}.")
    return await memory_of(ctx, caller.tenant_id, args["query"], _limit(args), agent_id, memory_type)
