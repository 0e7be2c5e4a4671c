"""POST /livekit/webhook in-process: how LiveKit's room events keep voiceRooms.participants true.

Webhooks are signed with livekit-api itself (AccessToken.with_sha256 over the raw body, HS256 with
the API secret, iss = API key — what LiveKit's server does) and dispatched through the deployment's
HTTP router exactly as the server would. The real-server tests are in test_livekit_http.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time

from google.protobuf.json_format import MessageToJson
from livekit.api import AccessToken
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

from app_harness import ADMIN, nova, app_env  # noqa: F401  (fixtures)
from engine.http_api import HttpRequest

KEY, SECRET, URL = "APInova", "s3cr3t-" + "x" * 32, "wss://livekit.nova.test"
T0 = 1_760_000_000_000  # ms; LiveKit's clock in these events


def livekit_env(app_env) -> None:
    app_env.setenv("LIVEKIT_API_KEY", KEY)
    app_env.setenv("LIVEKIT_API_SECRET", SECRET)
    app_env.setenv("LIVEKIT_URL", URL)


def event(kind: str, room: str, *, identity: str | None = None, sid: str = "", joined_ms: int = 0,
          created_s: int | None = None) -> bytes:
    ev = WebhookEvent(event=kind, room=Room(name=room, sid="RM_1"), id=f"EV_{kind}_{identity}_{sid}_{joined_ms}",
                      created_at=created_s if created_s is not None else int(time.time()))
    if identity is not None:
        ev.participant.CopyFrom(ParticipantInfo(sid=sid, identity=identity, joined_at=joined_ms // 1000,
                                                joined_at_ms=joined_ms))
    return MessageToJson(ev).encode()


def signature(body: bytes, key: str = KEY, secret: str = SECRET) -> str:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return AccessToken(key, secret).with_sha256(digest).to_jwt()


class Hooks:
    def __init__(self, nova) -> None:
        self.nova = nova

    async def post(self, body: bytes, auth: str | None = "sign") -> tuple[int, dict]:
        headers = {"content-type": "application/webhook+json"}
        if auth == "sign":
            auth = signature(body)
        if auth is not None:
            headers["authorization"] = auth
        response = await self.nova.dep.handle_http_action(HttpRequest("POST", "/livekit/webhook", headers, {}, body))
        return response.status, json.loads(response.body)

    async def send(self, body: bytes) -> dict:
        status, answer = await self.post(body)
        assert status == 200, answer
        return answer

    async def participants(self, channel: str) -> list[tuple[str, str, float]]:
        room = await self.nova.query("voice:getRoom", {"channelId": channel}, auth=ADMIN)
        return [] if room is None else [(p["id"], p["type"], p["joinedAt"]) for p in room["participants"]]


async def seeded(nova, app_env) -> tuple[Hooks, dict[str, str]]:
    livekit_env(app_env)
    app_env.setenv("NOVA_AGENT_TENANT", "t1")
    return Hooks(nova), await nova.seed("t1")


async def test_join_leave_finish_and_duplicates(nova, app_env):
    hooks, ids = await seeded(nova, app_env)
    channel, friday = ids["#war-room"], ids["Friday"]
    room = f"channel-{channel}"
    alice_joins = event("participant_joined", room, identity="alice", sid="PA_a1", joined_ms=T0)

    assert await hooks.send(alice_joins) == {"ok": True, "applied": True, "reason": "joined"}
    await hooks.send(event("participant_joined", room, identity=friday, sid="PA_f1", joined_ms=T0 + 1000))
    assert await hooks.participants(channel) == [("alice", "user", T0), (friday, "agent", T0 + 1000)]

    # LiveKit retries: the same event again changes nothing (no commit either).
    before = nova.dep.latest_ts()
    assert (await hooks.send(alice_joins))["applied"] is False
    assert nova.dep.latest_ts() == before

    left = event("participant_left", room, identity="alice", sid="PA_a1", joined_ms=T0)
    assert (await hooks.send(left))["applied"] is True
    assert (await hooks.send(left))["applied"] is False
    # A retried join of the session that already left does not bring it back.
    assert await hooks.send(alice_joins) == {"ok": True, "applied": False, "reason": "this session already left"}
    assert await hooks.participants(channel) == [(friday, "agent", T0 + 1000)]

    aborted = event("participant_connection_aborted", room, identity=friday, sid="PA_f1", joined_ms=T0 + 1000)
    assert (await hooks.send(aborted))["applied"] is True
    assert await hooks.participants(channel) == []

    await hooks.send(event("participant_joined", room, identity="alice", sid="PA_a2", joined_ms=T0 + 5000))
    finished = event("room_finished", room, created_s=(T0 + 60_000) // 1000)
    assert (await hooks.send(finished))["applied"] is True
    assert await hooks.participants(channel) == []
    assert (await hooks.send(finished))["applied"] is False


async def test_reordered_events_of_a_rejoining_participant(nova, app_env):
    hooks, ids = await seeded(nova, app_env)
    channel = ids["#war-room"]
    room = f"channel-{channel}"
    # Alice's first session, then a second one a minute later; the first session's leave comes last.
    await hooks.send(event("participant_joined", room, identity="alice", sid="PA_1", joined_ms=T0))
    await hooks.send(event("participant_joined", room, identity="alice", sid="PA_2", joined_ms=T0 + 60_000))
    late_leave = await hooks.send(event("participant_left", room, identity="alice", sid="PA_1", joined_ms=T0))
    assert late_leave["applied"] is False
    # And a late duplicate of the first join does not move the entry back in time.
    late_join = await hooks.send(event("participant_joined", room, identity="alice", sid="PA_1", joined_ms=T0))
    assert late_join["applied"] is False
    assert await hooks.participants(channel) == [("alice", "user", T0 + 60_000)]

    # An old room_finished replayed after the room was started again keeps the newer session.
    stale_finish = event("room_finished", room, created_s=(T0 + 30_000) // 1000)
    assert (await hooks.send(stale_finish))["applied"] is False
    assert await hooks.participants(channel) == [("alice", "user", T0 + 60_000)]


async def test_a_leave_delivered_before_its_join_keeps_the_session_out(nova, app_env):
    hooks, ids = await seeded(nova, app_env)
    channel = ids["#war-room"]
    room = f"channel-{channel}"
    # LiveKit does not promise order: this session's leave arrives first, in a room with no record yet.
    leave = await hooks.send(event("participant_left", room, identity="bob", sid="PA_b1", joined_ms=T0))
    assert leave == {"ok": True, "applied": False, "reason": "not in the room"}
    join = await hooks.send(event("participant_joined", room, identity="bob", sid="PA_b1", joined_ms=T0))
    assert join == {"ok": True, "applied": False, "reason": "this session already left"}
    assert await hooks.participants(channel) == []
    # A new session of the same person is a real join.
    assert (await hooks.send(event("participant_joined", room, identity="bob", sid="PA_b2",
                                   joined_ms=T0 + 9_000)))["applied"] is True
    assert await hooks.participants(channel) == [("bob", "user", T0 + 9_000)]


async def test_ended_sessions_outlive_a_restart(app_env, tmp_path):
    from app_harness import Nova
    from conftest import REPO_ROOT
    from engine.deployment import Deployment

    db = str(tmp_path / "nova.sqlite3")
    dep = await Deployment.open(REPO_ROOT, db)
    try:
        hooks, ids = await seeded(Nova(dep), app_env)
        room = f"channel-{ids['#war-room']}"
        joined = event("participant_joined", room, identity="alice", sid="PA_a1", joined_ms=T0)
        await hooks.send(joined)
        await hooks.send(event("participant_left", room, identity="alice", sid="PA_a1", joined_ms=T0))
    finally:
        await dep.close()
    dep = await Deployment.open(REPO_ROOT, db)  # a new process would start just like this
    try:
        hooks = Hooks(Nova(dep))
        assert await hooks.send(joined) == {"ok": True, "applied": False, "reason": "this session already left"}
        assert await hooks.participants(ids["#war-room"]) == []
    finally:
        await dep.close()


async def test_ended_sessions_are_bounded_per_room(nova, app_env):
    from functions.livekitEvents import ENDED_SESSIONS_KEPT

    hooks, ids = await seeded(nova, app_env)
    room = f"channel-{ids['#war-room']}"
    for n in range(ENDED_SESSIONS_KEPT + 5):
        await nova.mutation("livekitEvents:participantLeft", {"room": room, "identity": f"u{n}", "sid": f"PA_{n}",
                                                              "joinedAtMs": float(T0 + n)}, auth=ADMIN)
    doc = await nova.query("voice:getRoom", {"channelId": ids["#war-room"]}, auth=ADMIN)
    assert doc["endedSessions"] == [f"PA_{n}" for n in range(5, ENDED_SESSIONS_KEPT + 5)]


async def test_token_then_webhook_is_one_entry(nova, app_env):
    """voice:getVoiceToken records the participant at token time; the join webhook confirms the same
    entry with LiveKit's join time instead of adding a second one."""
    hooks, ids = await seeded(nova, app_env)
    channel, friday = ids["#war-room"], ids["Friday"]
    await nova.mutation("voice:getVoiceToken", {"channelId": channel, "participantId": friday,
                                                "participantType": "agent"}, auth=ADMIN)
    [(who, kind, minted)] = await hooks.participants(channel)
    assert (who, kind) == (friday, "agent")
    joined = int(minted) + 700
    await hooks.send(event("participant_joined", f"channel-{channel}", identity=friday, sid="PA_f", joined_ms=joined))
    assert await hooks.participants(channel) == [(friday, "agent", joined)]
    await hooks.send(event("participant_left", f"channel-{channel}", identity=friday, sid="PA_f", joined_ms=joined))
    assert await hooks.participants(channel) == []


async def test_rooms_that_are_not_ours_and_other_events_are_acknowledged(nova, app_env):
    hooks, ids = await seeded(nova, app_env)
    before = nova.dep.latest_ts()
    for room in ("standup-room", f"channel-{ids['#general']}", f"channel-{ids['Friday']}", "channel-nope"):
        answer = await hooks.send(event("participant_joined", room, identity="alice", sid="PA", joined_ms=T0))
        assert answer["applied"] is False, room
    assert (await hooks.send(event("track_published", f"channel-{ids['#war-room']}")))["applied"] is False
    assert (await hooks.send(event("room_started", f"channel-{ids['#war-room']}")))["applied"] is False
    assert nova.dep.latest_ts() == before


async def test_refusals_change_nothing(nova, app_env):
    hooks, ids = await seeded(nova, app_env)
    body = event("participant_joined", f"channel-{ids['#war-room']}", identity="alice", sid="PA", joined_ms=T0)
    other = event("participant_joined", f"channel-{ids['#war-room']}", identity="mallory", sid="PM", joined_ms=T0)
    before = nova.dep.latest_ts()
    cases = [
        (body, None, 401),                                              # no Authorization
        (body, signature(body, secret="wrong-secret-" + "y" * 32), 401),  # another secret
        (body, signature(body, key="APIother"), 401),                   # another key (iss)
        (body, signature(other), 401),                                  # signed another body
        (body + b" ", signature(body), 401),                            # body changed after signing
        (body, AccessToken(KEY, SECRET).to_jwt(), 401),                 # no sha256 claim
        (body, "not-a-jwt", 401),
        (b"\xff\xfe", signature(b"\xff\xfe"), 400),                     # not UTF-8
        (b"[1, 2", signature(b"[1, 2"), 400),                           # signed, but not an event
        (b"x" * (1024 * 1024 + 1), "whatever", 413),
    ]
    for raw, auth, status in cases:
        got, answer = await hooks.post(raw, auth)
        assert got == status, (raw[:40], answer)
        assert "code" in answer and SECRET not in json.dumps(answer)
    assert nova.dep.latest_ts() == before
    assert await hooks.participants(ids["#war-room"]) == []

    # "Bearer <jwt>" (a proxy's habit) is accepted like the bare JWT LiveKit sends.
    status, _ = await hooks.post(body, "Bearer " + signature(body))
    assert status == 200 and [p[0] for p in await hooks.participants(ids["#war-room"])] == ["alice"]

    # Without the LiveKit secret nothing can be verified: 503, nothing written.
    app_env.delenv("LIVEKIT_API_SECRET")
    before = nova.dep.latest_ts()
    status, answer = await hooks.post(event("room_finished", f"channel-{ids['#war-room']}"))
    assert (status, answer["code"]) == (503, "CONFIG_MISSING")
    assert nova.dep.latest_ts() == before
