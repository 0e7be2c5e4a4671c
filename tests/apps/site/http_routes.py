"""HTTP routes of the test app, written like a Convex `convex/http.ts`."""

import hashlib

from engine import EngineError, HttpRouter, Response, http_action, internal, json_response


@http_action
async def echo_hash(ctx, request):
    # Signature checks hash the exact bytes received.
    body = await request.body()
    return json_response({
        "sha256": hashlib.sha256(body).hexdigest(),
        "length": len(body),
        "contentType": request.headers.get("Content-Type"),
    })


@http_action
async def record_event(ctx, request):
    payload = await request.json()
    event_id = await ctx.run_mutation(internal.events.record,
                                      {"source": payload["source"], "text": payload["text"]})
    found = await ctx.run_query("events:by_source", {"source": payload["source"]})
    return json_response({"id": event_id, "count": len(found)})


@http_action
async def inspect_request(ctx, request):
    return json_response({
        "method": request.method,
        "path": request.path,
        "url": request.url,
        "query": request.query_params,
        "custom": request.headers.get("x-CUSTOM-header"),
        "hasCustom": "X-Custom-Header" in request.headers,
        "text": await request.text(),
        "identity": await _identity(ctx),
    })


async def _identity(ctx):
    """The caller's identity; as in Convex, asking raises when the bearer token did not verify."""
    try:
        return await ctx.auth.get_user_identity()
    except EngineError as e:
        return {"refused": e.code, "message": e.message}


@http_action
async def boom(ctx, request):
    raise RuntimeError("the database password is hunter2")


@http_action
async def not_a_response(ctx, request):
    return {"oops": True}


@http_action
async def text(ctx, request):
    return Response("plain text ✓", status=202, headers={"X-Thing": "1"})


@http_action
async def files(ctx, request):
    return json_response({"handler": "files", "path": request.path})


@http_action
async def deep_files(ctx, request):
    return json_response({"handler": "deep_files", "path": request.path})


@http_action
async def special_file(ctx, request):
    return json_response({"handler": "special_file"})


@http_action
async def noisy(ctx, request):
    print("http action says hi", request.query_params.get("tag"))
    return Response(None, status=204)


http = HttpRouter()
http.route(path="/hooks/hash", method="POST", handler=echo_hash)
http.route(path="/hooks/event", method="POST", handler=record_event)
http.route(path="/inspect", method="GET", handler=inspect_request)
http.route(path="/inspect", method="POST", handler=inspect_request)
http.route(path="/boom", method="GET", handler=boom)
http.route(path="/not-a-response", method="GET", handler=not_a_response)
http.route(path="/text", method="GET", handler=text)
http.route(path_prefix="/files/", method="GET", handler=files)
http.route(path_prefix="/files/deep/", method="GET", handler=deep_files)
http.route(path="/files/special", method="GET", handler=special_file)
http.route(path="/noisy", method="GET", handler=noisy)
