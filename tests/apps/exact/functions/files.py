"""File storage as Convex apps use it."""

from engine import action, mutation, query, v


@mutation
async def generateUploadUrl(ctx, args):
    return await ctx.storage.generate_upload_url()


@mutation(args={"name": v.string(), "storageId": v.id("_storage")})
async def save(ctx, args):
    return await ctx.db.insert("files", {"name": args["name"], "storageId": args["storageId"]})


@query(args={"storageId": v.id("_storage")})
async def url(ctx, args):
    return await ctx.storage.get_url(args["storageId"])


@query(args={"storageId": v.string()})
async def urlOfAnyString(ctx, args):
    return await ctx.storage.get_url(args["storageId"])


@query(args={"storageId": v.id("_storage")})
async def row(ctx, args):
    return await ctx.db.system.get(args["storageId"])


@query
async def rows(ctx, args):
    return await ctx.db.system.query("_storage").collect()


@query(args={"storageId": v.id("_storage")})
async def metadata(ctx, args):
    return await ctx.storage.get_metadata(args["storageId"])


@mutation(args={"storageId": v.id("_storage")})
async def remove(ctx, args):
    await ctx.storage.delete(args["storageId"])


@action(args={"text": v.string(), "contentType": v.optional(v.string())})
async def storeText(ctx, args):
    storage_id = await ctx.storage.store(args["text"].encode(), args.get("contentType"))
    data = await ctx.storage.get(storage_id)
    return {"storageId": storage_id, "roundTrip": data.decode(), "url": await ctx.storage.get_url(storage_id)}


@action(args={"storageId": v.id("_storage")})
async def read(ctx, args):
    data = await ctx.storage.get(args["storageId"])
    return None if data is None else data


@action(args={"storageId": v.id("_storage")})
async def removeInAction(ctx, args):
    await ctx.storage.delete(args["storageId"])


@mutation(args={"storageId": v.id("_storage")})
async def removeThenFail(ctx, args):
    await ctx.storage.delete(args["storageId"])
    raise Exception("changed my mind")


@query
async def peekKeys(ctx, args):
    return await ctx.db.system.query("_storage_keys").collect()


@query(args={"id": v.string()})
async def getAny(ctx, args):
    return await ctx.db.system.get(args["id"])
