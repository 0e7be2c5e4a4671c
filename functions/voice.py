"""Voice: LiveKit access tokens for a voice channel's room, and who is in the room.

`getVoiceToken` is the spec's mutation: the token is minted locally (HS256 with the API secret, no
network I/O, so a mutation may do it) for room `channel-<channelId>`, and the participant is recorded
in `voiceRooms` (a rejoin replaces the participant's entry). Needs $LIVEKIT_API_KEY,
$LIVEKIT_API_SECRET and $LIVEKIT_URL.
"""

from engine import env, mutation, query, v

from ._clock import now_ms
from ._docs import doc
from ._errors import app_error
from ._tenancy import current_caller, load, resolve_actor


def setting(name: str) -> str:
    value = env.get(name)
    if not value:
        raise app_error("CONFIG_MISSING", f"${name} is not set: voice needs LIVEKIT_API_KEY, "
                        "LIVEKIT_API_SECRET and LIVEKIT_URL in the deployment's environment.", variable=name)
    return value


async def room_of(ctx, channel_id):
    return await ctx.db.query("voiceRooms").with_index("by_channel", lambda q: q.eq("channelId", channel_id)).first()


@mutation(args={
    "channelId": v.string(),
    "participantId": v.string(),
    "participantType": v.union(v.literal("user"), v.literal("agent")),
}, returns=v.object({"token": v.string(), "serverUrl": v.string()}))
async def getVoiceToken(ctx, args):
    from livekit.api import AccessToken, VideoGrants  # heavy import, only when voice is used

    caller = await current_caller(ctx)
    channel = await load(ctx, "channels", args["channelId"], caller.tenant_id, code="INVALID_VOICE_CHANNEL")
    if channel["type"] != "voice":
        raise app_error("INVALID_VOICE_CHANNEL", "Invalid voice channel", channelId=args["channelId"])
    participant = await resolve_actor(ctx, caller, args["participantId"], args["participantType"])
    api_key, api_secret = setting("LIVEKIT_API_KEY"), setting("LIVEKIT_API_SECRET")
    server_url = setting("LIVEKIT_URL")

    # Create LiveKit access token
    room = f"channel-{channel['_id']}"
    token = (AccessToken(api_key, api_secret)
             .with_identity(participant.id)
             .with_name(participant.name)
             .with_grants(VideoGrants(
                 room=room,
                 room_join=True,
                 can_publish=True,
                 can_subscribe=True,
             )))

    # Update voiceRooms table
    entry = {"id": participant.id, "type": participant.type, "joinedAt": now_ms()}
    voice_room = await room_of(ctx, channel["_id"])
    if voice_room is None:
        await ctx.db.insert("voiceRooms", {"channelId": channel["_id"], "livekitRoom": room,
                                           "participants": [entry], "tenantId": caller.tenant_id})
    else:
        others = [p for p in voice_room["participants"] if p["id"] != participant.id]
        await ctx.db.patch(voice_room["_id"], {"participants": [*others, entry]})

    return {
        "token": token.to_jwt(),
        "serverUrl": server_url,
    }


@mutation(args={"channelId": v.string(), "participantId": v.string(),
                "participantType": v.union(v.literal("user"), v.literal("agent"))}, returns=v.null())
async def leave(ctx, args):
    """Remove a participant from the room's state (no-op if absent)."""
    caller = await current_caller(ctx)
    channel = await load(ctx, "channels", args["channelId"], caller.tenant_id)
    participant = await resolve_actor(ctx, caller, args["participantId"], args["participantType"])
    voice_room = await room_of(ctx, channel["_id"])
    if voice_room is not None:
        remaining = [p for p in voice_room["participants"] if p["id"] != participant.id]
        if len(remaining) != len(voice_room["participants"]):
            await ctx.db.patch(voice_room["_id"], {"participants": remaining})
    return None


@query(args={"channelId": v.string()}, returns=v.union(doc("voiceRooms"), v.null()))
async def getRoom(ctx, args):
    """The room's state, or null before anyone joined."""
    caller = await current_caller(ctx)
    channel = await load(ctx, "channels", args["channelId"], caller.tenant_id)
    return await room_of(ctx, channel["_id"])
