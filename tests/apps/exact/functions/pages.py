"""Pagination as usePaginatedQuery drives it, with Convex's read limits."""

from engine import mutation, pagination_opts_validator, query, v


@mutation(args={"list": v.string(), "count": v.float64(), "pad": v.optional(v.float64()),
                "keepEvery": v.optional(v.float64())})
async def fill(ctx, args):
    pad = "x" * int(args.get("pad", 0))
    every = int(args.get("keepEvery", 1))
    for i in range(int(args["count"])):
        doc = {"list": args["list"], "n": float(i), "keep": i % every == 0}
        if pad:
            doc["pad"] = pad
        await ctx.db.insert("items", doc)


@query(args={"list": v.string(), "paginationOpts": pagination_opts_validator,
             "onlyKept": v.optional(v.boolean())})
async def page(ctx, args):
    q = ctx.db.query("items").with_index("by_list_n", lambda q: q.eq("list", args["list"]))
    if args.get("onlyKept"):
        q = q.filter(lambda f: f.eq(f.field("keep"), True))
    result = await q.paginate(args["paginationOpts"])
    return {**result, "page": [{"n": d["n"]} for d in result["page"]]}


@mutation(args={"list": v.string(), "n": v.float64()})
async def insert(ctx, args):
    await ctx.db.insert("items", {"list": args["list"], "n": args["n"], "keep": True})


@query(args={"list": v.string(), "paginationOpts": pagination_opts_validator, "maximumRowsRead": v.float64()})
async def pageLimited(ctx, args):
    """A Convex app caps what one page may read by passing maximumRowsRead to paginate."""
    opts = {**args["paginationOpts"], "maximumRowsRead": args["maximumRowsRead"]}
    result = await (ctx.db.query("items").with_index("by_list_n", lambda q: q.eq("list", args["list"]))
                    .paginate(opts))
    return {**result, "page": [{"n": d["n"]} for d in result["page"]]}
