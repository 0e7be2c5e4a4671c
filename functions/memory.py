"""Agent memory: WORKING.md (one `working` document per agent), daily notes, MEMORY.md (long-term).

A daily note is one document per (agent, UTC date). Appending to it adds a timestamped entry, creating
the note with its heading on the day's first entry:

    # January 31, 2026

    ## 09:15 UTC
    - Started auth token fix task
    - Found issue in auth.ts

Recall by meaning (issue 12): every write of a memory's content removes its stale `embedding` and
schedules `memory:embedMemory` (an action: the embedder may be a network service), which stores
the new one unless the content changed again meanwhile. `memory:recall` embeds the question and
asks the `by_embedding` vector index of the caller's tenant (or of one agent) for the closest
memories. The embedder is functions/_embedding.py's (offline by default, a service when
configured); `memory:embedMissing` fills in memories without an embedding from the current one.
"""

import hashlib

from engine import UNDEFINED, action, internal, internal_action, internal_mutation, internal_query, mutation, query, v

from ._clock import long_date, now_ms, parse_date, utc_date, utc_hhmm
from ._docs import doc
from ._embedding import embedder_from_env
from ._errors import app_error
from ._tenancy import current_caller, load_agent

RECALL_MAX = 50


def _content_hash(content: str) -> str:
    return hashlib.sha256(content.encode()).hexdigest()


async def _embed_later(ctx, memory_id):
    await ctx.scheduler.run_after(0, internal.memory.embedMemory, {"memoryId": memory_id})


async def memory_of(ctx, agent_id, type, date=None):
    def by_agent_date(q):
        q = q.eq("agentId", agent_id).eq("type", type)
        return q.eq("date", date) if date is not None else q
    return await ctx.db.query("agentMemory").with_index("by_agent_date", by_agent_date).first()


async def replace_memory(ctx, agent, type, content):
    existing = await memory_of(ctx, agent["_id"], type)
    if existing is not None:
        await ctx.db.patch(existing["_id"], {"content": content, "embedding": UNDEFINED, "embeddingModel": UNDEFINED})
        memory_id = existing["_id"]
    else:
        memory_id = await ctx.db.insert("agentMemory", {
            "agentId": agent["_id"], "type": type, "content": content, "tenantId": agent["tenantId"],
        })
    await _embed_later(ctx, memory_id)
    return memory_id


# -- WORKING.md ---------------------------------------------------------------------------------


@query(args={"agentId": v.string()}, returns=v.union(v.string(), v.null()))
async def getWorking(ctx, args):
    """The agent's WORKING.md, or null before it has one."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    memory = await memory_of(ctx, agent["_id"], "working")
    return memory["content"] if memory is not None else None


@mutation(args={"agentId": v.string(), "content": v.string()}, returns=v.id("agentMemory"))
async def setWorking(ctx, args):
    """Replace WORKING.md as a whole (the agent rewrites its current task state)."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    return await replace_memory(ctx, agent, "working", args["content"])


# -- daily notes --------------------------------------------------------------------------------


@mutation(args={"agentId": v.string(), "content": v.string()},
          returns=v.object({"id": v.id("agentMemory"), "date": v.string(), "time": v.string()}))
async def appendDaily(ctx, args):
    """Append `## HH:MM UTC` and `content` (markdown, usually "- " bullets) to today's note."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    entry = args["content"].strip("\n")
    if not entry.strip():
        raise app_error("EMPTY_CONTENT", "A daily note entry needs content.")
    now = now_ms()
    date, time = utc_date(now), utc_hhmm(now)
    section = f"## {time} UTC\n{entry}\n"
    note = await memory_of(ctx, agent["_id"], "daily", date)
    if note is None:
        note_id = await ctx.db.insert("agentMemory", {
            "agentId": agent["_id"], "type": "daily", "date": date,
            "content": f"# {long_date(date)}\n\n{section}", "tenantId": agent["tenantId"],
        })
    else:
        note_id = note["_id"]
        await ctx.db.patch(note_id, {"content": note["content"].rstrip("\n") + "\n\n" + section,
                                     "embedding": UNDEFINED, "embeddingModel": UNDEFINED})
    await _embed_later(ctx, note_id)
    return {"id": note_id, "date": date, "time": time}


@query(args={"agentId": v.string(), "date": v.string()}, returns=v.union(v.string(), v.null()))
async def getDaily(ctx, args):
    """One day's note ("2026-01-31"), or null."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    parse_date(args["date"])
    note = await memory_of(ctx, agent["_id"], "daily", args["date"])
    return note["content"] if note is not None else None


@query(args={"agentId": v.string(), "limit": v.optional(v.number())}, returns=v.array(doc("agentMemory")))
async def listDaily(ctx, args):
    """The agent's daily notes, newest date first."""
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    notes = (ctx.db.query("agentMemory")
             .with_index("by_agent_date", lambda q: q.eq("agentId", agent["_id"]).eq("type", "daily"))
             .order("desc"))
    if "limit" in args:
        if not 0 <= args["limit"] <= 1000:
            raise app_error("INVALID_ARGUMENTS", f"limit must be between 0 and 1000, got {args['limit']!r}.")
        return [_without_embedding(n) for n in await notes.take(int(args["limit"]))]
    return [_without_embedding(n) for n in await notes.collect()]


# -- MEMORY.md ----------------------------------------------------------------------------------


@query(args={"agentId": v.string()}, returns=v.union(v.string(), v.null()))
async def getLongTerm(ctx, args):
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    memory = await memory_of(ctx, agent["_id"], "longterm")
    return memory["content"] if memory is not None else None


@mutation(args={"agentId": v.string(), "content": v.string()}, returns=v.id("agentMemory"))
async def setLongTerm(ctx, args):
    caller = await current_caller(ctx)
    agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
    return await replace_memory(ctx, agent, "longterm", args["content"])


# -- recall by meaning ----------------------------------------------------------------------------


def _without_embedding(memory):
    return {k: x for k, x in memory.items() if k not in ("embedding", "embeddingModel")}


@internal_query(args={"memoryId": v.id("agentMemory")},
                returns=v.union(v.null(), v.object({"content": v.string(), "model": v.union(v.string(), v.null())})))
async def contentOf(ctx, args):
    memory = await ctx.db.get(args["memoryId"])
    return None if memory is None else {"content": memory["content"], "model": memory.get("embeddingModel")}


@internal_mutation(args={"memoryId": v.id("agentMemory"), "embedding": v.array(v.float64()), "model": v.string(),
                         "contentHash": v.string()}, returns=v.boolean())
async def storeEmbedding(ctx, args):
    """Store an embedding made from the content with `contentHash`; false if the content moved on."""
    memory = await ctx.db.get(args["memoryId"])
    if memory is None or _content_hash(memory["content"]) != args["contentHash"]:
        return False
    await ctx.db.patch(memory["_id"], {"embedding": args["embedding"], "embeddingModel": args["model"]})
    return True


@internal_action(args={"memoryId": v.id("agentMemory")}, returns=v.boolean())
async def embedMemory(ctx, args):
    memory = await ctx.run_query(internal.memory.contentOf, {"memoryId": args["memoryId"]})
    if memory is None:
        return False
    embedder = embedder_from_env()
    [vector] = await embedder.embed([memory["content"]])
    return await ctx.run_mutation(internal.memory.storeEmbedding, {
        "memoryId": args["memoryId"], "embedding": vector, "model": embedder.model,
        "contentHash": _content_hash(memory["content"])})


@internal_query(args={"model": v.string(), "limit": v.number()}, returns=v.array(v.id("agentMemory")))
async def missingEmbeddings(ctx, args):
    out = []
    async for memory in ctx.db.query("agentMemory"):
        if memory.get("embeddingModel") != args["model"]:
            out.append(memory["_id"])
            if len(out) >= args["limit"]:
                break
    return out


@internal_action(args={"limit": v.optional(v.number())}, returns=v.number())
async def embedMissing(ctx, args):
    """Embed memories that have no embedding from the current embedder (after switching embedders,
    or for memories written before recall existed); how many were embedded."""
    model = embedder_from_env().model
    ids = await ctx.run_query(internal.memory.missingEmbeddings, {"model": model, "limit": args.get("limit", 500.0)})
    done = 0
    for memory_id in ids:
        if await ctx.run_action(internal.memory.embedMemory, {"memoryId": memory_id}):
            done += 1
    return float(done)


@internal_query(args={"ids": v.array(v.id("agentMemory")), "tenantId": v.string()}, returns=v.array(v.any()))
async def loadForRecall(ctx, args):
    out = []
    for memory_id in args["ids"]:
        memory = await ctx.db.get(memory_id)
        out.append(_without_embedding(memory) if memory is not None and memory["tenantId"] == args["tenantId"]
                   else None)
    return out


@internal_query(args={"agentId": v.string(), "tenantId": v.string()}, returns=v.id("agents"))
async def agentOf(ctx, args):
    agent = await load_agent(ctx, args["agentId"], args["tenantId"])
    return agent["_id"]


@action(args={"query": v.string(), "agentId": v.optional(v.string()), "type": v.optional(v.string()),
              "limit": v.optional(v.number())},
        returns=v.array(v.object({"memory": v.any(), "score": v.number()})))
async def recall(ctx, args):
    """The caller's tenant's memories closest in meaning to `query` (one agent's with `agentId`,
    one type's with `type`), most similar first: [{memory, score}] (memory without its embedding)."""
    caller = await current_caller(ctx)
    limit = args.get("limit", 8.0)
    if not 1 <= limit <= RECALL_MAX:
        raise app_error("INVALID_ARGUMENTS", f"limit must be between 1 and {RECALL_MAX}, got {limit!r}.")
    if not args["query"].strip():
        raise app_error("EMPTY_CONTENT", "Recall needs a question.")
    memory_type = args.get("type")
    if memory_type is not None and memory_type not in ("working", "daily", "longterm"):
        raise app_error("INVALID_ARGUMENTS", f"Unknown memory type {memory_type!r}.")
    if "agentId" in args:
        agent_id = await ctx.run_query(internal.memory.agentOf, {"agentId": args["agentId"],
                                                                 "tenantId": caller.tenant_id})
        condition = lambda q: q.eq("agentId", agent_id)  # noqa: E731  (an agent belongs to one tenant)
    else:
        condition = lambda q: q.eq("tenantId", caller.tenant_id)  # noqa: E731
    embedder = embedder_from_env()
    [vector] = await embedder.embed([args["query"]])
    # Vector filters are an `or` of conditions: the type is checked on the documents, so ask for more.
    wanted = int(limit) if memory_type is None else min(256, 4 * int(limit))
    found = await ctx.vector_search("agentMemory", "by_embedding", {"vector": vector, "limit": wanted,
                                                                    "filter": condition})
    memories = await ctx.run_query(internal.memory.loadForRecall, {"ids": [r["_id"] for r in found],
                                                                   "tenantId": caller.tenant_id})
    out = []
    for result, memory in zip(found, memories):
        if memory is None or (memory_type is not None and memory["type"] != memory_type):
            continue
        out.append({"memory": memory, "score": result["_score"]})
        if len(out) >= limit:
            break
    return out
