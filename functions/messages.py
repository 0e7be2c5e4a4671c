"""Messages: markdown posts in a channel, threads via `threadId`, documents as attachments.

A channel's list holds its top-level messages, newest first; a thread lists its replies oldest first.
Replies to a reply attach to the thread's root, so threads stay one level deep.
"""

from engine import UNDEFINED, mutation, pagination_opts_validator, query, v

from ._docs import doc, paginated
from ._errors import app_error
from ._feed import log_activity, touch_agent
from ._tenancy import current_caller, load, resolve_actor


@mutation(args={
    "channelId": v.string(),
    "authorId": v.string(),                # agent or user ID
    "authorType": v.union(v.literal("user"), v.literal("agent")),
    "content": v.string(),                 # markdown
    "threadId": v.optional(v.string()),
    "attachments": v.optional(v.array(v.string())),
}, returns=v.id("messages"))
async def send(ctx, args):
    caller = await current_caller(ctx)
    channel = await load(ctx, "channels", args["channelId"], caller.tenant_id)
    author = await resolve_actor(ctx, caller, args["authorId"], args["authorType"])
    if not args["content"].strip():
        raise app_error("EMPTY_CONTENT", "A message needs content.")
    message = {
        "channelId": channel["_id"],
        "authorId": author.id,
        "authorType": author.type,
        "content": args["content"],
        "tenantId": caller.tenant_id,
    }
    if "threadId" in args:
        parent = await load(ctx, "messages", args["threadId"], caller.tenant_id)
        if parent["channelId"] != channel["_id"]:
            raise app_error("INVALID_THREAD", "A reply must be in the channel of the message it answers.")
        message["threadId"] = parent.get("threadId", parent["_id"])
    if "attachments" in args:
        message["attachments"] = [(await load(ctx, "documents", d, caller.tenant_id))["_id"]
                                  for d in args["attachments"]]
    message_id = await ctx.db.insert("messages", message)
    await log_activity(ctx, caller.tenant_id, "message", f"{author.name} posted in #{channel['name']}",
                       actor=author, target_id=channel["_id"], target_type="channel",
                       metadata={"messageId": message_id})
    await touch_agent(ctx, author)
    return message_id


@query(args={"channelId": v.string(), "paginationOpts": pagination_opts_validator},
       returns=paginated(doc("messages")))
async def list(ctx, args):
    """Top-level messages of a channel, newest first."""
    caller = await current_caller(ctx)
    channel = await load(ctx, "channels", args["channelId"], caller.tenant_id)
    return await (ctx.db.query("messages")
                  .with_index("by_channel", lambda q: q.eq("channelId", channel["_id"]))
                  .filter(lambda q: q.eq(q.field("threadId"), UNDEFINED))
                  .order("desc")
                  .paginate(args["paginationOpts"]))


@query(args={"threadId": v.string(), "paginationOpts": pagination_opts_validator},
       returns=paginated(doc("messages")))
async def thread(ctx, args):
    """The replies to a message, oldest first."""
    caller = await current_caller(ctx)
    root = await load(ctx, "messages", args["threadId"], caller.tenant_id)
    return await (ctx.db.query("messages")
                  .with_index("by_thread", lambda q: q.eq("threadId", root["_id"]))
                  .paginate(args["paginationOpts"]))
