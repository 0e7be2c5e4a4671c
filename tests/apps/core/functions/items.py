from engine import ConvexError, mutation, pagination_opts_validator, query, v


@mutation(args={"group": v.string(), "rank": v.float64(), "tags": v.optional(v.array(v.string()))})
async def add(ctx, args):
    return await ctx.db.insert("items", dict(args))


@mutation(args={"id": v.id("items")})
async def remove(ctx, args):
    await ctx.db.delete(args["id"])


@mutation(args={"docs": v.array(v.any())})
async def addMany(ctx, args):
    return [await ctx.db.insert("items", d) for d in args["docs"]]


@query(args={"group": v.string(), "min": v.optional(v.float64()), "limit": v.optional(v.float64())})
async def byRank(ctx, args):
    def rng(q):
        q = q.eq("group", args["group"])
        return q.gte("rank", args["min"]) if "min" in args else q
    query_ = ctx.db.query("items").with_index("by_group_rank", rng)
    if "limit" in args:
        return await query_.take(int(args["limit"]))
    return await query_.collect()


@query(args={"group": v.string(), "paginationOpts": pagination_opts_validator,
              "order": v.optional(v.union(v.literal("asc"), v.literal("desc")))})
async def page(ctx, args):
    return await (ctx.db.query("items").with_index("by_group_rank", lambda q: q.eq("group", args["group"]))
                  .order(args.get("order", "asc")).paginate(args["paginationOpts"]))


@query(args={"tag": v.string()})
async def withTag(ctx, args):
    return [d["_id"] async for d in ctx.db.query("items").filter(
        lambda q: q.eq(q.field("group"), args["tag"]))]


@mutation(args={"group": v.string()})
async def failAfterWrite(ctx, args):
    await ctx.db.insert("items", {"group": args["group"], "rank": 0.0})
    raise ConvexError({"code": "NOPE", "group": args["group"]})


@mutation(args={"doc": v.any()})
async def insertRaw(ctx, args):
    return await ctx.db.insert("items", args["doc"])


@query(args={"paginationOpts": pagination_opts_validator})
async def pageAll(ctx, args):
    """Pages over the whole table in creation order (a different index than `page`)."""
    return await ctx.db.query("items").paginate(args["paginationOpts"])


@query(args={"group": v.string(), "paginationOpts": pagination_opts_validator})
async def twoPages(ctx, args):
    """Two paginated reads in one function: refused (Convex allows one)."""
    first = await ctx.db.query("items").paginate(args["paginationOpts"])
    second = await (ctx.db.query("items").with_index("by_group", lambda q: q.eq("group", args["group"]))
                    .paginate(args["paginationOpts"]))
    return [first, second]


@mutation(args={"group": v.string(), "start": v.float64(), "count": v.float64()})
async def fill(ctx, args):
    """Insert `count` items with ranks start, start+1, ... (bulk loads without huge arguments)."""
    start = args["start"]
    for i in range(int(args["count"])):
        await ctx.db.insert("items", {"group": args["group"], "rank": start + i})
    return args["count"]
