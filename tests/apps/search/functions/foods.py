from engine import action, internal_query, mutation, query, v


@mutation(args={"description": v.string(), "cuisine": v.string(), "embedding": v.optional(v.array(v.float64()))})
async def add(ctx, args):
    return await ctx.db.insert("foods", args)


@mutation(args={"id": v.id("foods"), "embedding": v.optional(v.array(v.float64())), "cuisine": v.optional(v.string())})
async def update(ctx, args):
    await ctx.db.patch(args["id"], {k: args[k] for k in ("embedding", "cuisine") if k in args})


@internal_query(args={"ids": v.array(v.id("foods"))})
async def fetch(ctx, args):
    return [await ctx.db.get(i) for i in args["ids"]]


@action(args={"vector": v.array(v.float64()), "limit": v.optional(v.number()), "cuisines": v.optional(v.array(v.string()))})
async def similar(ctx, args):
    query = {"vector": args["vector"]}
    if "limit" in args:
        query["limit"] = args["limit"]
    if "cuisines" in args:
        cuisines = args["cuisines"]
        query["filter"] = lambda q: q.or_(*[q.eq("cuisine", c) for c in cuisines])
    results = await ctx.vector_search("foods", "by_embedding", query)
    docs = await ctx.run_query("foods:fetch", {"ids": [r["_id"] for r in results]})
    return [{"description": d["description"], "score": r["_score"]} for d, r in zip(docs, results)]
