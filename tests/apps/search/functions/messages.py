from engine import UNDEFINED, mutation, query, v


@mutation(args={"body": v.string(), "channel": v.string(), "author": v.optional(v.string()),
                "n": v.optional(v.number())})
async def send(ctx, args):
    return await ctx.db.insert("messages", args)


@mutation(args={"id": v.id("messages"), "body": v.optional(v.string()), "channel": v.optional(v.string()),
                "n": v.optional(v.number())})
async def update(ctx, args):
    fields = {k: args[k] for k in ("body", "channel", "n") if k in args}
    await ctx.db.patch(args["id"], fields)


@mutation(args={"id": v.id("messages")})
async def remove(ctx, args):
    await ctx.db.delete(args["id"])


def _search(ctx, args):
    def search(q):
        q = q.search("body", args["text"])
        if "channel" in args:
            q = q.eq("channel", args["channel"])
        if "author" in args:
            q = q.eq("author", args["author"] if args["author"] != "" else UNDEFINED)
        return q
    return ctx.db.query("messages").with_search_index("search_body", search)


@query(args={"text": v.string(), "channel": v.optional(v.string()), "author": v.optional(v.string()),
             "limit": v.optional(v.number())})
async def search(ctx, args):
    docs = await _search(ctx, args).take(int(args.get("limit", 10)))
    return [d["body"] for d in docs]


@query(args={"text": v.string(), "channel": v.optional(v.string())})
async def searchAll(ctx, args):
    return [d["body"] for d in await _search(ctx, args).collect()]


@query(args={"text": v.string(), "channel": v.optional(v.string()), "paginationOpts": v.any()})
async def searchPage(ctx, args):
    return await _search(ctx, args).paginate(args["paginationOpts"])


@mutation(args={"text": v.string(), "body": v.string(), "channel": v.string()})
async def sendThenSearch(ctx, args):
    """Insert, then search in the same transaction (sees its own write)."""
    await ctx.db.insert("messages", {"body": args["body"], "channel": args["channel"]})
    docs = await _search(ctx, {"text": args["text"], "channel": args["channel"]}).take(10)
    return [d["body"] for d in docs]
