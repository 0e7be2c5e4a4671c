"""LiveKit's HTTP routes against a real engine server process (the repo root app on the site port).

POST /voice/token with a user JWT (verified by a customJwt provider whose JWKS is a data: URL) and
POST /livekit/webhook with webhooks signed by livekit-api itself; the room state is read back through
the Convex HTTP API with the admin key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from google.protobuf.json_format import MessageToJson
from jwt.algorithms import ECAlgorithm
from livekit.api import AccessToken, TokenVerifier
from livekit.protocol.models import ParticipantInfo, Room
from livekit.protocol.webhook import WebhookEvent

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET, LIVEKIT_URL = "APInova", "s3cr3t-" + "x" * 32, "wss://livekit.nova.test"
ISSUER = "https://auth.nova.test"


@pytest.fixture(scope="module")
def user_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def server_env(user_key) -> dict[str, str]:
    jwk = json.loads(ECAlgorithm.to_jwk(user_key.public_key()))
    jwks = base64.b64encode(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}).encode())
    provider = {"type": "customJwt", "issuer": ISSUER, "algorithm": "ES256",
                "jwks": "data:application/json;base64," + jwks.decode()}
    return {"LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET, "LIVEKIT_URL": LIVEKIT_URL,
            "CONVEX_AUTH_PROVIDERS": json.dumps([provider]), "NOVA_AGENT_TENANT": "default",
            "NOVA_LOCAL_TENANT": "", "NOVA_TENANT_CLAIM": ""}


def user_jwt(user_key, subject: str, tenant: str = "default") -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "sub": subject, "iat": now, "exp": now + 600, "tenantId": tenant}
    return jwt.encode(claims, user_key, algorithm="ES256", headers={"kid": "k1"})


class Api:
    def __init__(self, server, client: httpx.Client) -> None:
        self.server = server
        self.client = client

    def call(self, kind: str, path: str, args: dict | None = None):
        response = self.client.post(f"{self.server.url}/api/{kind}", json={"path": path, "args": args or {},
                                    "format": "json"}, headers={"Authorization": f"Convex {self.server.admin_key}"})
        answer = response.json()
        assert answer["status"] == "success", answer
        return answer["value"]

    def seed(self) -> dict[str, str]:
        self.call("mutation", "seed:run")
        ids = {a["name"]: a["_id"] for a in self.call("query", "agents:list")}
        ids.update({f"#{c['name']}": c["_id"] for c in self.call("query", "channels:list")})
        ids["sessionKey:Friday"] = next(a["sessionKey"] for a in self.call("query", "agents:list")
                                        if a["name"] == "Friday")
        return ids

    def room(self, channel: str) -> dict | None:
        return self.call("query", "voice:getRoom", {"channelId": channel})

    def site(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(f"{self.server.site_url}{path}", content=body, headers=headers)


@pytest.fixture
def api(server_factory, user_key):
    with httpx.Client(timeout=10) as client:
        yield Api(server_factory(REPO_ROOT, extra_env=server_env(user_key)), client)


def test_voice_token_route(api, user_key):
    ids = api.seed()
    channel = ids["#war-room"]

    def token(body: dict | bytes, auth: str | None = None) -> httpx.Response:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return api.site("/voice/token", raw, {"content-type": "application/json",
                                              **({"Authorization": auth} if auth else {})})

    alice = f"Bearer {user_jwt(user_key, 'alice')}"
    response = token({"channelId": channel}, alice)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    answer = response.json()
    assert (answer["serverUrl"], answer["room"], answer["identity"]) == (LIVEKIT_URL, f"channel-{channel}", "alice")
    claims = TokenVerifier(KEY, SECRET).verify(answer["token"])
    assert claims.identity == "alice" and claims.video.room == f"channel-{channel}"
    assert claims.video.room_join and claims.video.can_publish and claims.video.can_subscribe
    assert [(p["id"], p["type"]) for p in api.room(channel)["participants"]] == [("alice", "user")]

    # An agent by its session key (a user may bring any agent of its tenant into the room).
    agent = token({"channelId": channel, "participantType": "agent", "sessionKey": ids["sessionKey:Friday"]}, alice)
    assert agent.status_code == 200 and agent.json()["identity"] == ids["Friday"]
    assert [p["id"] for p in api.room(channel)["participants"]] == ["alice", ids["Friday"]]

    before = api.room(channel)
    refusals = [
        (token({"channelId": channel}), 401, "UNAUTHENTICATED"),
        (token({"channelId": channel}, "Bearer not-a-jwt"), 401, "UNAUTHENTICATED"),
        # The admin key is not a credential of this route (the API's voice:getVoiceToken is).
        (token({"channelId": channel}, f"Convex {api.server.admin_key}"), 401, "UNAUTHENTICATED"),
        (token({"channelId": channel}, f"Bearer {user_jwt(user_key, 'bob', tenant='')}"), 403, "NO_TENANT"),
        (token({"channelId": ids["#general"]}, alice), 400, "INVALID_VOICE_CHANNEL"),
        (token({"channelId": "nope"}, alice), 400, "INVALID_VOICE_CHANNEL"),
        (token({"channelId": channel}, f"Bearer {user_jwt(user_key, 'carol', tenant='other')}"), 400,
         "INVALID_VOICE_CHANNEL"),
        (token({"channelId": channel, "participantId": "mallory"}, alice), 403, "FORBIDDEN"),
        (token({"channelId": channel, "participantType": "agent", "participantId": "alice"}, alice), 400,
         "NOT_AN_AGENT"),
        (token({"channelId": channel, "participantType": "agent", "sessionKey": "agent:nobody"}, alice), 404,
         "NOT_FOUND"),
        (token({"channelId": channel, "participantType": "robot"}, alice), 400, "BAD_REQUEST"),
        (token({}, alice), 400, "BAD_REQUEST"),
        (token(b"{not json", alice), 400, "BAD_REQUEST"),
    ]
    for response, status, code in refusals:
        assert (response.status_code, response.json()["code"]) == (status, code), response.text
    assert api.room(channel) == before


def event(kind: str, room: str, identity: str | None = None, sid: str = "", joined_ms: int = 0) -> bytes:
    ev = WebhookEvent(event=kind, room=Room(name=room, sid="RM_1"), id=f"EV_{kind}_{sid}", created_at=int(time.time()))
    if identity is not None:
        ev.participant.CopyFrom(ParticipantInfo(sid=sid, identity=identity, joined_at=joined_ms // 1000,
                                                joined_at_ms=joined_ms))
    return MessageToJson(ev).encode()


def signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    return {"content-type": "application/webhook+json",
            "Authorization": AccessToken(KEY, secret).with_sha256(digest).to_jwt()}


def test_webhook_keeps_the_room_true(api):
    ids = api.seed()
    channel, friday = ids["#war-room"], ids["Friday"]
    room = f"channel-{channel}"
    t0 = int(time.time() * 1000)

    def hook(body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        return api.site("/livekit/webhook", body, signed(body) if headers is None else headers)

    # A hand-written body: its exact bytes (spacing, key order) are what the signature covers.
    raw = ('{ "event":"participant_joined",  "id": "EV_1", "createdAt": "%d",\n'
           ' "participant": {"joinedAtMs": "%d", "identity": "alice", "sid": "PA_a"},'
           ' "room": {"sid": "RM_1", "name": "%s"} }' % (t0 // 1000, t0, room)).encode()
    assert hook(raw).json() == {"ok": True, "applied": True, "reason": "joined"}
    joined_friday = event("participant_joined", room, friday, "PA_f", t0 + 500)
    assert hook(joined_friday).json()["applied"] is True
    state = api.room(channel)
    assert [(p["id"], p["type"], p["joinedAt"]) for p in state["participants"]] == [
        ("alice", "user", t0), (friday, "agent", t0 + 500)]

    # Duplicates (LiveKit retries) change nothing.
    for body in (raw, joined_friday):
        assert hook(body).json()["applied"] is False
    assert api.room(channel) == state

    # Bad signatures: 401 and nothing changes.
    left_alice = event("participant_left", room, "alice", "PA_a", t0)
    for headers in (signed(left_alice, secret="not-the-secret-" + "z" * 32), signed(joined_friday),
                    {"content-type": "application/webhook+json"},
                    {"Authorization": signed(left_alice)["Authorization"] + "x"}):
        response = hook(left_alice, headers)
        assert response.status_code == 401 and response.json()["code"] in ("BAD_SIGNATURE", "UNAUTHENTICATED")
    assert api.room(channel) == state

    assert hook(left_alice).json()["applied"] is True
    assert hook(left_alice).json()["applied"] is False
    assert hook(raw).json()["applied"] is False  # a late retry of the session that left
    assert [p["id"] for p in api.room(channel)["participants"]] == [friday]

    finished = event("room_finished", room)
    assert hook(finished).json()["applied"] is True
    assert api.room(channel)["participants"] == []
    assert hook(finished).json()["applied"] is False
    assert hook(event("track_published", room)).status_code == 200
    assert api.server.running
