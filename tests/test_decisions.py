"""Key decisions of the standup: the documented rule, and Claude through the `anthropic` SDK pointed
at a fake Messages API on loopback (with every failure falling back to the rule)."""

from __future__ import annotations

import functools
import sys
from typing import Any

import pytest

from app_harness import REPO_ROOT, app_env  # noqa: F401  (fixture)
from engine.deployment import Deployment
from engine.loader import load_app
from engine.runner import Auth
from fakes.anthropic_api import FakeAnthropic

ADMIN = Auth(admin=True)
API_KEY = "sk-ant-test-0123456789"
DECISION_ENV = ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "NOVA_DECISIONS_MAX", "NOVA_DECISIONS_MODEL",
                "NOVA_STANDUP_TIMEZONE", "NOVA_STANDUP_TIME", "TELEGRAM_BOT_TOKEN", "TELEGRAM_CHAT_ID",
                "TELEGRAM_CHAT_IDS", "TELEGRAM_API_BASE_URL", "OPENCLAW_GATEWAY_URL", "OPENCLAW_HOOKS_TOKEN")
# What the rule picks from the day that `busy_day` writes, in order.
RULE = ["Ship on Friday", "OK, we will freeze the API tomorrow.", "and we'll write docs",
        "We decided to use Postgres 16.", "Completed: Release notes"]


@functools.cache
def app_decisions():
    app = load_app(REPO_ROOT)
    return sys.modules[f"{app.package}.functions.decisions"]


class Nova:
    def __init__(self, dep: Deployment) -> None:
        self.dep = dep

    async def call(self, kind: str, path: str, args: dict | None = None) -> Any:
        outcome = await self.dep.call(path, args or {}, kind=kind, auth=ADMIN)
        assert outcome.success, f"{path}: {outcome.error_message}"
        return outcome.value

    async def comment(self, task: str, content: str, author: str = "alice", author_type: str = "user") -> None:
        await self.call("mutation", "tasks:addComment",
                        {"taskId": task, "authorId": author, "authorType": author_type, "content": content})

    async def busy_day(self) -> None:
        """Comments with and without decisions, and a completed task."""
        await self.call("mutation", "seed:run", {})
        friday = next(a["_id"] for a in await self.call("query", "agents:list") if a["name"] == "Friday")
        task = await self.call("mutation", "tasks:create", {"title": "Database", "assigneeIds": [friday]})
        await self.comment(task, "We decided to use Postgres 16.")
        await self.comment(task, "Decision: Ship on Friday\nOther text", friday, "agent")
        await self.comment(task, "just chatting about lunch")
        await self.comment(task, "OK, we will freeze the API tomorrow.\n- and we'll write docs")
        notes = await self.call("mutation", "tasks:create", {"title": "Release notes", "assigneeIds": [friday]})
        await self.call("mutation", "tasks:move", {"id": notes, "status": "done"})

    async def standup_decisions(self) -> tuple[list[str], str]:
        result = await self.call("action", "telegram:generateStandups", {})
        mine = next(s for s in result["standups"] if s["tenantId"] == "default")
        standup = await self.call("query", "standups:get", {"date": result["date"]})
        assert standup["_id"] == mine["standupId"] and mine["decisions"] == len(standup["decisions"])
        return standup["decisions"], mine["decisionSource"]


@pytest.fixture
def decision_env(app_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in DECISION_ENV:
        app_env.delenv(name, raising=False)
    return app_env


@pytest.fixture
async def nova(decision_env):
    dep = await Deployment.open(REPO_ROOT, ":memory:")
    try:
        yield Nova(dep)
    finally:
        await dep.close()


@pytest.fixture
def claude(decision_env: pytest.MonkeyPatch):
    with FakeAnthropic(api_key=API_KEY) as fake:
        decision_env.setenv("ANTHROPIC_API_KEY", API_KEY)
        decision_env.setenv("ANTHROPIC_BASE_URL", fake.base_url)
        yield fake


# -- the rule ------------------------------------------------------------------------------------

async def test_without_a_key_the_rule_picks_explicit_then_said_then_completed(nova):
    await nova.busy_day()
    decisions, source = await nova.standup_decisions()
    assert source == "rule" and decisions == RULE


async def test_the_rule_keeps_at_most_the_configured_number(nova, decision_env):
    decision_env.setenv("NOVA_DECISIONS_MAX", "2")
    await nova.busy_day()
    assert await nova.standup_decisions() == (RULE[:2], "rule")


async def test_another_tenants_comments_never_reach_a_standup(nova):
    await nova.busy_day()
    acme = Auth(identity={"subject": "ann", "issuer": "https://auth.nova.test", "tenantId": "acme",
                          "tokenIdentifier": "https://auth.nova.test|ann"})
    outcome = await nova.dep.call("tasks:create", {"title": "Acme plan"}, kind="mutation", auth=acme)
    assert outcome.success
    outcome = await nova.dep.call("tasks:addComment", {"taskId": outcome.value, "authorId": "ann", "authorType": "user",
                                                      "content": "Decision: the acme secret plan"},
                                  kind="mutation", auth=acme)
    assert outcome.success
    result = await nova.call("action", "telegram:generateStandups", {})
    standups = {s["tenantId"]: s["standupId"] for s in result["standups"]}
    assert set(standups) == {"default", "acme"}
    mine = await nova.call("query", "standups:get", {"date": result["date"]})
    assert "the acme secret plan" not in mine["decisions"]
    theirs = await nova.dep.call("standups:get", {"date": result["date"]}, kind="query", auth=acme)
    assert theirs.value["decisions"] == ["the acme secret plan"]


# -- Claude --------------------------------------------------------------------------------------

async def test_claude_picks_the_decisions_from_a_digest_of_the_day(nova, claude, decision_env):
    decision_env.setenv("NOVA_DECISIONS_MODEL", "claude-test-model")
    claude.reply = '```json\n["Adopt Postgres 16", "Freeze the API on Friday", "Adopt Postgres 16"]\n```'
    await nova.busy_day()
    decisions, source = await nova.standup_decisions()
    assert source == "claude" and decisions == ["Adopt Postgres 16", "Freeze the API on Friday"]

    [request] = claude.requests
    assert FakeAnthropic.key_of(request) == API_KEY
    assert request["body"]["model"] == "claude-test-model" and request["body"]["max_tokens"] > 0
    [prompt] = claude.prompts()
    assert "We decided to use Postgres 16." in prompt and "Decision: Ship on Friday" in prompt
    assert 'completed "Release notes"' in prompt and "JSON array" in prompt


async def test_the_digest_sent_to_claude_is_bounded(nova, claude):
    claude.reply = '["One big decision"]'
    await nova.call("mutation", "seed:run", {})
    task = await nova.call("mutation", "tasks:create", {"title": "Long thread"})
    for i in range(120):
        await nova.comment(task, f"comment {i:03d} " + "blah " * 300)
    decisions, source = await nova.standup_decisions()
    assert (decisions, source) == (["One big decision"], "claude")
    limits = app_decisions()
    [prompt] = claude.prompts()
    assert len(prompt) <= limits.MAX_DIGEST_CHARS + len(limits.PROMPT)
    assert "comment 119" in prompt and "comment 000" not in prompt  # newest first, the oldest cut


@pytest.mark.parametrize("answers", [
    [("status", 500), ("status", 500)],          # the SDK retries once, then gives up
    [("status", 400)],
    [("status", 529), ("status", 529)],
    [("text", "Sure! The key decision was to ship.")],
    [("text", '{"decisions": ["not a list"]}')],
    [("text", '["fine", 42]')],
], ids=["500", "400", "overloaded", "prose", "object", "not-strings"])
async def test_any_failure_of_claude_falls_back_to_the_rule(nova, claude, answers):
    await nova.busy_day()
    claude.script(*answers)
    decisions, source = await nova.standup_decisions()
    assert (decisions, source) == (RULE, "rule")


async def test_a_wrong_key_falls_back_to_the_rule(nova, claude, decision_env):
    decision_env.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    await nova.busy_day()
    assert await nova.standup_decisions() == (RULE, "rule")
    assert claude.requests and all(FakeAnthropic.key_of(r) == "sk-ant-wrong" for r in claude.requests)


async def test_an_empty_day_asks_claude_nothing(nova, claude):
    await nova.call("mutation", "seed:run", {})
    result = await nova.call("action", "telegram:generateStandups", {})
    standup_id = result["standups"][0]["standupId"]
    claude.requests.clear()
    picked = await nova.call("action", "decisions:pick", {"standupId": standup_id, "startMs": 0.0, "endMs": 1.0})
    assert picked == {"decisions": [], "source": "claude"} and claude.requests == []


@pytest.mark.parametrize("reply, expected", [
    ('["a", "b"]', ["a", "b"]),
    ('```json\n["a"]\n```', ["a"]),
    ('Here you go: ["a", "b"] — hope that helps', ["a", "b"]),
    ("[]", []),
    ('["  spaced   out  ", "", "x"]', ["spaced out", "x"]),
    ('["1", "2", "3", "4", "5", "6", "7"]', ["1", "2", "3", "4", "5"]),
])
def test_replies_are_parsed_as_a_json_array_of_strings(reply, expected):
    assert app_decisions().parse_reply(reply, 5) == expected


@pytest.mark.parametrize("reply", ["no array", '{"a": 1}', "[1, 2]", '["unterminated'])
def test_replies_without_such_an_array_are_refused(reply):
    with pytest.raises(ValueError):
        app_decisions().parse_reply(reply, 5)
