"""Messages by author: insert, list and paginate (newest first) through the by_author index."""

from engine import mutation, pagination_opts_validator, query, v


@mutation(
    args={
        "author": v.string(),
        "body": v.string(),
        "n": v.optional(v.int64()),
        "blob": v.optional(v.bytes()),
    }
)
async def send(ctx, args):
    return await ctx.db.insert("messages", dict(args))


@query(args={"author": v.string()})
async def list(ctx, args):
    return await ctx.db.query("messages").with_index("by_author", lambda q: q.eq("author", args["author"])).collect()


@query(args={"author": v.string(), "paginationOpts": pagination_opts_validator})
async def listPaginated(ctx, args):
    return await (
        ctx.db.query("messages")
        .with_index("by_author", lambda q: q.eq("author", args["author"]))
        .order("desc")
        .paginate(args["paginationOpts"])
    )
