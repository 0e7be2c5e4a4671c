"""Driving the Nova Command app (the repo root) in-process for tests/test_app_*.py.

    async def test_x(nova):
        await nova.seed("t1")
        task_id = await nova.mutation("tasks:create", {"title": "Fix auth"})        # as alice of t1
        code = await nova.error_code("mutation", "tasks:move", {"id": task_id, "status": "doing"})

Every call goes through `Deployment.call`, exactly as a client's would (argument validation,
visibility, auth). Callers are `engine.runner.Auth` values: `user("alice", "t1")`, `ADMIN`, `NOBODY`.
`freeze_clock(ms)` injects the app's clock (`functions/_clock.now_ms` as imported by each module);
the engine's own clock (creation times, commit timestamps) is never touched.
"""

from __future__ import annotations

import os

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from engine.deployment import MISSING, Deployment
from engine.runner import Auth
from engine.scheduler import ManualClock

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_ENV = ("NOVA_TENANT_CLAIM", "NOVA_AGENT_TENANT", "NOVA_LOCAL_TENANT",
           "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET", "LIVEKIT_URL")
ADMIN = Auth(admin=True)
NOBODY = Auth()
PAGE = {"numItems": 50.0, "cursor": None}


def user(subject: str, tenant: str | None = "t1", **claims: Any) -> Auth:
    identity = {"subject": subject, "issuer": "https://auth.nova.test",
                "tokenIdentifier": f"https://auth.nova.test|{subject}", **claims}
    if tenant is not None:
        identity["tenantId"] = tenant
    return Auth(identity=identity)


ALICE = user("alice", "t1")
BOB = user("bob", "t2")


class CallFailed(AssertionError):
    def __init__(self, path: str, outcome: Any) -> None:
        super().__init__(f"{path} failed: {outcome.error_message}")
        self.outcome = outcome


class Nova:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep

    async def call(self, kind: str, path: str, args: dict | None = None, auth: Auth = ALICE) -> Any:
        outcome = await self.dep.call(path, args or {}, kind=kind, auth=auth)
        if not outcome.success:
            raise CallFailed(path, outcome)
        return outcome.value

    async def query(self, path: str, args: dict | None = None, auth: Auth = ALICE) -> Any:
        return await self.call("query", path, args, auth)

    async def mutation(self, path: str, args: dict | None = None, auth: Auth = ALICE) -> Any:
        return await self.call("mutation", path, args, auth)

    async def error_code(self, kind: str, path: str, args: dict | None = None, auth: Auth = ALICE) -> str:
        """The `code` of the ConvexError the call fails with; asserts that nothing was written."""
        # Work scheduled by earlier calls (e.g. the embedding action a memory write schedules) runs
        # in the background and commits when it is done: let it finish first, so the check below
        # sees only what this call wrote (it raced on both stores; PostgreSQL lost it more often).
        await self.dep.scheduler.drain()
        before = self.dep.latest_ts()
        outcome = await self.dep.call(path, args or {}, kind=kind, auth=auth)
        assert not outcome.success, f"{path} unexpectedly succeeded: {outcome.value!r}"
        assert self.dep.latest_ts() == before, f"{path} failed but committed a write"
        assert outcome.error_data is not MISSING, f"{path} failed without ConvexError: {outcome.error_message}"
        return outcome.error_data["code"]

    async def seed(self, tenant: str = "t1") -> dict[str, str]:
        """The spec's squad in `tenant`; returns {agent name: agent id} and {"#channel": channel id}."""
        await self.mutation("seed:run", {"tenantId": tenant}, auth=ADMIN)
        who = user("seeder", tenant)
        ids = {a["name"]: a["_id"] for a in await self.query("agents:list", auth=who)}
        ids.update({f"#{c['name']}": c["_id"] for c in await self.query("channels:list", auth=who)})
        return ids

    def freeze_clock(self, monkeypatch: pytest.MonkeyPatch, ms: float) -> None:
        prefix = f"{self.dep.app.package}.functions."
        for name, module in list(sys.modules.items()):
            if name.startswith(prefix) and hasattr(module, "now_ms"):
                monkeypatch.setattr(module, "now_ms", lambda: float(ms))


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A clean app environment (no local mode, default tenants, no LiveKit settings)."""
    for name in APP_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.fixture(params=["sqlite", "postgres"])
async def nova(app_env: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """The Nova app on a fresh store: an embedded SQLite file, and a real PostgreSQL database (the
    same tests, the same app, search and vector indexes included: pgvector is in the test server)."""
    if request.param == "postgres":
        db = request.getfixturevalue("pg_url")
    else:
        db = ":memory:"
    # A manual clock: the app's crons (heartbeats, delivery) must not fire on their own in the
    # middle of a test that checks "nothing was written"; tests that want them advance it.
    dep = await Deployment.open(REPO_ROOT, db, clock=ManualClock(time.time() * 1000))
    try:
        yield Nova(dep)
    finally:
        await dep.close()
