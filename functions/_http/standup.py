"""Operator triggers over HTTP (registered in http_routes.py): `POST /standup/generate`,
`POST /standup/send` and `POST /maintenance/cleanup` — the spec's VPS cron lines
(`30 23 * * * curl -X POST .../standup/generate`, `0 3 * * 0 curl -X POST .../maintenance/cleanup`)
and its endpoint table's `/standup/send`. The engine's own crons (crons.py) do the same on schedule.

Auth: the deployment's admin key, as `Authorization: Convex <admin key>` (what Convex's HTTP API
takes) or `Authorization: Bearer <admin key>` (handy for curl); compared in constant time. Anything
else — no header, another scheme, a wrong key, a user's JWT — is 401 and nothing runs. A deployment
started without an admin key refuses every call.

Bodies (JSON object, optional; an empty body means `{}`):
  /standup/generate     {"date"?: "YYYY-MM-DD" (default: today in $NOVA_STANDUP_TIMEZONE),
                         "send"?: bool (default false: generate only)}
      200 {"date", "timeZone", "standups": [{tenantId, standupId, created, decisions, decisionSource}],
           "sends"?: [send result]}
  /standup/send         {"date"?: "YYYY-MM-DD" (default: today in the zone)}: every tenant's standup
      of that date; each result {tenantId, standupId, status, parts, partsSent, error?}; status "sent",
      "already_sent" (nothing sent again), "busy" (another sender holds it: nothing sent),
      "failed", "exhausted", "not_configured".
      200 every standup sent or already sent; 202 one is being sent by someone else;
      502 Telegram refused or failed (recorded; retried by the next tick); 503 TELEGRAM_BOT_TOKEN /
      TELEGRAM_CHAT_ID not set; 404 no standup for that date (generate it first).
  /maintenance/cleanup  {"retentionDays"?: number (default $NOVA_RETENTION_DAYS or 30)}
      200 {"cutoffMs", "retentionDays", "streamsDeleted", "chunksDeleted", "notificationsDeleted"}
Errors are {"code", "message"}: 400 BAD_REQUEST / INVALID_DATE / INVALID_ARGUMENTS,
401 UNAUTHENTICATED, 500 CONFIG_INVALID (a malformed setting, named in the message).
"""

from __future__ import annotations

from typing import Any

from engine import ConvexError, internal, http_action, json_response

_NO_STORE = {"cache-control": "no-store"}
_STATUS = {"INVALID_DATE": 400, "INVALID_ARGUMENTS": 400, "NOT_FOUND": 404, "CONFIG_INVALID": 500}


def _error(status: int, code: str, message: str):
    return json_response({"code": code, "message": message}, status, _NO_STORE)


def _is_admin(ctx, request) -> bool:
    scheme, _, credential = request.headers.get("authorization", "").strip().partition(" ")
    return scheme.lower() in ("convex", "bearer") and ctx.admin_key_matches(credential.strip())


async def _body(request) -> dict[str, Any] | str:
    """The JSON object sent (empty body: {}), or why it is not one."""
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = await request.json()
    except ValueError as e:  # not JSON, or nested past the parser's limit
        return str(e)
    return body if isinstance(body, dict) else "it is not an object"


def _typed(value: Any, kind: str) -> bool:
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, {"string": str, "boolean": bool}[kind])


async def _guarded(ctx, request, fields: dict[str, str]) -> tuple[Any, Any]:
    """(body, None) for an admin with a well-formed body, else (None, error response)."""
    if not _is_admin(ctx, request):
        return None, _error(401, "UNAUTHENTICATED", "This endpoint needs the deployment's admin key "
                                                    "(Authorization: Convex <admin key>).")
    body = await _body(request)
    if isinstance(body, str):
        return None, _error(400, "BAD_REQUEST", f"The body must be a JSON object (or empty): {body}")
    for name, kind in fields.items():
        if name in body and not _typed(body[name], kind):
            return None, _error(400, "BAD_REQUEST", f"`{name}` must be a {kind}.")
    return body, None


async def _run(ctx, ref: Any, args: dict[str, Any]) -> tuple[Any, Any]:
    try:
        return await ctx.run_action(ref, args), None
    except ConvexError as e:
        data = e.data if isinstance(e.data, dict) else {}
        code = str(data.get("code", "BAD_REQUEST"))
        return None, _error(_STATUS.get(code, 400), code, str(data.get("message", code)))


@http_action
async def standup_generate(ctx, request):
    body, refused = await _guarded(ctx, request, {"date": "string", "send": "boolean"})
    if refused:
        return refused
    args = {k: body[k] for k in ("date", "send") if k in body}
    result, failed = await _run(ctx, internal.telegram.generateStandups, args)
    return failed or json_response(result, 200, _NO_STORE)


@http_action
async def standup_send(ctx, request):
    body, refused = await _guarded(ctx, request, {"date": "string"})
    if refused:
        return refused
    args = {"date": body["date"]} if "date" in body else {}
    result, failed = await _run(ctx, internal.telegram.sendStandups, {**args, "force": True})
    if failed:
        return failed
    statuses = {r["status"] for r in result["results"]}
    if not statuses:
        return _error(404, "NOT_FOUND", f"No standup for {result['date']}: generate it first (POST /standup/generate).")
    if "not_configured" in statuses:
        status = 503
    elif statuses & {"failed", "exhausted", "missing"}:
        status = 502
    elif "busy" in statuses:
        status = 202
    else:
        status = 200
    return json_response(result, status, _NO_STORE)


@http_action
async def maintenance_cleanup(ctx, request):
    body, refused = await _guarded(ctx, request, {"retentionDays": "number"})
    if refused:
        return refused
    args = {"retentionDays": float(body["retentionDays"])} if "retentionDays" in body else {}
    result, failed = await _run(ctx, internal.maintenance.cleanup, args)
    return failed or json_response(result, 200, _NO_STORE)
