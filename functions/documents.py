"""Documents: deliverables, research, protocols, attachments and what agents capture (markdown, code...).

Attachments, images and media can hold their bytes in file storage (`storageId`), uploaded the
Convex way: `documents:generateUploadUrl` -> POST the bytes to that URL -> `documents:create` with
the `storageId` it answered; or in one call, `POST /documents/upload` (functions/_http/documents.py).
"""

from engine import UNDEFINED, internal_mutation, mutation, pagination_opts_validator, query, v

from ._docs import doc, paginated
from ._errors import app_error
from ._feed import log_activity, touch_agent
from ._tenancy import Actor, Caller, agent_tenant, current_caller, load, load_agent

document_type = v.union(*[v.literal(t) for t in (
    "deliverable", "research", "protocol", "attachment",
    "markdown", "code", "image", "note", "text", "media", "document")])


FILE_TYPES = ("attachment", "image", "media")  # the document types whose bytes may live in file storage


async def _create(ctx, caller, args):
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
    if "storageId" in args:
        document["storageId"] = await _claim_file(ctx, args["storageId"], args["type"])
    document_id = await ctx.db.insert("documents", document)
    await log_activity(ctx, caller.tenant_id, "document_created", f'{author.name} created "{args["title"]}"',
                       actor=author, target_id=document_id, target_type="document",
                       metadata={"taskId": document["taskId"]} if "taskId" in document else None)
    await touch_agent(ctx, author)
    return document_id


async def _claim_file(ctx, storage_id, document_type):
    """A stored file for a new document: it exists, and no document holds it yet (a file backs one
    document, so no tenant can point at a file another tenant's document holds)."""
    if document_type not in FILE_TYPES:
        raise app_error("INVALID_ARGUMENTS", f'Only documents of type {", ".join(FILE_TYPES)} hold a stored file.')
    file_id = ctx.db.normalize_id("_storage", storage_id)
    if file_id is None or await ctx.db.system.get(file_id) is None:
        raise app_error("NOT_FOUND", "No stored file with this id.", storageId=storage_id)
    holder = await ctx.db.query("documents").with_index("by_storage", lambda q: q.eq("storageId", file_id)).first()
    if holder is not None:
        raise app_error("DUPLICATE", "This stored file already belongs to a document.", storageId=storage_id)
    return file_id


_CREATE_ARGS = {
    "title": v.string(),
    "content": v.string(),                 # markdown
    "type": document_type,
    "taskId": v.optional(v.string()),
    "agentId": v.optional(v.string()),
    "path": v.optional(v.string()),
    "storageId": v.optional(v.string()),   # from generateUploadUrl's upload (attachment/image/media)
}


@mutation(args=_CREATE_ARGS, returns=v.id("documents"))
async def create(ctx, args):
    return await _create(ctx, await current_caller(ctx), args)


@internal_mutation(args={**_CREATE_ARGS, "storageId": v.id("_storage"), "asAgentTenant": v.boolean()},
                   returns=v.id("documents"))
async def createFromUpload(ctx, args):
    """POST /documents/upload: the file is stored already; the admin key acts in the agent tenant."""
    args = dict(args)
    as_agent_tenant = args.pop("asAgentTenant")
    caller = Caller(agent_tenant(), None, True) if as_agent_tenant else await current_caller(ctx)
    return await _create(ctx, caller, args)


@mutation(args={}, returns=v.string())
async def generateUploadUrl(ctx, args):
    """Step 1 of an upload: a URL to POST the file's bytes to (an hour), answering {storageId}."""
    await current_caller(ctx)
    return await ctx.storage.generate_upload_url()


file_info = v.union(v.null(), v.object({"url": v.string(), "contentType": v.union(v.string(), v.null()),
                                         "size": v.number(), "sha256": v.string()}))


@query(args={"id": v.string()}, returns=file_info)
async def file(ctx, args):
    """Where a document's stored file is served, with its metadata; null when it holds none."""
    caller = await current_caller(ctx)
    document = await load(ctx, "documents", args["id"], caller.tenant_id)
    if "storageId" not in document:
        return None
    url = await ctx.storage.get_url(document["storageId"])
    meta = await ctx.db.system.get(document["storageId"])
    if url is None or meta is None:
        return None
    return {"url": url, "contentType": meta["contentType"], "size": meta["size"], "sha256": meta["sha256"]}


@mutation(args={"id": v.string()}, returns=v.null())
async def remove(ctx, args):
    """Delete a document, and its stored file with it."""
    caller = await current_caller(ctx)
    document = await load(ctx, "documents", args["id"], caller.tenant_id)
    if "storageId" in document and await ctx.db.system.get(document["storageId"]) is not None:
        await ctx.storage.delete(document["storageId"])
    await ctx.db.delete(document["_id"])
    return None


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
