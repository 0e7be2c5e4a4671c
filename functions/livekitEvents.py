"""LiveKit room events -> `voiceRooms.participants` (internal; called by POST /livekit/webhook).

The webhook handler (functions/_http/livekit.py) verifies the signature, then calls one of these
with the event's facts. Rules, chosen so that LiveKit's at-least-once, possibly reordered delivery
converges on who is really in the room:

- A room belongs to Nova Command when its name is `channel-<id of a voice channel>`; anything else
  is ignored (answered 200, so LiveKit does not retry it). The tenant is the channel's.
- A participant session is named by LiveKit's `sid`. A leave (or abort) records the sid in the
  room's `endedSessions` (the last ENDED_SESSIONS_KEPT of them), even when the participant is not in
  the room yet: a join of an ended session, retried or delivered after its leave, is refused.
- `participantJoined` upserts the identity's entry with `joinedAt` = LiveKit's join time of that
  session. The same session again (a duplicate webhook) changes nothing; an entry newer than the
  event by more than CLOCK_SKEW_MS belongs to a later session and is kept.
- `participantLeft` (also `participant_connection_aborted`) removes the entry unless it is newer
  than the leaving session by more than CLOCK_SKEW_MS (then it is a later session of the same
  identity: a rejoin, whose own leave will come).
- `roomFinished` removes every entry not newer than the finish time (+ CLOCK_SKEW_MS), so a late
  replay of an old room_finished does not empty a room that was started again.
- Participant type: "agent" when the identity is an agent id of the room's tenant (agents join
  with their agent id, see voice:getVoiceToken), else the existing entry's type, else "user".
Every mutation returns `{"applied": bool, "reason": str}` and writes nothing when not applied.
CLOCK_SKEW_MS tolerates a LiveKit server clock that differs from the engine's (getVoiceToken
stamps entries with the engine's clock before the join).
"""

from typing import Any

from engine import internal_mutation, v

from ._clock import now_ms

CLOCK_SKEW_MS = 5_000.0
ROOM_PREFIX = "channel-"
ENDED_SESSIONS_KEPT = 200  # per room; LiveKit retries a webhook for minutes, not for hundreds of sessions

_result = v.object({"applied": v.boolean(), "reason": v.string()})
_participant = {
    "room": v.string(),
    "identity": v.string(),
    # LiveKit's join time of this participant session (ms); 0 when the event did not carry it.
    "joinedAtMs": v.number(),
    # LiveKit's participant session id (`PA_...`); "" when the event did not carry it.
    "sid": v.optional(v.string()),
}


def _done(applied: bool, reason: str) -> dict[str, Any]:
    return {"applied": applied, "reason": reason}


async def _room(ctx, room_name: str, *, create: bool) -> tuple[dict[str, Any] | None, str]:
    """(voiceRooms document or None, reason). With `create`, a voice channel's first event makes it."""
    if not room_name.startswith(ROOM_PREFIX):
        return None, "not a Nova Command room"
    channel_id = ctx.db.normalize_id("channels", room_name[len(ROOM_PREFIX):])
    channel = await ctx.db.get(channel_id) if channel_id is not None else None
    if channel is None or channel.get("type") != "voice":
        return None, "no voice channel for this room"
    room = await ctx.db.query("voiceRooms").with_index("by_channel", lambda q: q.eq("channelId", channel["_id"])).first()
    if room is None and create:
        room_id = await ctx.db.insert("voiceRooms", {"channelId": channel["_id"], "livekitRoom": room_name,
                                                     "participants": [], "tenantId": channel["tenantId"]})
        room = await ctx.db.get(room_id)
    return room, "no participants recorded" if room is None else ""


async def _participant_type(ctx, room: dict[str, Any], identity: str, existing: dict[str, Any] | None) -> str:
    agent_id = ctx.db.normalize_id("agents", identity)
    agent = await ctx.db.get(agent_id) if agent_id is not None else None
    if agent is not None and agent.get("tenantId") == room["tenantId"]:
        return "agent"
    return existing["type"] if existing is not None else "user"


@internal_mutation(args=_participant, returns=_result)
async def participantJoined(ctx, args):
    room, reason = await _room(ctx, args["room"], create=True)
    if room is None:
        return _done(False, reason)
    if args.get("sid") and args["sid"] in room.get("endedSessions", ()):
        return _done(False, "this session already left")
    participants = room["participants"]
    existing = next((p for p in participants if p["id"] == args["identity"]), None)
    if existing is not None and not args["joinedAtMs"]:
        return _done(False, "already recorded")  # no session time to tell sessions apart
    joined_at = args["joinedAtMs"] or now_ms()
    if existing is not None:
        if existing["joinedAt"] == joined_at:
            return _done(False, "already recorded")
        if existing["joinedAt"] > joined_at + CLOCK_SKEW_MS:
            return _done(False, "a later session of this participant is recorded")
    entry = {"id": args["identity"], "type": await _participant_type(ctx, room, args["identity"], existing),
             "joinedAt": joined_at}
    others = [p for p in participants if p["id"] != args["identity"]]
    await ctx.db.patch(room["_id"], {"participants": [*others, entry]})
    return _done(True, "joined")


@internal_mutation(args=_participant, returns=_result)
async def participantLeft(ctx, args):
    sid = args.get("sid") or ""
    # With a sid the leave is remembered even before its join arrives, so the room is made if need be.
    room, reason = await _room(ctx, args["room"], create=bool(sid))
    if room is None:
        return _done(False, reason)
    patch: dict[str, Any] = {}
    ended = room.get("endedSessions", [])
    if sid and sid not in ended:
        patch["endedSessions"] = [*ended, sid][-ENDED_SESSIONS_KEPT:]
    participants = room["participants"]
    existing = next((p for p in participants if p["id"] == args["identity"]), None)
    session_joined = args["joinedAtMs"]
    if existing is None:
        outcome = _done(False, "not in the room")
    elif session_joined and existing["joinedAt"] > session_joined + CLOCK_SKEW_MS:
        outcome = _done(False, "a later session of this participant is recorded")
    else:
        patch["participants"] = [p for p in participants if p["id"] != args["identity"]]
        outcome = _done(True, "left")
    if patch:
        await ctx.db.patch(room["_id"], patch)
    return outcome


@internal_mutation(args={"room": v.string(), "finishedAtMs": v.number()}, returns=_result)
async def roomFinished(ctx, args):
    room, reason = await _room(ctx, args["room"], create=False)
    if room is None:
        return _done(False, reason)
    finished = args["finishedAtMs"]
    keep = [p for p in room["participants"] if finished and p["joinedAt"] > finished + CLOCK_SKEW_MS]
    if len(keep) == len(room["participants"]):
        return _done(False, "already empty" if not keep else "every participant joined after the finish")
    await ctx.db.patch(room["_id"], {"participants": keep})
    return _done(True, "finished")
