"""The weekly cleanup: on a ManualClock its cron (Sunday 03:00 UTC) trims finished agent streams (with
their chunks) and read notifications older than the retention, and nothing else; `POST
/maintenance/cleanup` on a real server needs the admin key.

The data is written at real time; the ManualClock is set weeks ahead of it, to the minute before a
Sunday 03:00, so the retention cutoff falls after (or before) everything that was written.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest

from app_harness import REPO_ROOT, app_env  # noqa: F401  (fixture)
from conftest import TEST_ADMIN_KEY
from engine.deployment import Deployment
from engine.runner import Auth
from engine.scheduler import ManualClock

ADMIN = Auth(admin=True)
PAGE = {"numItems": 1000.0, "cursor": None}
CLEANUP_ENV = ("NOVA_RETENTION_DAYS", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "ANTHROPIC_API_KEY",
               "OPENCLAW_GATEWAY_URL", "OPENCLAW_HOOKS_TOKEN", "NOVA_STANDUP_TIMEZONE", "NOVA_STANDUP_TIME")


def sunday_3am_after(moment: datetime) -> datetime:
    day = moment.astimezone(timezone.utc).replace(hour=3, minute=0, second=0, microsecond=0)
    while day.weekday() != 6 or day <= moment:
        day += timedelta(days=1)
    return day


class Squad:
    def __init__(self, dep: Deployment, clock: ManualClock, sunday: datetime) -> None:
        self.dep, self.clock, self.sunday = dep, clock, sunday

    async def call(self, kind: str, path: str, args: dict | None = None) -> Any:
        outcome = await self.dep.call(path, args or {}, kind=kind, auth=ADMIN)
        assert outcome.success, f"{path}: {outcome.error_message}"
        return outcome.value

    async def fails(self, kind: str, path: str, args: dict) -> str:
        outcome = await self.dep.call(path, args, kind=kind, auth=ADMIN)
        assert not outcome.success
        return outcome.error_data["code"]

    async def at(self, moment: datetime) -> None:
        self.clock.set(moment)
        await self.dep.crons.drain()

    async def event(self, run_id: str, key: str, action: str, session: str, **extra: Any) -> None:
        await self.call("mutation", "openclaw:ingest", {"event": {
            "tenantId": "default", "key": key, "runId": run_id, "action": action, "sessionKey": session, **extra}})

    async def chunks(self, run_id: str) -> int:
        return len((await self.call("query", "openclaw:listChunks", {"runId": run_id, "paginationOpts": PAGE}))["page"])

    async def everything(self) -> dict[str, Any]:
        """What the cleanup must never touch, and what it may."""
        tasks = await self.call("query", "tasks:list")
        comments = [c["_id"] for t in tasks for c in (await self.call("query", "tasks:get", {"id": t["_id"]}))["comments"]]
        agents = await self.call("query", "agents:list")
        notifications = [n for a in agents for n in await self.call(
            "query", "notifications:list", {"recipientId": a["_id"], "recipientType": "agent", "limit": 1000.0})]
        return {
            "tasks": sorted(t["_id"] for t in tasks),
            "comments": sorted(comments),
            "documents": sorted(d["_id"] for d in (await self.call("query", "documents:list", {"paginationOpts": PAGE}))["page"]),
            "memory": [await self.call("query", "memory:getWorking", {"agentId": a["_id"]}) for a in agents],
            "activities": len((await self.call("query", "activities:list", {"paginationOpts": PAGE}))["page"]),
            "unread": sorted(n["_id"] for n in notifications if "readAt" not in n),
            "read": sorted(n["_id"] for n in notifications if "readAt" in n),
        }

    async def populate(self) -> dict[str, Any]:
        """Runs in every state (with chunks), read and unread notifications, and the rest of a squad."""
        await self.call("mutation", "seed:run", {})
        agents = {a["name"]: a for a in await self.call("query", "agents:list")}
        friday, shuri = agents["Friday"], agents["Shuri"]
        await self.event("run-done", "k1", "start", friday["sessionKey"], prompt="Write the docs")
        for i in range(5):
            await self.event("run-done", f"k1-{i}", "progress", friday["sessionKey"],
                             chunk={"type": "output", "content": f"line {i}"}, progress=float(i * 20))
        await self.event("run-done", "k1-end", "end", friday["sessionKey"], response="done")
        await self.event("run-failed", "k2", "start", shuri["sessionKey"], prompt="Deploy")
        await self.event("run-failed", "k2-p", "progress", shuri["sessionKey"], chunk={"type": "thinking", "content": "hm"})
        await self.event("run-failed", "k2-err", "error", shuri["sessionKey"], error="no credentials")
        await self.event("run-live", "k3", "start", friday["sessionKey"], prompt="Still going")
        await self.event("run-live", "k3-p", "progress", friday["sessionKey"], chunk={"type": "output", "content": "..."})
        await self.call("mutation", "agentStream:startRun", {"agentId": shuri["_id"], "runId": "run-paused"})
        await self.call("mutation", "agentStream:finishRun", {"runId": "run-paused", "status": "paused"})

        task = await self.call("mutation", "tasks:create", {"title": "Review", "assigneeIds": [friday["_id"], shuri["_id"]]})
        await self.call("mutation", "tasks:addComment", {"taskId": task, "authorId": "alice", "authorType": "user",
                                                        "content": "@Friday @Shuri please look"})
        await self.call("mutation", "documents:create", {"title": "Spec", "content": "# Spec", "type": "markdown", "taskId": task})
        await self.call("mutation", "memory:setWorking", {"agentId": friday["_id"], "content": "WORKING.md"})
        notes = await self.call("query", "notifications:list",
                                {"recipientId": friday["_id"], "recipientType": "agent", "limit": 100.0})
        assert len(notes) >= 2
        for note in notes:  # Friday read hers; Shuri's stay unread
            await self.call("mutation", "notifications:markRead", {"id": note["_id"]})
        return {"finishedChunks": await self.chunks("run-done") + await self.chunks("run-failed"),
                "liveChunks": await self.chunks("run-live")}


async def open_squad(weeks_ahead: float) -> Squad:
    now = datetime.now(timezone.utc)
    sunday = sunday_3am_after(now + timedelta(weeks=weeks_ahead))
    clock = ManualClock(sunday - timedelta(minutes=1))
    return Squad(await Deployment.open(REPO_ROOT, ":memory:", clock=clock), clock, sunday)


@pytest.fixture
def cleanup_env(app_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in CLEANUP_ENV:
        app_env.delenv(name, raising=False)
    return app_env


async def test_sunday_0300_trims_what_finished_before_the_retention_and_nothing_else(cleanup_env):
    squad = await open_squad(weeks_ahead=31 / 7)  # every write is more than 30 days old by then
    try:
        counts = await squad.populate()
        before = await squad.everything()
        assert before["read"] and before["unread"]

        await squad.at(squad.sunday - timedelta(milliseconds=1))
        assert await squad.everything() == before

        await squad.at(squad.sunday)
        after = await squad.everything()
        assert after == {**before, "read": []}
        assert await squad.fails("query", "agentStream:getRun", {"runId": "run-done"}) == "NOT_FOUND"
        assert await squad.fails("query", "agentStream:getRun", {"runId": "run-failed"}) == "NOT_FOUND"
        for run_id in ("run-done", "run-failed"):  # listChunks would still list chunks left without their stream
            assert await squad.fails("query", "openclaw:listChunks", {"runId": run_id, "paginationOpts": PAGE}) == "NOT_FOUND"
        assert counts["finishedChunks"] >= 7
        assert (await squad.call("query", "agentStream:getRun", {"runId": "run-live"}))["status"] == "running"
        assert (await squad.call("query", "agentStream:getRun", {"runId": "run-paused"}))["status"] == "paused"
        assert await squad.chunks("run-live") == counts["liveChunks"]

    finally:
        await squad.dep.close()


@pytest.mark.parametrize("weeks_ahead, retention, trimmed", [
    (3, None, False),   # cutoff = Sunday - 30 days: before every write
    (2, "30", False),
    (2, "7", True),     # NOVA_RETENTION_DAYS=7: every write is older than that by then
])
async def test_the_retention_decides_and_is_configurable(cleanup_env, weeks_ahead, retention, trimmed):
    if retention is not None:
        cleanup_env.setenv("NOVA_RETENTION_DAYS", retention)
    squad = await open_squad(weeks_ahead=weeks_ahead)
    try:
        await squad.populate()
        before = await squad.everything()
        await squad.at(squad.sunday)
        after = await squad.everything()
        assert after == ({**before, "read": []} if trimmed else before)
        status = await squad.dep.call("agentStream:getRun", {"runId": "run-done"}, kind="query", auth=ADMIN)
        assert status.success is not trimmed
    finally:
        await squad.dep.close()


async def test_the_chunk_count_and_bad_retentions(cleanup_env):
    squad = await open_squad(weeks_ahead=31 / 7)
    try:
        counts = await squad.populate()
        cleanup_env.setenv("NOVA_RETENTION_DAYS", "soon")
        assert await squad.fails("action", "maintenance:cleanup", {}) == "CONFIG_INVALID"
        cleanup_env.delenv("NOVA_RETENTION_DAYS")
        for bad in (0.0, -1.0, float("inf")):
            assert await squad.fails("action", "maintenance:cleanup", {"retentionDays": bad}) == "INVALID_ARGUMENTS"
        # On demand, "now" is the wall clock: nothing is 30 days old yet.
        result = await squad.call("action", "maintenance:cleanup", {})
        assert (result["streamsDeleted"], result["chunksDeleted"], result["notificationsDeleted"]) == (0, 0, 0)
        await squad.at(squad.sunday)
        assert await squad.chunks("run-live") == counts["liveChunks"]
    finally:
        await squad.dep.close()


@pytest.mark.slow
def test_maintenance_cleanup_over_http_needs_the_admin_key(server_factory, cleanup_env):
    server = server_factory(REPO_ROOT)
    url = server.site_url + "/maintenance/cleanup"
    with httpx.Client(timeout=30) as client:
        for headers in ({}, {"Authorization": "Convex not-the-key"}, {"Authorization": f"Bearer {TEST_ADMIN_KEY}x"}):
            response = client.post(url, headers=headers, json={"retentionDays": 1})
            assert response.status_code == 401 and response.json()["code"] == "UNAUTHENTICATED"
        admin = {"Authorization": f"Convex {TEST_ADMIN_KEY}"}
        assert client.post(url, headers=admin, content=b"not json").status_code == 400
        assert client.post(url, headers=admin, json={"retentionDays": "30"}).status_code == 400
        refused = client.post(url, headers=admin, json={"retentionDays": 0})
        assert refused.status_code == 400 and refused.json()["code"] == "INVALID_ARGUMENTS"
        done = client.post(url, headers=admin)
        assert done.status_code == 200
        body = done.json()
        assert body["retentionDays"] == 30 and body["streamsDeleted"] == 0 and body["notificationsDeleted"] == 0
        assert client.get(url, headers=admin).status_code == 405
