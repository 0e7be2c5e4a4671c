from engine import action, mutation, query, v

from ._corpus import body, tenant_of, vectors


@mutation(args={"start": v.number(), "count": v.number(), "rareGroups": v.number()})
async def fill(ctx, args):
    start, rare = int(args["start"]), int(args["rareGroups"])
    for i in range(start, start + int(args["count"])):
        await ctx.db.insert("docs", {"body": body(i, rare), "tenant": tenant_of(i)})


@mutation(args={"body": v.string()})
async def add(ctx, args):
    return await ctx.db.insert("docs", {"body": args["body"], "tenant": "t0"})


@mutation(args={"body": v.string()})
async def addPlain(ctx, args):
    return await ctx.db.insert("plain", {"body": args["body"], "tenant": "t0"})


@query(args={"text": v.string(), "tenant": v.optional(v.string()), "limit": v.number()})
async def search(ctx, args):
    def build(q):
        q = q.search("body", args["text"])
        return q.eq("tenant", args["tenant"]) if "tenant" in args else q
    docs = await ctx.db.query("docs").with_search_index("search_body", build).take(int(args["limit"]))
    return [d["_id"] for d in docs]


@mutation(args={"start": v.number(), "count": v.number()})
async def fillVectors(ctx, args):
    start = int(args["start"])
    for i, row in enumerate(vectors(start, int(args["count"])).tolist()):
        await ctx.db.insert("vecs", {"v": row, "tenant": tenant_of(start + i)})


@action(args={"vector": v.array(v.float64()), "limit": v.number(), "tenant": v.optional(v.string())})
async def similar(ctx, args):
    query = {"vector": args["vector"], "limit": args["limit"]}
    if "tenant" in args:
        query["filter"] = lambda q: q.eq("tenant", args["tenant"])
    return [r["_id"] for r in await ctx.vector_search("vecs", "by_v", query)]


@mutation(args={"start": v.number(), "count": v.number(), "rareGroups": v.number()})
async def fillPlain(ctx, args):
    start, rare = int(args["start"]), int(args["rareGroups"])
    for i in range(start, start + int(args["count"])):
        await ctx.db.insert("plain", {"body": body(i, rare), "tenant": tenant_of(i)})


@query(args={"ids": v.array(v.id("docs"))})
async def getMany(ctx, args):
    return [(await ctx.db.get(i))["_id"] for i in args["ids"]]
