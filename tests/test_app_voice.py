"""getVoiceToken: a LiveKit token that verifies with livekit-api's TokenVerifier and grants the room."""

from livekit.api import TokenVerifier

from app_harness import ALICE, BOB, nova, app_env  # noqa: F401  (fixtures)

KEY, SECRET, URL = "APInova", "s3cr3t-" + "x" * 32, "wss://livekit.nova.test"


def livekit_env(app_env):
    app_env.setenv("LIVEKIT_API_KEY", KEY)
    app_env.setenv("LIVEKIT_API_SECRET", SECRET)
    app_env.setenv("LIVEKIT_URL", URL)


async def test_token_verifies_and_carries_the_room_grant(nova, app_env):
    livekit_env(app_env)
    ids = await nova.seed("t1")
    room = ids["#war-room"]
    result = await nova.mutation("voice:getVoiceToken",
                                 {"channelId": room, "participantId": "alice", "participantType": "user"})
    assert result["serverUrl"] == URL
    claims = TokenVerifier(KEY, SECRET).verify(result["token"])
    assert claims.identity == "alice"
    assert claims.video.room == f"channel-{room}"
    assert claims.video.room_join is True
    assert claims.video.can_publish is True and claims.video.can_subscribe is True

    # An agent joins too (by its agent id); the room records both, a rejoin does not duplicate.
    agent = await nova.mutation("voice:getVoiceToken",
                                {"channelId": room, "participantId": ids["Friday"], "participantType": "agent"})
    agent_claims = TokenVerifier(KEY, SECRET).verify(agent["token"])
    assert agent_claims.identity == ids["Friday"] and agent_claims.name == "Friday"
    await nova.mutation("voice:getVoiceToken", {"channelId": room, "participantId": "alice", "participantType": "user"})
    state = await nova.query("voice:getRoom", {"channelId": room})
    assert state["livekitRoom"] == f"channel-{room}"
    assert [(p["id"], p["type"]) for p in state["participants"]] == [(ids["Friday"], "agent"), ("alice", "user")]

    await nova.mutation("voice:leave", {"channelId": room, "participantId": "alice", "participantType": "user"})
    state = await nova.query("voice:getRoom", {"channelId": room})
    assert [p["id"] for p in state["participants"]] == [ids["Friday"]]


async def test_refusals(nova, app_env):
    ids = await nova.seed("t1")
    room = {"channelId": ids["#war-room"], "participantId": "alice", "participantType": "user"}
    # Configuration first: a clear error naming the missing variable, nothing recorded.
    data = (await nova.dep.call("voice:getVoiceToken", room, kind="mutation", auth=ALICE)).error_data
    assert data["code"] == "CONFIG_MISSING" and data["variable"] == "LIVEKIT_API_KEY"
    livekit_env(app_env)
    app_env.delenv("LIVEKIT_URL")
    assert await nova.error_code("mutation", "voice:getVoiceToken", room) == "CONFIG_MISSING"
    livekit_env(app_env)

    # "Invalid voice channel": a text channel, a missing one, another tenant's.
    assert await nova.error_code("mutation", "voice:getVoiceToken",
                                 {**room, "channelId": ids["#general"]}) == "INVALID_VOICE_CHANNEL"
    assert await nova.error_code("mutation", "voice:getVoiceToken",
                                 {**room, "channelId": ids["Friday"]}) == "INVALID_VOICE_CHANNEL"
    await nova.seed("t2")
    assert await nova.error_code("mutation", "voice:getVoiceToken", {**room, "participantId": "bob"},
                                 auth=BOB) == "INVALID_VOICE_CHANNEL"
    # A user joins as themselves only; an agent participant must be an agent of the tenant.
    assert await nova.error_code("mutation", "voice:getVoiceToken", {**room, "participantId": "mallory"}) == "FORBIDDEN"
    assert await nova.error_code("mutation", "voice:getVoiceToken",
                                 {**room, "participantId": "alice", "participantType": "agent"}) == "NOT_AN_AGENT"
    assert await nova.query("voice:getRoom", {"channelId": ids["#war-room"]}) is None
