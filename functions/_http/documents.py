"""`POST /documents/upload`: store a file and create its document in one call (registered in
http_routes.py) — for OpenClaw agents and scripts, which hold the admin key or a user's JWT and would
rather not make three calls. The desktop app can use the Convex flow instead
(`documents:generateUploadUrl`, POST the bytes, `documents:create` with the `storageId`).

    curl -X POST "$SITE/documents/upload?title=Wireframe&type=image&taskId=$TASK" \
         -H "Authorization: Convex $ADMIN_KEY" -H "Content-Type: image/png" --data-binary @wire.png

Query parameters: `title` (required), `type` (attachment | image | media; default attachment),
`taskId`, `agentId`, `path`, `content` (markdown shown with it; default ""). The body is the file's
raw bytes (at most 20 MiB, Convex's HTTP-action limit; larger files go through the upload URL),
`Content-Type` is recorded with it.

Auth: the admin key (`Authorization: Convex <key>` or `Bearer <key>`) acts in $NOVA_AGENT_TENANT;
a user's `Bearer <JWT>` in that user's tenant.

Answers: 201 {"documentId", "storageId", "url"}; {"code", "message"} with 400 BAD_REQUEST /
EMPTY_CONTENT / INVALID_ARGUMENTS, 401 UNAUTHENTICATED, 403 NO_TENANT, 404 NOT_FOUND (task or agent),
413 FileTooLarge. A refusal stores nothing (the file is deleted again).
"""

from __future__ import annotations

from engine import ConvexError, EngineError, http_action, internal, json_response

from .standup import _is_admin

_STATUS = {"UNAUTHENTICATED": 401, "NO_TENANT": 403, "FORBIDDEN": 403, "NOT_FOUND": 404, "NOT_AN_AGENT": 404}


def _error(status: int, code: str, message: str):
    return json_response({"code": code, "message": message}, status, {"cache-control": "no-store"})


@http_action
async def upload_document(ctx, request):
    admin = _is_admin(ctx, request)
    if not admin:
        try:  # as in Convex, asking who calls raises when the bearer token did not verify
            await ctx.auth.get_user_identity()
        except EngineError as e:
            return _error(401, "UNAUTHENTICATED", f"The bearer token was refused: {e.message}")
    params = request.query_params
    title = params.get("title", "")
    if not title.strip():
        return _error(400, "BAD_REQUEST", "The `title` query parameter is required.")
    data = await request.body()
    if not data:
        return _error(400, "EMPTY_CONTENT", "The body must hold the file's bytes.")
    try:
        storage_id = await ctx.storage.store(data, request.headers.get("content-type"))
    except EngineError as e:
        return _error(e.status, e.code, e.message)
    args = {"title": title, "content": params.get("content", ""), "type": params.get("type", "attachment"),
            "storageId": storage_id, "asAgentTenant": admin}
    for name in ("taskId", "agentId", "path"):
        if params.get(name):
            args[name] = params[name]
    try:
        document_id = await ctx.run_mutation(internal.documents.createFromUpload, args)
    except ConvexError as e:
        await ctx.storage.delete(storage_id)
        data_ = e.data if isinstance(e.data, dict) else {}
        code = data_.get("code", "BAD_REQUEST")
        return _error(_STATUS.get(code, 400), code, data_.get("message", str(e)))
    except Exception as e:  # argument validation (a bad type) and the like
        await ctx.storage.delete(storage_id)
        return _error(400, "INVALID_ARGUMENTS", str(e).split("\n")[0])
    return json_response({"documentId": document_id, "storageId": storage_id,
                          "url": await ctx.storage.get_url(storage_id)}, 201)
