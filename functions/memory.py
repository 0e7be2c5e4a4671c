"""Agent memory: WORKING.md (one `working` document per agent), daily notes, MEMORY.md (long-term).

A daily note is one document per (agent, UTC date). Appending to it adds a timestamped entry, creating
the note with its heading on the day's first entry:

    # January 31, 2026

    ## 09:15 UTC
    - Started auth token fix task
    - Found issue in auth.ts
"""

from engine import mutation, query, v

from ._clock import long_date, now_ms, parse_date, utc_date, utc_hhmm
from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller, load_agent


async def memory_of(ctx, agent_id, type, date=None):
    def by_agent_date(q):
        q = q.eq("agentId", agent_id).eq("type", type)
        return q.eq("date", date) if date is not None else q
    return await ctx.db.query("agentMemory").with_index("by_agent_date", by_agent_date).first()


async def replace_memory(ctx, agent, type, content):
    existing = await memory_of(ctx, agent["_id"], type)
    if existing is not None:
        await ctx.db.patch(existing["_id"], {"content": content})
        return existing["_id"]
    return await ctx.db.insert("agentMemory", {
        "agentId": agent["_id"], "type": type, "content": content, "tenantId": agent["tenantId"],
    })


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
        await ctx.db.patch(note_id, {"content": note["content"].rstrip("\n") + "\n\n" + section})
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
        return await notes.take(int(args["limit"]))
    return await notes.collect()


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
