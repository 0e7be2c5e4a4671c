"""LiveKit over HTTP: `POST /voice/token` and `POST /livekit/webhook` (registered in http_routes.py).

POST /voice/token — a LiveKit token for callers outside the Convex client, with exactly the rules of
the mutation voice:getVoiceToken (which it calls): voice channels only, room `channel-<channelId>`,
the participant recorded in voiceRooms.
  Auth: `Authorization: Bearer <user JWT>` (verified by the deployment's auth providers; the tenant is
  the identity's tenant claim), or no header in $NOVA_LOCAL_TENANT mode. HTTP actions get no admin
  identity in this engine, so the admin key is not accepted here: agents and scripts holding the
  admin key call the mutation through the Convex HTTP API (`POST /api/mutation`, path
  `voice:getVoiceToken`, `Authorization: Convex <admin key>`), as the voice worker does.
  Body (JSON): {"channelId": str, "participantType"?: "user"|"agent" (default "user"),
  "participantId"?: str (default: the caller's user id), "sessionKey"?: str (an agent by session key)}.
  200 {"token", "serverUrl", "room", "identity"} (Cache-Control: no-store); refusals answer the
  function's ConvexError code as {"code", "message"}: 400 bad body / INVALID_VOICE_CHANNEL /
  NOT_AN_AGENT, 401 UNAUTHENTICATED, 403 NO_TENANT / FORBIDDEN, 404 NOT_FOUND, 503 CONFIG_MISSING.

POST /livekit/webhook — LiveKit's signed webhook. `Authorization` holds a JWT (HS256 with
$LIVEKIT_API_SECRET, iss = $LIVEKIT_API_KEY) whose `sha256` claim is the base64 SHA-256 of the raw
body; livekit-api's WebhookReceiver checks both over the bytes exactly as received. A bad or missing
signature is 401 and nothing is written. participant_joined / participant_left /
participant_connection_aborted / room_finished go to the internal mutations of livekitEvents.py
(which make duplicates no-ops); other events are acknowledged with 200 and ignored.
Each event's participant session sid goes along: a session that has left is remembered in the
room's document, so a retried participant_joined of it arriving after its leave does not bring it
back, even across a restart.
"""

from __future__ import annotations

from engine import ConvexError, NestedFunctionError, Response, env, http_action, json_response
from engine.errors import EngineError

from .._tenancy import LOCAL_USER_ID

MAX_WEBHOOK_BODY = 1024 * 1024  # LiveKit's events are a few KiB

_STATUS = {
    "UNAUTHENTICATED": 401,
    "NO_TENANT": 403,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "CONFIG_MISSING": 503,
}
_NO_STORE = {"cache-control": "no-store"}


def _error(status: int, code: str, message: str) -> Response:
    return json_response({"code": code, "message": message}, status, _NO_STORE)


def _refusal(e: ConvexError) -> Response:
    data = e.data if isinstance(e.data, dict) else {}
    code = str(data.get("code", "BAD_REQUEST"))
    return _error(_STATUS.get(code, 400), code, str(data.get("message", code)))


# --- POST /voice/token -----------------------------------------------------------------------------


@http_action
async def voice_token(ctx, request):
    if request.headers.get("authorization", "").strip()[:7].lower() == "convex ":
        return _error(401, "UNAUTHENTICATED", "This route takes a user's Bearer token; with the admin key, call "
                      "voice:getVoiceToken through POST /api/mutation (Authorization: Convex <admin key>).")
    try:
        body = await request.json()
    except ValueError as e:  # not JSON, or nested past the parser's limit (the reason says which)
        return _error(400, "BAD_REQUEST", f"The body must be a JSON object: {e}")
    if not isinstance(body, dict):
        return _error(400, "BAD_REQUEST", "The body must be a JSON object.")
    channel_id = body.get("channelId")
    participant_type = body.get("participantType", "user")
    participant_id = body.get("participantId")
    session_key = body.get("sessionKey")
    if not isinstance(channel_id, str) or not channel_id:
        return _error(400, "BAD_REQUEST", "`channelId` (a voice channel's id) is required.")
    if participant_type not in ("user", "agent"):
        return _error(400, "BAD_REQUEST", '`participantType` must be "user" or "agent".')
    for name, value in (("participantId", participant_id), ("sessionKey", session_key)):
        if value is not None and not isinstance(value, str):
            return _error(400, "BAD_REQUEST", f"`{name}` must be a string.")
    try:
        # As in Convex, asking who calls raises when the bearer token did not verify.
        identity = await ctx.auth.get_user_identity()
    except EngineError as e:
        return _error(401, "UNAUTHENTICATED", f"The bearer token was refused: {e.message}")
    try:
        if participant_id is None and participant_type == "agent":
            if session_key is None:
                return _error(400, "BAD_REQUEST", "An agent participant needs `participantId` or `sessionKey`.")
            participant_id = (await ctx.run_query("agents:get", {"sessionKey": session_key}))["_id"]
        elif participant_id is None:
            participant_id = identity.get("subject") if identity else LOCAL_USER_ID
        result = await ctx.run_mutation("voice:getVoiceToken", {
            "channelId": channel_id, "participantId": participant_id, "participantType": participant_type})
    except ConvexError as e:
        return _refusal(e)
    except NestedFunctionError as e:  # the mutation failed without a ConvexError
        if e.message.startswith("ArgumentValidationError: "):
            return _error(400, "BAD_REQUEST", e.message.removeprefix("ArgumentValidationError: ").strip())
        raise
    return json_response({**result, "room": f"channel-{channel_id}", "identity": participant_id},
                         headers=_NO_STORE)


# --- POST /livekit/webhook -------------------------------------------------------------------------


def _ms(seconds: int, ms: int = 0) -> float:
    return float(ms or seconds * 1000)


@http_action
async def livekit_webhook(ctx, request):
    from google.protobuf.json_format import ParseError
    from livekit.api import TokenVerifier, WebhookReceiver

    raw = await request.body()
    if len(raw) > MAX_WEBHOOK_BODY:
        return _error(413, "PAYLOAD_TOO_LARGE", f"A webhook body is at most {MAX_WEBHOOK_BODY} bytes.")
    api_key, api_secret = env.get("LIVEKIT_API_KEY"), env.get("LIVEKIT_API_SECRET")
    if not api_key or not api_secret:
        print("LiveKit webhook refused: LIVEKIT_API_KEY / LIVEKIT_API_SECRET are not set")
        return _error(503, "CONFIG_MISSING", "LIVEKIT_API_KEY and LIVEKIT_API_SECRET must be set to verify webhooks.")
    auth = request.headers.get("authorization", "").strip()
    if auth[:7].lower() == "bearer ":  # LiveKit sends the bare JWT; tolerate proxies that add a scheme
        auth = auth[7:].strip()
    if not auth:
        return _error(401, "UNAUTHENTICATED", "The webhook has no Authorization header.")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return _error(400, "BAD_REQUEST", "The webhook body is not UTF-8 JSON.")
    try:
        event = WebhookReceiver(TokenVerifier(api_key, api_secret)).receive(text, auth)
    except ParseError as e:  # only reached after the signature and the body hash checked out
        return _error(400, "BAD_REQUEST", f"The webhook body is not a LiveKit WebhookEvent: {e}")
    except Exception as e:  # noqa: BLE001 - jwt errors, "hash mismatch", "sha256 was not found"
        print(f"LiveKit webhook refused: the signature does not verify ({type(e).__name__})")
        return _error(401, "BAD_SIGNATURE", "The webhook signature does not verify.")

    kind = event.event
    room = event.room.name
    who = event.participant
    if kind in ("participant_joined", "participant_left", "participant_connection_aborted"):
        path = "livekitEvents:participantJoined" if kind == "participant_joined" else "livekitEvents:participantLeft"
        result = await ctx.run_mutation(path, {"room": room, "identity": who.identity, "sid": who.sid,
                                               "joinedAtMs": _ms(who.joined_at, who.joined_at_ms)})
    elif kind == "room_finished":
        result = await ctx.run_mutation("livekitEvents:roomFinished", {
            "room": room, "finishedAtMs": _ms(event.created_at)})
    else:
        return json_response({"ok": True, "applied": False, "reason": f"{kind or 'unknown'} events are not tracked"})
    print(f"LiveKit {kind} {room}: {'applied' if result['applied'] else 'no change'} ({result['reason']})")
    return json_response({"ok": True, **result})

