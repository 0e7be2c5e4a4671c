"""HTTP endpoints of the OpenClaw integration: `POST /openclaw/event` and `POST /notifications/deliver`.

/openclaw/event takes the spec's body and the real mission-control hook's bodies (see
`normalize_event`), checks them here, and hands ONE normalised event to `openclaw:ingest`, a
mutation, so each event is applied atomically. Answers (JSON):
  200 {"ok": true, "duplicate": false, "runId", "action", "streamId", "taskId"?, ...}
  200 {"ok": true, "duplicate": true, ...}        an event seen before: nothing changed
  200 {"ok": true, "pending": true, ...}          a progress of a run no event has named an agent for yet
  401 UNAUTHORIZED        OPENCLAW_WEBHOOK_SECRET is set and the Bearer token is missing or wrong
  413 PAYLOAD_TOO_LARGE   body over OPENCLAW_EVENT_MAX_BYTES (default 512 KiB)
  400 INVALID_JSON / INVALID_BODY / MISSING_ACTION / UNKNOWN_ACTION / MISSING_RUN_ID / INVALID_FIELD /
      MISSING_SESSION_KEY / INVALID_CHUNK / INVALID_PROGRESS / INVALID_DOCUMENT / INVALID_TIMESTAMP
  422 UNKNOWN_RUN         end/error/document of a run never seen, without a sessionKey
Nothing is written unless the answer is 200 with duplicate false. The checks run in that order
(authentication first, so an unauthenticated caller learns nothing about the body).

Idempotency key of an event: the `Idempotency-Key` header if sent, else the body's `eventId`, else
the SHA-256 of the body's canonical JSON (sorted keys): a re-sent event is recognised, and two
events differing in anything (a timestamp, a message) are two events.

/notifications/deliver runs `delivery:deliverDue` now (the cron does it every minute) and answers
its summary. Guard: the deployment's admin key as `Authorization: Bearer <key>` or
`Authorization: Convex <key>` (checked by `ctx.admin_key_matches`, constant-time); anything else,
and every caller of a deployment without an admin key, is 401.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
from datetime import datetime, timezone
from typing import Any

from engine import ConvexError, env, http_action, internal, json_response

from .._tenancy import AGENT_TENANT_ENV, DEFAULT_AGENT_TENANT

log = logging.getLogger("nova.openclaw")

WEBHOOK_SECRET_ENV = "OPENCLAW_WEBHOOK_SECRET"
MAX_BYTES_ENV = "OPENCLAW_EVENT_MAX_BYTES"
DEFAULT_MAX_BYTES = 512 * 1024
# Above this an event could not fit the 1 MiB document limit as a chunk or a document.
HARD_MAX_BYTES = 900 * 1024
MAX_ID_CHARS = 256
ACTIONS = ("start", "progress", "end", "error", "document")
CHUNK_TYPES = ("thinking", "tool_call", "tool_result", "output", "error")
DOCUMENT_TYPES = ("deliverable", "research", "protocol", "attachment", "markdown", "code", "image", "note",
                  "text", "media", "document")

_warned_open = False


class BadEvent(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None):
    return json_response({"ok": False, "code": code, "message": message}, status, headers)


def _bearer(request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def max_event_bytes() -> int:
    try:
        value = int(env.get(MAX_BYTES_ENV) or DEFAULT_MAX_BYTES)
    except ValueError:
        return DEFAULT_MAX_BYTES
    return max(1024, min(value, HARD_MAX_BYTES))


# -- normalising the two body shapes ---------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _text(body: dict[str, Any], field: str) -> str | None:
    """A string field; null and absent are the same; anything else is INVALID_FIELD."""
    value = body.get(field)
    if value is None or isinstance(value, str):
        return value
    raise BadEvent("INVALID_FIELD", f"`{field}` must be a string or null, got {type(value).__name__}.")


def _timestamp(value: Any) -> float | None:
    """ms since the epoch from an ISO 8601 string (the hook's) or a number (ms; seconds if small)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadEvent("INVALID_TIMESTAMP", "`timestamp` must be an ISO 8601 string or a number.")
    if isinstance(value, (int, float)):
        if not math.isfinite(value) or value < 0:
            raise BadEvent("INVALID_TIMESTAMP", f"`timestamp` {value!r} is not a time.")
        return float(value) * 1000 if value < 1e11 else float(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise BadEvent("INVALID_TIMESTAMP", f"`timestamp` {value[:40]!r} is not an ISO 8601 time.") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp() * 1000
    raise BadEvent("INVALID_TIMESTAMP", "`timestamp` must be an ISO 8601 string or a number.")


def chunk_type_for(event_type: str | None) -> str:
    """The chunk type of a hook progress `message`, from its `eventType`."""
    kind = (event_type or "").lower()
    if "thinking" in kind or kind.startswith("reasoning"):
        return "thinking"
    if kind.startswith(("tool:", "exec:")):
        return "tool_result" if kind.endswith((":end", ":result", ":output")) else "tool_call"
    if "error" in kind:
        return "error"
    return "output"


def _document(body: dict[str, Any]) -> dict[str, Any]:
    document = body.get("document")
    if not isinstance(document, dict):
        raise BadEvent("INVALID_DOCUMENT", "A document event needs `document: {title, content, type, path}`.")
    fields = {}
    for name in ("title", "content", "type", "path"):
        value = document.get(name)
        if value is not None and not isinstance(value, str):
            raise BadEvent("INVALID_DOCUMENT", f"`document.{name}` must be a string.")
        fields[name] = value
    if fields["content"] is None:
        raise BadEvent("INVALID_DOCUMENT", "`document.content` is required.")
    path = fields["path"]
    title = (fields["title"] or "").strip() or (path.rstrip("/").rsplit("/", 1)[-1] if path else "") or "Untitled"
    # The hook's types are the schema's; anything else is kept as a generic document.
    out = {"title": title, "content": fields["content"],
           "type": fields["type"] if fields["type"] in DOCUMENT_TYPES else "document"}
    if path:
        out["path"] = path
    return out


def normalize_event(body: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
    """The event `openclaw:ingest` applies, from either body shape; raises BadEvent.

    Spec:  {runId, action, sessionKey, prompt, chunk: {type, content}, progress, error}
    Hook:  {runId, action, sessionKey, timestamp, eventType, source?, prompt?, message?, response?,
            error?, agentId?, document?}  (progress `message` becomes a chunk typed by `eventType`)
    """
    if not isinstance(body, dict):
        raise BadEvent("INVALID_BODY", "The body must be a JSON object.")
    action = body.get("action")
    if action is None or action == "":
        raise BadEvent("MISSING_ACTION", f"`action` is required: one of {', '.join(ACTIONS)}.")
    if action not in ACTIONS:
        raise BadEvent("UNKNOWN_ACTION", f"Unknown action {str(action)[:40]!r}; expected one of {', '.join(ACTIONS)}.")
    run_id = body.get("runId")
    if run_id is None or run_id == "":
        raise BadEvent("MISSING_RUN_ID", "`runId` is required.")
    if not isinstance(run_id, str) or len(run_id) > MAX_ID_CHARS:
        raise BadEvent("INVALID_FIELD", f"`runId` must be a string of at most {MAX_ID_CHARS} characters.")

    event: dict[str, Any] = {"runId": run_id, "action": action}
    session_key = _text(body, "sessionKey")
    agent_id = _text(body, "agentId")
    if not session_key and agent_id:
        session_key = f"agent:{agent_id}:main"  # the hook's document events name the OpenClaw agent
    if session_key:
        if len(session_key) > MAX_ID_CHARS:
            raise BadEvent("INVALID_FIELD", f"`sessionKey` is longer than {MAX_ID_CHARS} characters.")
        event["sessionKey"] = session_key
    elif action == "start":
        raise BadEvent("MISSING_SESSION_KEY", "A start event needs the agent's `sessionKey`.")
    timestamp = _timestamp(body.get("timestamp"))
    if timestamp is not None:
        event["timestamp"] = timestamp
    for field in ("prompt", "source", "eventType", "response"):
        value = _text(body, field)
        if value is not None:
            event[field] = value

    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        error = error["message"]
    if error is not None and not isinstance(error, str):
        raise BadEvent("INVALID_FIELD", "`error` must be a string or null.")
    if error is not None:
        event["error"] = error

    chunk = body.get("chunk")
    if chunk is not None:
        if not isinstance(chunk, dict) or chunk.get("type") not in CHUNK_TYPES or not isinstance(chunk.get("content"), str):
            raise BadEvent("INVALID_CHUNK", f"`chunk` must be {{type: {' | '.join(CHUNK_TYPES)}, content: string}}.")
        event["chunk"] = {"type": chunk["type"], "content": chunk["content"]}
    message = _text(body, "message")
    if action == "progress" and chunk is None and message:
        event["chunk"] = {"type": chunk_type_for(event.get("eventType")), "content": message}

    progress = body.get("progress")
    if progress is not None:
        if isinstance(progress, bool) or not isinstance(progress, (int, float)) or not 0 <= progress <= 100:
            raise BadEvent("INVALID_PROGRESS", f"`progress` must be a number from 0 to 100, got {progress!r}.")
        event["progress"] = float(progress)
    if action == "document":
        event["document"] = _document(body)

    if idempotency_key:
        key = "h:" + idempotency_key[:MAX_ID_CHARS]
    elif isinstance(body.get("eventId"), str) and body["eventId"]:
        key = "e:" + body["eventId"][:MAX_ID_CHARS]
    else:
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        key = "b:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    event["key"] = key
    return event


# -- the routes ----------------------------------------------------------------------------------


@http_action
async def openclaw_event(ctx, request):
    global _warned_open
    secret = env.get(WEBHOOK_SECRET_ENV)
    if secret:
        token = _bearer(request)
        if token is None or not _same(token, secret):
            return _error(401, "UNAUTHORIZED", "A valid `Authorization: Bearer <OPENCLAW_WEBHOOK_SECRET>` is required.",
                          {"www-authenticate": 'Bearer realm="openclaw"'})
    elif not _warned_open:
        _warned_open = True
        log.warning("%s is not set: /openclaw/event accepts events from anyone", WEBHOOK_SECRET_ENV)

    raw = await request.body()
    limit = max_event_bytes()
    if len(raw) > limit:
        return _error(413, "PAYLOAD_TOO_LARGE", f"The event is {len(raw)} bytes; the limit is {limit}.")
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as e:
        return _error(400, "INVALID_JSON", f"The body is not JSON: {str(e)[:200]}")
    except RecursionError:
        return _error(400, "INVALID_JSON", "The body is JSON nested too deeply to parse (the limit is about "
                      "1000 levels).")
    try:
        event = normalize_event(body, idempotency_key=request.headers.get("idempotency-key"))
    except BadEvent as e:
        return _error(e.status, e.code, e.message)
    event["tenantId"] = env.get(AGENT_TENANT_ENV) or DEFAULT_AGENT_TENANT
    try:
        result = await ctx.run_mutation(internal.openclaw.ingest, {"event": event})
    except ConvexError as e:
        data = e.data if isinstance(e.data, dict) else {}
        code = str(data.get("code", "REFUSED"))
        return _error(422 if code == "UNKNOWN_RUN" else 400, code, str(data.get("message", "The event was refused.")))
    return json_response({"ok": True, **result})


def _admin_caller(ctx, request) -> bool:
    if ctx.auth.is_admin():
        return True
    scheme, _, token = request.headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    return scheme.lower() in ("bearer", "convex") and bool(token) and ctx.admin_key_matches(token)


@http_action
async def deliver_notifications(ctx, request):
    if not _admin_caller(ctx, request):
        return _error(401, "UNAUTHORIZED", "This endpoint needs the deployment's admin key "
                                           "(`Authorization: Bearer <admin key>`).",
                      {"www-authenticate": 'Bearer realm="admin"'})
    result = await ctx.run_action(internal.delivery.deliverDue, {})
    return json_response({"ok": True, **result})
