"""The agent's LiveKit token, fetched from the engine over HTTP (a fresh one for every connection).

Two ways in, both ending in voice:getVoiceToken (voice channel only, room `channel-<channelId>`, the
agent recorded in voiceRooms):
- admin key (`Authorization: Convex <key>`, the agent's usual credential): the Convex HTTP API on the
  engine URL — `POST /api/query agents:get {sessionKey}` for the agent id, then
  `POST /api/mutation voice:getVoiceToken`; the admin acts in $NOVA_AGENT_TENANT on the server;
- a user JWT (`Authorization: Bearer <jwt>`): `POST <site url>/voice/token` with
  `{channelId, participantType: "agent", sessionKey}`; the tenant is the user's.
Failures are TokenError: `permanent` ones (any 4xx but 408/429: bad channel, unknown agent, rejected
credentials) stop the worker; the rest (engine down, 5xx, LiveKit not configured yet — CONFIG_MISSING,
503 on /voice/token, an error value of the mutation on the API) are retried with back-off.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, cast

# ConvexError codes that retrying cannot fix. CONFIG_MISSING is not one: the operator can set the
# LiveKit variables on the running server (`python -m engine env set`).
PERMANENT_CODES = frozenset({"INVALID_VOICE_CHANNEL", "NOT_AN_AGENT", "NOT_FOUND", "FORBIDDEN",
                             "UNAUTHENTICATED", "NO_TENANT", "BAD_REQUEST", "INVALID_ARGUMENTS"})


@dataclass(frozen=True, slots=True)
class VoiceGrant:
    token: str
    server_url: str
    room: str
    identity: str

    def __repr__(self) -> str:  # never print the token
        return f"VoiceGrant(room={self.room!r}, identity={self.identity!r}, server_url={self.server_url!r})"


class TokenError(Exception):
    def __init__(self, message: str, *, permanent: bool, code: str | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.code = code


class EngineTokenSource:
    def __init__(self, engine_url: str, channel_id: str, agent_session_key: str, *, admin_key: str | None = None,
                 user_token: str | None = None, site_url: str | None = None, timeout: float = 10.0) -> None:
        if not admin_key and not user_token:
            raise ValueError("EngineTokenSource needs the admin key or a user token")
        self.engine_url = engine_url.rstrip("/")
        self.site_url = (site_url or engine_url).rstrip("/")
        self.channel_id = channel_id
        self.agent_session_key = agent_session_key
        self._admin_key = admin_key
        self._user_token = user_token
        self.timeout = timeout
        self._agent_id: str | None = None

    async def fetch(self) -> VoiceGrant:
        return await asyncio.to_thread(self._fetch)

    async def agent_ids(self) -> frozenset[str]:
        """Ids of the tenant's agents (`agents:list` on the Convex HTTP API, with either credential)."""
        agents = await asyncio.to_thread(self._call, "query", "agents:list", {})
        return frozenset(a["_id"] for a in agents)

    # -- blocking part (runs in a thread) -----------------------------------------------------------

    def _fetch(self) -> VoiceGrant:
        room = f"channel-{self.channel_id}"
        if self._admin_key:
            if self._agent_id is None:
                agent = self._call("query", "agents:get", {"sessionKey": self.agent_session_key})
                self._agent_id = agent["_id"]
            result = self._call("mutation", "voice:getVoiceToken", {
                "channelId": self.channel_id, "participantId": self._agent_id, "participantType": "agent"})
            return VoiceGrant(result["token"], result["serverUrl"], room, cast(str, self._agent_id))
        body = {"channelId": self.channel_id, "participantType": "agent", "sessionKey": self.agent_session_key}
        status, answer = self._post(f"{self.site_url}/voice/token", body, self._authorization())
        if status != 200:
            code = answer.get("code") if isinstance(answer, dict) else None
            message = answer.get("message") if isinstance(answer, dict) else None
            raise TokenError(f"POST /voice/token answered {status} {code}: {message}", permanent=True, code=code)
        return VoiceGrant(answer["token"], answer["serverUrl"], answer.get("room", room), answer["identity"])

    def _call(self, kind: str, path: str, args: dict[str, Any]) -> Any:
        status, answer = self._post(f"{self.engine_url}/api/{kind}", {"path": path, "args": args, "format": "json"},
                                    self._authorization())
        if status != 200:
            code = answer.get("code") if isinstance(answer, dict) else None
            raise TokenError(f"/api/{kind} {path} answered {status} {code}", permanent=True, code=code)
        if answer.get("status") == "success":
            return answer["value"]
        data = answer.get("errorData")
        code = data.get("code") if isinstance(data, dict) else None
        raise TokenError(f"{path} failed: {answer.get('errorMessage')}", permanent=code in PERMANENT_CODES, code=code)

    def _authorization(self) -> str:
        return f"Convex {self._admin_key}" if self._admin_key else f"Bearer {self._user_token}"

    def _post(self, url: str, body: dict[str, Any], authorization: str) -> tuple[int, Any]:
        request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={
            "content-type": "application/json", "authorization": authorization})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return response.status, _json(response.read())
        except urllib.error.HTTPError as e:
            with e:
                payload = _json(e.read())
            if e.code >= 500 or e.code in (408, 429):  # the engine is struggling or not ready: later
                code = payload.get("code") if isinstance(payload, dict) else None
                raise TokenError(f"{url} answered {e.code} {code or ''}".rstrip(), permanent=False, code=code) from None
            return e.code, payload
        except (urllib.error.URLError, OSError, TimeoutError) as e:
            raise TokenError(f"cannot reach the engine at {url}: {e}", permanent=False) from None


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None
