"""Documents: deliverables, research, protocols, attachments and what agents capture (markdown, code...)."""

from engine import UNDEFINED, mutation, pagination_opts_validator, query, v

from ._docs import doc, paginated
from ._errors import app_error
from ._feed import log_activity, touch_agent
from ._tenancy import Actor, current_caller, load, load_agent

document_type = v.union(*[v.literal(t) for t in (
    "deliverable", "research", "protocol", "attachment",
    "markdown", "code", "image", "note", "text", "media", "document")])


@mutation(args={
    "title": v.string(),
    "content": v.string(),                 # markdown
    "type": document_type,
    "taskId": v.optional(v.string()),
    "agentId": v.optional(v.string()),
    "path": v.optional(v.string()),
}, returns=v.id("documents"))
async def create(ctx, args):
    caller = await current_caller(ctx)
    if not args["title"].strip():
        raise app_error("EMPTY_CONTENT", "A document needs a title.")
    document = {"title": args["title"], "content": args["content"], "type": args["type"],
                "tenantId": caller.tenant_id}
    if "taskId" in args:
        document["taskId"] = (await load(ctx, "tasks", args["taskId"], caller.tenant_id))["_id"]
    author = Actor(caller.user_id, "user", caller.user_id)
    if "agentId" in args:
        agent = await load_agent(ctx, args["agentId"], caller.tenant_id)
        document["agentId"] = agent["_id"]
        author = Actor(agent["_id"], "agent", agent["name"], agent)
    if "path" in args:
        document["path"] = args["path"]
    document_id = await ctx.db.insert("documents", document)
    await log_activity(ctx, caller.tenant_id, "document_created", f'{author.name} created "{args["title"]}"',
                       actor=author, target_id=document_id, target_type="document",
                       metadata={"taskId": document["taskId"]} if "taskId" in document else None)
    await touch_agent(ctx, author)
    return document_id


@query(args={"paginationOpts": pagination_opts_validator}, returns=paginated(doc("documents")))
async def list(ctx, args):
    """The tenant's documents, newest first."""
    caller = await current_caller(ctx)
    return await (ctx.db.query("documents")
                  .with_index("by_tenant", lambda q: q.eq("tenantId", caller.tenant_id))
                  .order("desc")
                  .paginate(args["paginationOpts"]))


@query(args={"taskId": v.string()}, returns=v.array(doc("documents")))
async def listByTask(ctx, args):
    caller = await current_caller(ctx)
    task = await load(ctx, "tasks", args["taskId"], caller.tenant_id)
    return await ctx.db.query("documents").with_index("by_task", lambda q: q.eq("taskId", task["_id"])).collect()


@query(args={"id": v.string()}, returns=doc("documents"))
async def get(ctx, args):
    caller = await current_caller(ctx)
    return await load(ctx, "documents", args["id"], caller.tenant_id)


@mutation(args={
    "id": v.string(),
    "title": v.optional(v.string()),
    "content": v.optional(v.string()),
    "type": v.optional(document_type),
    "path": v.optional(v.string()),
    "taskId": v.optional(v.union(v.string(), v.null())),
}, returns=v.null())
async def update(ctx, args):
    caller = await current_caller(ctx)
    document = await load(ctx, "documents", args["id"], caller.tenant_id)
    fields = {k: args[k] for k in ("title", "content", "type", "path") if k in args}
    if "title" in fields and not fields["title"].strip():
        raise app_error("EMPTY_CONTENT", "A document needs a title.")
    if "taskId" in args:
        fields["taskId"] = (UNDEFINED if args["taskId"] is None
                            else (await load(ctx, "tasks", args["taskId"], caller.tenant_id))["_id"])
    if fields:
        await ctx.db.patch(document["_id"], fields)
    return None
