"""One scripted day (08:00-11:00 UTC, minute by minute on a ManualClock): humans use the kanban,
the crons deliver notifications and wake the squad through a fake OpenClaw gateway, and OpenClaw
reports its runs to /openclaw/event in both body shapes — with duplicates, a progress before its
start, an end before a late progress, throttling and a restarting gateway. At the end: the kanban,
the streams, the feed, the notifications delivered and the heartbeats sent.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from app_harness import app_env  # noqa: F401  (fixture)
from openclaw_harness import T0, claw, claw_env, gateway, iso, ms  # noqa: F401  (fixtures)

SESSION = {"Nova": "agent:main:main", "Friday": "agent:developer:main", "Shuri": "agent:product:main",
           "Loki": "agent:content:main"}
NOTE, BEAT = "nova-notification-", "nova-heartbeat-"


def hook(run_id, action, at, session, **fields):
    """A body as the mission-control hook sends it."""
    event_type = {"start": "lifecycle:start", "end": "lifecycle:end", "error": "lifecycle:error",
                  "progress": "tool:start", "document": "tool:write"}[action]
    return {"runId": run_id, "action": action, "sessionKey": session, "timestamp": iso(at),
            "eventType": fields.pop("eventType", event_type), **fields}


def spec(run_id, action, session, **fields):
    """A body in the spec's shape."""
    return {"runId": run_id, "action": action, "sessionKey": session, **fields}


class OpenClaw:
    """Plays OpenClaw: every heartbeat turn the gateway admitted is run at once (start, then
    HEARTBEAT_OK), reported in the hook's shape, its end sent twice (a duplicate)."""

    def __init__(self, claw, gateway) -> None:
        self.claw, self.gateway = claw, gateway
        self.handled: set[str] = set()
        self.duplicates = 0

    async def run_heartbeats(self) -> None:
        for turn in list(self.gateway.admitted):
            if turn.run_id in self.handled or not (turn.idempotency_key or "").startswith(BEAT):
                continue
            self.handled.add(turn.run_id)
            now = self.claw.now
            await self.claw.ok(hook(turn.run_id, "start", now, turn.session_key, prompt=turn.message))
            end = hook(turn.run_id, "end", now + timedelta(seconds=20), turn.session_key, response="HEARTBEAT_OK")
            await self.claw.ok(end)
            assert (await self.claw.ok(end))["duplicate"] is True
            self.duplicates += 1

    def notification_turn(self, session: str):
        return [t for t in self.gateway.admitted if t.session_key == session
                and (t.idempotency_key or "").startswith(NOTE) and t.run_id not in self.handled][-1]


async def test_a_scripted_day(claw, gateway):
    squad = await claw.seed()
    name_of = {agent_id: name for name, agent_id in squad.items()}
    openclaw = OpenClaw(claw, gateway)
    script = {}

    def at(hh, mm):
        def register(fn):
            script[(hh, mm)] = fn
            return fn
        return register

    ids: dict[str, str] = {}

    @at(8, 0)
    async def morning():
        ids["sso"] = await claw.admin("mutation", "tasks:create", {
            "title": "Fix SSO redirect", "priority": "high", "assigneeIds": [squad["Friday"]]})
        ids["launch"] = await claw.admin("mutation", "tasks:create", {"title": "Launch blog post"})

    @at(8, 3)
    async def friday_starts():
        # The assignment notification was delivered at 08:00; OpenClaw runs that turn now.
        turn = openclaw.notification_turn(SESSION["Friday"])
        openclaw.handled.add(turn.run_id)
        ids["friday_run"] = run = turn.run_id
        t = claw.now
        start = await claw.ok(hook(run, "start", t, SESSION["Friday"], prompt=turn.message, source="webchat"))
        assert start["taskId"] == ids["sso"]
        thinking = hook(run, "progress", t + timedelta(seconds=4), SESSION["Friday"], message="💭 Thinking...",
                        eventType="assistant:thinking")
        await claw.ok(thinking)
        assert (await claw.ok(thinking))["duplicate"] is True
        await claw.ok(hook(run, "progress", t + timedelta(seconds=9), SESSION["Friday"],
                           message="🔧 Using tool: edit"))
        await claw.ok(spec(run, "progress", SESSION["Friday"], chunk={"type": "tool_result", "content": "auth.ts: 3 lines"},
                           progress=60))
        await claw.ok(hook(run, "document", t + timedelta(seconds=30), None, agentId="developer",
                           document={"title": "SSO fix notes", "content": "Redirect after SSO now keeps ?next=",
                                     "type": "markdown", "path": "/work/notes/sso.md"}))

    @at(8, 25)
    async def friday_ends():
        await claw.ok(hook(ids["friday_run"], "end", claw.now, SESSION["Friday"], response="Fixed; PR #42"))

    @at(9, 10)
    async def shuri_from_telegram():
        t = claw.now
        # The progress overtakes its start on the way.
        await claw.ok(hook("tg-shuri-1", "progress", t + timedelta(seconds=5), SESSION["Shuri"],
                           message="💭 Thinking...", eventType="assistant:thinking"))
        await claw.ok(hook("tg-shuri-1", "start", t, SESSION["Shuri"], prompt="Draft the pricing page copy",
                           source="Telegram"))

    @at(9, 20)
    async def shuri_fails():
        await claw.ok(hook("tg-shuri-1", "error", claw.now, SESSION["Shuri"], error="Rate limited by the model provider"))

    @at(9, 30)
    async def review_comment():
        gateway.answer_next(503, key_prefix=NOTE)  # the gateway restarts as the comment goes out
        await claw.admin("mutation", "tasks:addComment", {
            "taskId": ids["sso"], "authorId": squad["Nova"], "authorType": "agent",
            "content": "Looks good @Friday, please add a test.\nDecision: SSO fixes ship behind a flag."})

    @at(10, 0)
    async def loki_spec_run():
        await claw.ok(spec("loki-blog", "start", SESSION["Loki"], prompt="Write the launch blog post"))
        for i, pct in enumerate((25, 50, 75)):
            await claw.ok(spec("loki-blog", "progress", SESSION["Loki"],
                               chunk={"type": "output", "content": f"paragraph {i + 1}"}, progress=pct))

    @at(10, 12)
    async def loki_end_then_late_progress():
        end = spec("loki-blog", "end", SESSION["Loki"])
        await claw.ok(end)
        await claw.ok(spec("loki-blog", "progress", SESSION["Loki"],
                           chunk={"type": "output", "content": "paragraph 4 (late)"}, progress=90))
        assert (await claw.ok(end))["duplicate"] is True

    @at(10, 14)
    async def throttle():
        gateway.answer_next(429, retry_after=60, key_prefix=BEAT)  # Nova's 10:15 heartbeat

    @at(10, 40)
    async def human_approves():
        await claw.admin("mutation", "tasks:move", {"id": ids["sso"], "status": "done"})

    # -- the day -------------------------------------------------------------------------------
    moment = T0
    while moment <= T0 + timedelta(hours=3):
        step = script.get((moment.hour, moment.minute))
        claw.clock.set(moment)
        if step is not None:
            await step()
        await claw.at(moment)
        await openclaw.run_heartbeats()
        moment += timedelta(minutes=1)

    # -- the kanban ----------------------------------------------------------------------------
    assert await claw.board() == {
        "inbox": ["Welcome the squad", "Launch blog post"],
        "review": ["Write the launch blog post"],
        "done": ["Fix SSO redirect"],
        "blocked": ["Draft the pricing page copy"],
    }
    blocked = (await claw.admin("query", "tasks:list", {"status": "blocked"}))[0]
    assert blocked["blockedReason"] == "Rate limited by the model provider" and blocked["tags"] == ["openclaw", "telegram"]
    sso = await claw.admin("query", "tasks:get", {"id": ids["sso"]})
    assert sso["task"]["openclawRunId"] == ids["friday_run"] and sso["task"]["progress"] == 100.0
    documents = await claw.admin("query", "documents:listByTask", {"taskId": ids["sso"]})
    assert [d["title"] for d in documents] == ["SSO fix notes"]

    # -- the streams ---------------------------------------------------------------------------
    friday = await claw.stream(ids["friday_run"])
    assert friday["status"] == "completed" and friday["durationMs"] == 22 * 60_000
    assert [c["content"] for c in friday["chunks"]] == [
        "💭 Thinking...", "🔧 Using tool: edit", "auth.ts: 3 lines", "Fixed; PR #42"]
    shuri = await claw.stream("tg-shuri-1")
    assert shuri["status"] == "error" and shuri["startedAt"] == ms(T0 + timedelta(hours=1, minutes=10))
    assert [(c["type"], c["content"]) for c in shuri["chunks"]] == [
        ("thinking", "💭 Thinking..."), ("error", "Rate limited by the model provider")]
    loki = await claw.stream("loki-blog")
    assert loki["status"] == "completed" and loki["progress"] == 100.0  # the late progress changed nothing
    assert [c["content"] for c in await claw.chunks("loki-blog")] == [
        "paragraph 1", "paragraph 2", "paragraph 3", "paragraph 4 (late)"]

    # -- the feed ------------------------------------------------------------------------------
    heartbeat_runs = {t.run_id for t in gateway.admitted if (t.idempotency_key or "").startswith(BEAT)}
    runs = [(a["type"], a["message"]) for a in await claw.feed()
            if a["type"] in ("agent_started", "agent_completed") and a["metadata"]["runId"] not in heartbeat_runs]
    heartbeats = [a for a in await claw.feed("agent_started") if a["message"].endswith("started a heartbeat")]
    assert len(heartbeats) == 49 and all(a["metadata"]["kind"] == "heartbeat" for a in heartbeats)
    assert runs == [
        ("agent_started", 'Friday started "Fix SSO redirect"'),
        ("agent_completed", 'Friday finished "Fix SSO redirect"'),
        ("agent_started", 'Shuri started "Draft the pricing page copy"'),
        ("agent_completed", 'Shuri hit an error on "Draft the pricing page copy": Rate limited by the model provider'),
        ("agent_started", 'Loki started "Write the launch blog post"'),
        ("agent_completed", 'Loki finished "Write the launch blog post"'),
    ]
    comment = (await claw.feed("comment"))[-1]
    assert comment["metadata"]["decisions"] == ["SSO fixes ship behind a flag."]
    assert (await claw.feed("task_completed"))[-1]["message"] == 'user completed "Fix SSO redirect"'

    # -- the notifications delivered ----------------------------------------------------------
    for name, agent_id in squad.items():
        for n in await claw.notifications(agent_id):
            assert n["delivered"] is True, (name, n)
    sent = [c for c in gateway.agent_calls() if (c.idempotency_key or "").startswith(NOTE)]
    ok_keys = Counter(c.idempotency_key for c in sent if c.status == 200)
    assert all(count == 1 for count in ok_keys.values())
    friday_notes = await claw.notifications(squad["Friday"])
    assert sorted(n["sourceType"] for n in friday_notes) == ["assignment", "mention", "thread"]
    assert [c.status for c in sent if c.body["sessionKey"] == SESSION["Friday"]] == [200, 503, 200, 200]
    agent_notes = [n for a in squad.values() for n in await claw.notifications(a)]
    assert sorted(ok_keys) == sorted(f"{NOTE}{n['_id']}" for n in agent_notes)

    # -- the heartbeats ------------------------------------------------------------------------
    beats = [c for c in gateway.agent_calls() if (c.idempotency_key or "").startswith(BEAT)]
    admitted = Counter(c.body["sessionKey"] for c in beats if c.status == 200)
    # Quarters 08:00 ... 10:45 (twelve) for everyone, plus Nova's 11:00.
    assert admitted == {SESSION["Nova"]: 13, SESSION["Friday"]: 12, SESSION["Shuri"]: 12, SESSION["Loki"]: 12}
    throttled = [c for c in beats if c.status == 429]
    assert len(throttled) == 1 and throttled[0].body["sessionKey"] == SESSION["Nova"]
    retried = [c for c in beats if c.idempotency_key == throttled[0].idempotency_key]
    assert [c.status for c in retried] == [429, 200]
    assert openclaw.duplicates == 49
    statuses = {name_of[a["_id"]]: a["status"] for a in await claw.admin("query", "agents:list")}
    assert statuses == {"Nova": "idle", "Friday": "idle", "Shuri": "idle", "Loki": "idle"}
