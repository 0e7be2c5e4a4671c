"""HTTP actions of the `exact` app (Convex's http.ts of its integration tests, plus storage)."""

from engine import ConvexError, HttpRouter, Response, http_action, json_response


@http_action
async def failer(ctx, request):
    raise Exception("ErrMsg")


@http_action
async def failer_custom(ctx, request):
    raise ConvexError("Hello world!")


@http_action
async def whoami(ctx, request):
    return json_response({"identity": await ctx.auth.get_user_identity()})


@http_action
async def upload(ctx, request):
    storage_id = await ctx.storage.store(await request.body(), request.headers.get("content-type"))
    return json_response({"storageId": storage_id})


@http_action
async def download(ctx, request):
    data = await ctx.storage.get(request.query_params.get("id", ""))
    if data is None:
        return Response("no such file", status=404)
    return Response(data, headers={"content-type": "application/octet-stream"})


http = HttpRouter()
http.route(path="/failer", method="GET", handler=failer)
http.route(path="/failer_custom", method="GET", handler=failer_custom)
http.route(path="/whoami", method="GET", handler=whoami)
http.route(path="/upload", method="POST", handler=upload)
http.route(path="/download", method="GET", handler=download)
