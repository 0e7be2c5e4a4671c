"""Telegram standups: the nightly tick on a ManualClock (UTC and other time zones), the sender against
a fake Telegram Bot API on loopback (python-telegram-bot drives it for real), and the HTTP triggers on
a real server process.

The app's clock (`functions/_clock.now_ms`) follows the ManualClock; creation times stay real, so the
scripted day is today's date in the zone under test, and the ManualClock starts at its midnight.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import given, settings, strategies as st

from app_harness import REPO_ROOT, app_env  # noqa: F401  (fixture)
from conftest import TEST_ADMIN_KEY
from engine.deployment import Deployment
from engine.loader import load_app
from engine.runner import Auth
from engine.scheduler import ManualClock
from fakes.telegram_api import FakeTelegram, parse_markdown_v2, utf16_len

ADMIN = Auth(admin=True)
CHAT = "-1001234567890"
STANDUP_ENV = ("TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID", "TELEGRAM_CHAT_IDS", "TELEGRAM_API_BASE_URL",
               "TELEGRAM_MAX_RETRY_AFTER_SECONDS", "TELEGRAM_MAX_ATTEMPTS", "NOVA_STANDUP_TIMEZONE",
               "NOVA_STANDUP_TIME", "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "NOVA_DECISIONS_MAX",
               "NOVA_DECISIONS_MODEL", "NOVA_RETENTION_DAYS", "OPENCLAW_GATEWAY_URL", "OPENCLAW_HOOKS_TOKEN")
# MarkdownV2's reserved characters, all of them; 50 such tasks need more than one message.
TRICKY = "Fix *auth* [v1.2] (token_refresh) #42 - done! {a|b} ~x~ `y` > z = 1 + 2 . \\ end"
DECISION = "Use Postgres 16 (not MySQL)."
N_TASKS = 50


@functools.cache
def app_telegram():
    """functions/telegram.py of the repo-root app, for its pure helpers."""
    app = load_app(REPO_ROOT)
    return sys.modules[f"{app.package}.functions.telegram"]


class Day:
    """The repo-root app on a ManualClock; `at(t)` sets the clock and runs the crons that are due."""

    def __init__(self, dep: Deployment, clock: ManualClock, zone: ZoneInfo) -> None:
        self.dep, self.clock, self.zone = dep, clock, zone
        today = datetime.now(zone).date()
        self.date = today.isoformat()
        self.midnight = datetime(today.year, today.month, today.day, tzinfo=zone)
        self.moment = datetime(today.year, today.month, today.day, 23, 30, tzinfo=zone)

    async def at(self, moment: datetime) -> None:
        self.clock.set(moment)
        await self.dep.crons.drain()

    async def call(self, kind: str, path: str, args: dict | None = None) -> Any:
        outcome = await self.dep.call(path, args or {}, kind=kind, auth=ADMIN)
        assert outcome.success, f"{path}: {outcome.error_message}"
        return outcome.value

    async def standup(self) -> dict[str, Any] | None:
        return await self.call("query", "standups:get", {"date": self.date})

    async def delivery(self, standup_id: str) -> dict[str, Any] | None:
        return await self.call("query", "telegram:deliveryOf", {"standupId": standup_id})

    async def populate(self) -> dict[str, Any]:
        """A working day: many tricky in-progress tasks, one blocked, one in review (with a decision
        in its comments), one done."""
        await self.call("mutation", "seed:run", {})
        agents = [a["_id"] for a in await self.call("query", "agents:list")]
        titles = []
        for i in range(N_TASKS):
            title = f"#{i:02d} {TRICKY}"
            task = await self.call("mutation", "tasks:create", {"title": title, "assigneeIds": [agents[i % len(agents)]]})
            await self.call("mutation", "tasks:move", {"id": task, "status": "in_progress"})
            await self.call("mutation", "tasks:setProgress", {"id": task, "progress": float(i % 100)})
            titles.append(title)
        blocked = await self.call("mutation", "tasks:create", {"title": "Deploy", "assigneeIds": [agents[0]]})
        await self.call("mutation", "tasks:move", {"id": blocked, "status": "blocked", "reason": "Waiting for the API key (prod)."})
        review = await self.call("mutation", "tasks:create", {"title": "Schema review", "assigneeIds": [agents[1]]})
        await self.call("mutation", "tasks:move", {"id": review, "status": "review"})
        await self.call("mutation", "tasks:addComment", {"taskId": review, "authorId": "alice", "authorType": "user",
                                                        "content": f"Looks good.\nDecision: {DECISION}"})
        done = await self.call("mutation", "tasks:create", {"title": "Ship v1.2!", "assigneeIds": [agents[2]]})
        await self.call("mutation", "tasks:move", {"id": done, "status": "done"})
        return {"titles": titles}


async def open_day(tmp_path, monkeypatch: pytest.MonkeyPatch, zone_name: str = "UTC") -> Day:
    zone = ZoneInfo(zone_name)
    today = datetime.now(zone).date()
    # Noon: a big first jump would make the engine count the every-minute crons' skipped runs.
    clock = ManualClock(datetime(today.year, today.month, today.day, 12, tzinfo=zone))
    dep = await Deployment.open(REPO_ROOT, ":memory:", clock=clock)
    prefix = f"{dep.app.package}.functions."
    for name, module in list(sys.modules.items()):  # the app's clock follows the ManualClock
        if name.startswith(prefix) and hasattr(module, "now_ms"):
            monkeypatch.setattr(module, "now_ms", clock.now_ms)
    return Day(dep, clock, zone)


@pytest.fixture
def standup_env(app_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in STANDUP_ENV:
        app_env.delenv(name, raising=False)
    app_env.setenv("PTB_TIMEDELTA", "1")  # python-telegram-bot's opt-in: no deprecation warnings
    return app_env


@pytest.fixture
def tg(standup_env: pytest.MonkeyPatch):
    with FakeTelegram() as fake:
        standup_env.setenv("TELEGRAM_BOT_TOKEN", fake.token)
        standup_env.setenv("TELEGRAM_CHAT_ID", CHAT)
        standup_env.setenv("TELEGRAM_API_BASE_URL", fake.base_url)
        yield fake


@pytest.fixture
async def day(tmp_path, standup_env: pytest.MonkeyPatch):
    d = await open_day(tmp_path, standup_env)
    try:
        await d.at(d.midnight + timedelta(hours=12))
        yield d
    finally:
        await d.dep.close()


def plain_parts(messages: list[dict[str, Any]]) -> list[str]:
    return [parse_markdown_v2(m["text"]) for m in messages]


def check_message(messages: list[dict[str, Any]], titles: list[str]) -> str:
    """Every part to the chat, valid MarkdownV2 within 4096 code units, numbered; every title once."""
    assert len(messages) >= 2, "the standup should need more than one message"
    assert {m["chat_id"] for m in messages} == {CHAT}
    assert all(utf16_len(m["text"]) <= 4096 for m in messages)
    plains = plain_parts(messages)
    for i, plain in enumerate(plains, 1):
        assert plain.endswith(f"({i}/{len(plains)})")
    whole = "\n".join(plains)
    for title in titles:
        assert whole.count(title) == 1, title
    return whole


# -- the nightly run -----------------------------------------------------------------------------

@pytest.mark.parametrize("zone_name", ["UTC", "Asia/Kolkata", "America/New_York"])
async def test_the_standup_goes_out_at_2330_in_the_configured_zone_once(tmp_path, tg, standup_env, zone_name):
    if zone_name != "UTC":
        standup_env.setenv("NOVA_STANDUP_TIMEZONE", zone_name)
    day = await open_day(tmp_path, standup_env, zone_name)
    try:
        await day.at(day.midnight + timedelta(hours=12))
        titles = (await day.populate())["titles"]

        # Hourly through the afternoon, then every tick up to a millisecond before 23:30: nothing.
        t = day.midnight + timedelta(hours=13)
        while t < day.moment:
            await day.at(t)
            t += timedelta(hours=1) if t < day.moment - timedelta(hours=2) else timedelta(minutes=15)
        await day.at(day.moment - timedelta(milliseconds=1))
        assert await day.standup() is None and tg.requests == []

        if zone_name == "UTC":
            tg.script("ok", ("retry_after", 1))  # Telegram throttles the second part once
        await day.at(day.moment)
        standup = await day.standup()
        assert standup is not None and standup["sentToTelegram"] is True
        assert [c["taskTitle"] for c in standup["completed"]] == ["Ship v1.2!"]
        assert [b["reason"] for b in standup["blocked"]] == ["Waiting for the API key (prod)."]
        assert [r["taskTitle"] for r in standup["needsReview"]] == ["Schema review"]
        assert DECISION in standup["decisions"]
        whole = check_message(tg.messages, titles)
        assert f"Daily standup · {day.date}" in whole and DECISION in whole and "Ship v1.2!" in whole

        if zone_name == "UTC":
            sends = tg.sends()
            throttled = [i for i, r in enumerate(sends) if r["status"] == 429]
            assert len(throttled) == 1
            retry = sends[throttled[0] + 1]
            assert retry["status"] == 200 and retry["at"] - sends[throttled[0]]["at"] >= 1.0
            assert len(sends) == len(tg.messages) + 1

        # Later ticks, that night and the next morning: nothing is generated or sent again.
        sent = len(tg.messages)
        for later in (timedelta(minutes=15), timedelta(minutes=30), timedelta(hours=1)):
            await day.at(day.moment + later)
        assert len(tg.messages) == sent and len(tg.sends()) == sent + (1 if zone_name == "UTC" else 0)
        delivery = await day.delivery(standup["_id"])
        assert delivery["status"] == "sent" and delivery["attempts"] == 1
        assert [p["text"] for p in delivery["parts"]] == [m["text"] for m in tg.messages]
    finally:
        await day.dep.close()


async def test_a_half_hour_zone_and_another_time(tmp_path, tg, standup_env):
    """Asia/Kathmandu is UTC+05:45; NOVA_STANDUP_TIME moves the moment (to 18:45 local = 13:00 UTC)."""
    standup_env.setenv("NOVA_STANDUP_TIMEZONE", "Asia/Kathmandu")
    standup_env.setenv("NOVA_STANDUP_TIME", "18:45")
    day = await open_day(tmp_path, standup_env, "Asia/Kathmandu")
    try:
        await day.at(day.midnight + timedelta(hours=12))
        await day.call("mutation", "seed:run", {})
        moment = day.midnight + timedelta(hours=18, minutes=45)
        assert moment.astimezone(timezone.utc).strftime("%H:%M") == "13:00"
        await day.at(moment - timedelta(minutes=15))
        await day.at(moment - timedelta(milliseconds=1))
        assert await day.standup() is None
        await day.at(moment)
        standup = await day.standup()
        assert standup is not None and standup["sentToTelegram"] is True
        assert len(tg.messages) == 1 and "Quiet day" in tg.messages[0]["plain"]
    finally:
        await day.dep.close()


async def test_a_tick_that_came_late_still_sends_that_nights_standup(tmp_path, tg, standup_env):
    """The server was down over 23:30: the first tick after it comes back fires, once."""
    day = await open_day(tmp_path, standup_env)
    try:
        await day.at(day.midnight + timedelta(hours=12))
        await day.call("mutation", "seed:run", {})
        await day.at(day.moment - timedelta(minutes=20))
        await day.at(day.moment + timedelta(minutes=50))  # the 23:30 and 23:45 ticks were passed over
        standup = await day.standup()
        assert standup is not None and standup["sentToTelegram"] and len(tg.messages) == 1
        await day.at(day.moment + timedelta(hours=2))
        assert len(tg.messages) == 1
    finally:
        await day.dep.close()


# -- the sender ----------------------------------------------------------------------------------

async def generated(day: Day) -> str:
    result = await day.call("action", "telegram:generateStandups", {})
    assert result["date"] == day.date and len(result["standups"]) == 1
    return result["standups"][0]["standupId"]


async def test_sent_to_telegram_only_after_every_part_and_a_second_sender_sends_nothing(day: Day, tg):
    await day.populate()
    standup_id = await generated(day)
    view = await day.call("query", "telegram:standupView", {"standupId": standup_id})
    n = len(app_telegram().render_standup(view["standup"], view["names"]))
    assert n >= 2
    started, release = threading.Event(), threading.Event()
    tg.script(*["ok"] * (n - 1), ("hold", started, release))  # Telegram sits on the last part
    first = asyncio.create_task(day.dep.call("telegram:sendStandup", {"standupId": standup_id}, kind="action", auth=ADMIN))
    try:
        assert await asyncio.to_thread(started.wait, 10)
        assert (await day.standup())["sentToTelegram"] is False
        delivery = await day.delivery(standup_id)
        assert delivery["status"] == "sending"
        assert ["messageId" in p for p in delivery["parts"]] == [True] * (n - 1) + [False]

        second = await day.call("action", "telegram:sendStandup", {"standupId": standup_id})
        assert second["status"] == "busy" and second["partsSent"] == 0
        assert len(tg.sends()) == n - 1  # answered so far; the held last part is not counted yet
    finally:
        release.set()
    outcome = await first
    assert outcome.success and outcome.value["status"] == "sent" and outcome.value["partsSent"] == n
    assert (await day.standup())["sentToTelegram"] is True
    assert (await day.delivery(standup_id))["status"] == "sent"

    again = await day.call("action", "telegram:sendStandups", {"date": day.date})
    assert [r["status"] for r in again["results"]] == ["already_sent"]
    assert len(tg.messages) == n and len(tg.sends()) == n


async def test_a_failed_part_is_recorded_and_the_next_tick_sends_only_the_rest(day: Day, tg):
    await day.populate()
    await day.at(day.moment - timedelta(milliseconds=1))  # the tick before: the next one is 23:30
    tg.script("ok", ("error", 400, "Bad Request: chat not found"))
    await day.at(day.moment)
    standup = await day.standup()
    assert standup is not None and standup["sentToTelegram"] is False
    delivery = await day.delivery(standup["_id"])
    assert delivery["status"] == "failed" and delivery["attempts"] == 1
    assert "chat not found" in delivery["lastError"].lower()
    assert ["messageId" in p for p in delivery["parts"]][:2] == [True, False]
    assert len(tg.messages) == 1

    await day.at(day.moment + timedelta(minutes=15))  # the next tick retries
    standup = await day.standup()
    delivery = await day.delivery(standup["_id"])
    assert standup["sentToTelegram"] is True and delivery["status"] == "sent" and delivery["attempts"] == 2
    # every part went out exactly once, in order, as first rendered
    assert [m["text"] for m in tg.messages] == [p["text"] for p in delivery["parts"]]
    assert [m["message_id"] for m in tg.messages] == [p["messageId"] for p in delivery["parts"]]


async def test_a_wait_beyond_the_bound_is_not_waited_out_but_retried_later(day: Day, tg, standup_env):
    standup_env.setenv("TELEGRAM_MAX_RETRY_AFTER_SECONDS", "5")
    standup_env.setenv("TELEGRAM_MAX_ATTEMPTS", "2")
    await day.call("mutation", "seed:run", {})
    await day.at(day.moment - timedelta(milliseconds=1))
    tg.script(("retry_after", 600), ("retry_after", 600))
    began = time.monotonic()
    await day.at(day.moment)
    assert time.monotonic() - began < 60  # the 600 s were not waited out
    standup = await day.standup()
    delivery = await day.delivery(standup["_id"])
    assert standup["sentToTelegram"] is False and delivery["status"] == "failed"
    assert "rate limited" in delivery["lastError"] and "600" in delivery["lastError"]

    await day.at(day.moment + timedelta(minutes=15))  # attempt 2: throttled again
    await day.at(day.moment + timedelta(minutes=30))  # attempts used up: the tick leaves it
    delivery = await day.delivery(standup["_id"])
    assert delivery["attempts"] == 2 and delivery["status"] == "failed" and tg.messages == []

    # An operator's send is not bound by the attempts.
    forced = await day.call("action", "telegram:sendStandups", {"date": day.date})
    assert [r["status"] for r in forced["results"]] == ["sent"] and len(tg.messages) == 1


async def test_nothing_is_claimed_without_settings_and_a_bad_token_is_never_shown(day: Day, tg, standup_env):
    await day.call("mutation", "seed:run", {})
    standup_id = await generated(day)
    standup_env.delenv("TELEGRAM_CHAT_ID")
    result = await day.call("action", "telegram:sendStandup", {"standupId": standup_id})
    assert result["status"] == "not_configured" and "TELEGRAM_CHAT_ID" in result["error"]
    assert await day.delivery(standup_id) is None and tg.requests == []

    standup_env.setenv("TELEGRAM_CHAT_ID", CHAT)
    standup_env.setenv("TELEGRAM_BOT_TOKEN", "999999:not-the-token")
    result = await day.call("action", "telegram:sendStandup", {"standupId": standup_id})
    assert result["status"] == "failed" and "InvalidToken" in result["error"]
    delivery = await day.delivery(standup_id)
    assert "not-the-token" not in str(delivery) and "not-the-token" not in result["error"]
    assert tg.messages == [] and [r["method"] for r in tg.requests] == ["getMe"]

    standup_env.setenv("TELEGRAM_BOT_TOKEN", tg.token)
    result = await day.call("action", "telegram:sendStandup", {"standupId": standup_id})
    assert result["status"] == "sent" and len(tg.messages) == 1


async def test_each_tenant_gets_its_own_standup_and_chat(day: Day, tg, standup_env):
    standup_env.setenv("TELEGRAM_CHAT_IDS", '{"acme": "-100777"}')
    await day.call("mutation", "seed:run", {})
    await day.call("mutation", "seed:run", {"tenantId": "acme"})
    result = await day.call("action", "telegram:generateStandups", {"send": True})
    assert sorted((s["tenantId"], s["status"]) for s in result["sends"]) == [("acme", "sent"), ("default", "sent")]
    chats = {m["chat_id"]: m["plain"] for m in tg.messages}
    assert set(chats) == {CHAT, "-100777"}
    assert "· acme" in chats["-100777"] and "acme" not in chats[CHAT]


# -- rendering -----------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=9000))
def test_long_lines_are_cut_escaped_and_nothing_is_lost(raw: str):
    telegram = app_telegram()
    raw = " ".join(raw.split()) or "x"
    lines = telegram.wrap_escaped(raw, 4096 - telegram.COUNTER_RESERVE)
    assert all(utf16_len(line) <= 4096 - telegram.COUNTER_RESERVE for line in lines)
    plain = [parse_markdown_v2(line) for line in lines]
    assert "".join(plain).replace(" ", "") == raw.replace(" ", "")


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=300), min_size=1, max_size=200),
       st.lists(st.text(min_size=1, max_size=5000), max_size=3))
def test_any_standup_renders_as_valid_parts_under_the_limit(titles: list[str], decisions: list[str]):
    telegram = app_telegram()
    standup = {"date": "2026-03-07", "tenantId": "default",
               "completed": [{"agentId": "a1", "taskTitle": t} for t in titles], "inProgress": [],
               "blocked": [], "needsReview": [], "decisions": decisions}
    parts = telegram.render_standup(standup, {"a1": "Friday_*"})
    assert 1 <= len(parts) <= telegram.MAX_PARTS
    for part in parts:
        assert utf16_len(part) <= 4096
        parse_markdown_v2(part)


# -- over HTTP, on a real server -----------------------------------------------------------------

@pytest.mark.slow
def test_the_http_triggers_need_the_admin_key_and_send_once(server_factory, tg):
    server = server_factory(REPO_ROOT)
    admin = {"Authorization": f"Convex {TEST_ADMIN_KEY}"}
    with httpx.Client(timeout=30) as client:
        for path in ("/standup/generate", "/standup/send"):
            for headers in ({}, {"Authorization": "Convex wrong-key"}, {"Authorization": f"Basic {TEST_ADMIN_KEY}"},
                            {"Authorization": TEST_ADMIN_KEY}):
                response = client.post(server.site_url + path, headers=headers)
                assert response.status_code == 401, (path, headers)
                assert response.json()["code"] == "UNAUTHENTICATED"
        assert tg.requests == []

        seeded = client.post(f"{server.url}/api/mutation", headers=admin,
                             json={"path": "seed:run", "args": {}, "format": "json"})
        assert seeded.json()["status"] == "success"
        assert client.post(server.site_url + "/standup/send", headers=admin).status_code == 404  # not generated yet
        assert client.post(server.site_url + "/standup/generate", headers=admin, content=b"[1]").status_code == 400

        generated = client.post(server.site_url + "/standup/generate", headers=admin, json={})
        assert generated.status_code == 200
        body = generated.json()
        assert [s["tenantId"] for s in body["standups"]] == ["default"] and "sends" not in body
        assert tg.requests == []

        sent = client.post(server.site_url + "/standup/send", headers={"Authorization": f"Bearer {TEST_ADMIN_KEY}"},
                           json={"date": body["date"]})
        assert sent.status_code == 200 and [r["status"] for r in sent.json()["results"]] == ["sent"]
        assert len(tg.messages) == 1

        again = client.post(server.site_url + "/standup/send", headers=admin)
        assert again.status_code == 200 and [r["status"] for r in again.json()["results"]] == ["already_sent"]
        assert len(tg.messages) == 1
