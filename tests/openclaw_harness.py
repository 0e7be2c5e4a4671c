"""Driving Nova Command's OpenClaw integration in process, on a ManualClock, for
tests/test_openclaw*.py, tests/test_delivery.py and tests/test_heartbeats.py.

    async def test_x(claw, gateway):        # the repo-root app on a ManualClock; a fake gateway
        squad = await claw.seed()            # {"Nova": id, ...} in the agent tenant "default"
        status, body = await claw.event({"runId": "r1", "action": "start", ...})
        await claw.at(claw.t0 + minutes(1))  # move the clock and run the crons due then
        gateway.agent_calls()

Time: the engine's clock (crons) is a ManualClock starting at T0 - 30 s, and the app's clock
(`functions/_clock.now_ms` as every module imported it) follows it, so "now" inside functions is
the ManualClock's. HTTP requests go through the engine's own dispatcher (`engine.http_router.
dispatch`), exactly as the server hands them over; real server processes are in
tests/test_openclaw_http.py.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from app_harness import ADMIN, PAGE, REPO_ROOT, Nova
from engine.deployment import Deployment
from engine.http_api import HttpRequest
from engine.http_router import dispatch
from engine.scheduler import ManualClock
from fakes.openclaw_gateway import FakeGateway

UTC = timezone.utc
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)  # a Monday, 08:00 UTC
HOOKS_TOKEN = "gw-hooks-token-0123"
ADMIN_KEY = "nova-admin|openclaw-test-key"
OPENCLAW_ENV = ("OPENCLAW_WEBHOOK_SECRET", "OPENCLAW_GATEWAY_URL", "OPENCLAW_HOOKS_TOKEN",
                "OPENCLAW_GATEWAY_TIMEOUT_SECONDS", "OPENCLAW_EVENT_MAX_BYTES", "OPENCLAW_END_STATUS",
                "OPENCLAW_HEARTBEAT_PROMPT", "OPENCLAW_HEARTBEAT_GRACE_MINUTES", "OPENCLAW_WAKE_TIMEOUT_MINUTES")


def ms(moment: datetime) -> float:
    return moment.timestamp() * 1000


def iso(moment: datetime) -> str:
    """The mission-control hook's timestamps: `new Date().toISOString()`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Claw(Nova):
    def __init__(self, dep: Deployment, clock: ManualClock) -> None:
        super().__init__(dep)
        self.clock = clock
        self.t0 = T0

    @property
    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now_ms() / 1000, tz=UTC)

    async def at(self, moment: datetime) -> None:
        """Move the clock to `moment` and run every cron job due then (and what they schedule)."""
        self.clock.set(moment)
        await self.dep.crons.drain()

    async def minutes(self, n: int) -> None:
        """Step the clock minute by minute, running the crons at each minute."""
        for _ in range(n):
            await self.at(self.now + timedelta(minutes=1))

    async def post(self, path: str, body: Any = None, *, raw: bytes | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any]:
        data = raw if raw is not None else json.dumps(body).encode()
        hdrs = {"content-type": "application/json", **{k.lower(): val for k, val in (headers or {}).items()}}
        response = await dispatch(self.dep, HttpRequest("POST", path, headers=hdrs, body=data))
        try:
            return response.status, json.loads(response.body)
        except ValueError:
            return response.status, response.body

    async def event(self, body: Any, *, token: str | None = None, raw: bytes | None = None,
                    headers: dict[str, str] | None = None) -> tuple[int, Any]:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["authorization"] = f"Bearer {token}"
        return await self.post("/openclaw/event", body, raw=raw, headers=hdrs)

    async def ok(self, body: Any, **kw: Any) -> dict[str, Any]:
        status, answer = await self.event(body, **kw)
        assert status == 200, answer
        return answer

    async def admin(self, kind: str, path: str, args: dict | None = None) -> Any:
        return await self.call(kind, path, args, auth=ADMIN)

    async def seed(self) -> dict[str, str]:
        await self.admin("mutation", "seed:run", {})
        return {a["name"]: a["_id"] for a in await self.admin("query", "agents:list")}

    async def board(self) -> dict[str, list[str]]:
        columns = await self.admin("query", "tasks:board")
        return {status: [t["title"] for t in tasks] for status, tasks in columns.items() if tasks}

    async def stream(self, run_id: str) -> dict[str, Any]:
        return await self.admin("query", "agentStream:getRun", {"runId": run_id})

    async def chunks(self, run_id: str) -> list[dict[str, Any]]:
        out, cursor = [], None
        while True:
            page = await self.admin("query", "openclaw:listChunks",
                                    {"runId": run_id, "paginationOpts": {"numItems": 1000.0, "cursor": cursor}})
            out += page["page"]
            if page["isDone"]:
                return out
            cursor = page["continueCursor"]

    async def feed(self, type: str | None = None) -> list[dict[str, Any]]:
        """The activity feed, oldest first."""
        args: dict[str, Any] = {"paginationOpts": {**PAGE, "numItems": 500.0}}
        if type is not None:
            args["type"] = type
        return list(reversed((await self.admin("query", "activities:list", args))["page"]))

    async def agent(self, agent_id: str) -> dict[str, Any]:
        return await self.admin("query", "agents:get", {"id": agent_id})

    async def notifications(self, agent_id: str) -> list[dict[str, Any]]:
        return await self.admin("query", "notifications:list",
                                {"recipientId": agent_id, "recipientType": "agent", "limit": 1000.0})

    def follow_clock(self, monkeypatch: pytest.MonkeyPatch) -> None:
        prefix = f"{self.dep.app.package}.functions."
        for name, module in list(sys.modules.items()):
            if name.startswith(prefix) and hasattr(module, "now_ms"):
                monkeypatch.setattr(module, "now_ms", self.clock.now_ms)


@pytest.fixture
def claw_env(app_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The app environment without any OpenClaw setting (fixtures that set some depend on this)."""
    for name in OPENCLAW_ENV:
        app_env.delenv(name, raising=False)
    return app_env


@pytest.fixture
async def claw(claw_env: pytest.MonkeyPatch):
    app_env = claw_env
    clock = ManualClock(T0 - timedelta(seconds=30))
    dep = await Deployment.open(REPO_ROOT, ":memory:", clock=clock, admin_key=ADMIN_KEY)
    c = Claw(dep, clock)
    c.follow_clock(app_env)
    try:
        yield c
    finally:
        await dep.close()


@pytest.fixture
def gateway(claw_env: pytest.MonkeyPatch):
    """A fake gateway the app is configured to use. Its answer timeout is generous (a loaded CI box
    must not turn a slow answer into a failed delivery); the test of a silent gateway shortens it."""
    app_env = claw_env
    with FakeGateway(token=HOOKS_TOKEN) as gw:
        app_env.setenv("OPENCLAW_GATEWAY_URL", gw.url)
        app_env.setenv("OPENCLAW_HOOKS_TOKEN", HOOKS_TOKEN)
        app_env.setenv("OPENCLAW_GATEWAY_TIMEOUT_SECONDS", "10")
        yield gw
