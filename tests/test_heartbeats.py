"""Heartbeats: the every-minute cron wakes each agent at its staggered minute through the fake
gateway's /hooks/agent, and never wakes an agent whose last wake is still running.

The ManualClock starts at 07:59:30; `claw.at(T0)` is the first tick (08:00), `claw.minutes(n)` steps
minute by minute, running the crons at each minute.
"""

from __future__ import annotations

from datetime import timedelta

from app_harness import app_env  # noqa: F401  (fixture)
from openclaw_harness import HOOKS_TOKEN, T0, claw, claw_env, gateway  # noqa: F401  (fixtures)

BEAT = "nova-heartbeat-"


def wakes(gateway) -> list:
    return [c for c in gateway.agent_calls() if (c.idempotency_key or "").startswith(BEAT)]


def minute_of(call, claw) -> int:
    slot_ms = int(call.idempotency_key.rsplit("-", 1)[1])
    return int((slot_ms - T0.timestamp() * 1000) // 60_000)


async def finish_runs(claw, gateway, seen: set[str]) -> None:
    """OpenClaw runs each admitted heartbeat and the hook reports it (start, then end)."""
    for turn in gateway.admitted:
        if turn.run_id in seen or not (turn.idempotency_key or "").startswith(BEAT):
            continue
        seen.add(turn.run_id)
        await claw.ok({"runId": turn.run_id, "action": "start", "sessionKey": turn.session_key, "prompt": turn.message})
        await claw.ok({"runId": turn.run_id, "action": "end", "sessionKey": turn.session_key,
                       "response": "HEARTBEAT_OK"})


async def test_the_spec_squad_wakes_at_0_2_4_6_past_each_quarter(claw, gateway):
    squad = await claw.seed()
    names = {agent_id: name for name, agent_id in squad.items()}
    seen: set[str] = set()
    await claw.at(T0)
    await finish_runs(claw, gateway, seen)
    for _ in range(59):
        await claw.minutes(1)
        await finish_runs(claw, gateway, seen)
    woken: dict[str, list[int]] = {}
    for call in wakes(gateway):
        assert call.bearer == HOOKS_TOKEN and call.status == 200
        assert call.body["message"] == "HEARTBEAT" and call.body["wakeMode"] == "now"
        woken.setdefault(call.body["sessionKey"], []).append(minute_of(call, claw))
    assert woken == {
        "agent:main:main": [0, 15, 30, 45],
        "agent:developer:main": [2, 17, 32, 47],
        "agent:product:main": [4, 19, 34, 49],
        "agent:content:main": [6, 21, 36, 51],
    }
    schedule = await claw.admin("query", "wakes:schedule")
    assert [(names[s["agent"]["_id"]], s["minute"], s["lastWake"]["status"]) for s in schedule] == [
        ("Nova", 0.0, "ended"), ("Friday", 2.0, "ended"), ("Shuri", 4.0, "ended"), ("Loki", 6.0, "ended")]
    # Heartbeat runs are not work: no card, and the feed says so.
    assert await claw.board() == {"inbox": ["Welcome the squad"]}
    assert {a["message"] for a in await claw.feed("agent_started")} == {
        f"{name} started a heartbeat" for name in squad}


async def test_any_squad_size_gets_the_pattern_continued(claw, gateway):
    await claw.seed()
    for i in range(13):  # 17 agents in all
        await claw.admin("mutation", "agents:create", {"name": f"Extra{i}", "role": "Helper", "avatar": "🤖",
                                                       "level": "intern", "sessionKey": f"agent:extra{i}:main"})
    schedule = await claw.admin("query", "wakes:schedule")
    assert [s["minute"] for s in schedule] == [0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 0, 2]
    seen: set[str] = set()
    await claw.at(T0)
    await finish_runs(claw, gateway, seen)
    for _ in range(14):
        await claw.minutes(1)
        await finish_runs(claw, gateway, seen)
    by_key = {s["agent"]["sessionKey"]: s["minute"] for s in schedule}
    this_quarter = [c for c in wakes(gateway) if minute_of(c, claw) >= 0]
    assert {c.body["sessionKey"]: minute_of(c, claw) for c in this_quarter} == by_key
    assert len(this_quarter) == 17  # each agent once per quarter, at its minute
    # The first tick (08:00) also caught up the two slots of the previous 3 minutes (the grace).
    caught_up = [(c.body["sessionKey"], minute_of(c, claw)) for c in wakes(gateway) if minute_of(c, claw) < 0]
    assert sorted(caught_up) == [("agent:extra10:main", -2), ("agent:extra3:main", -1)]  # minutes 13, 14


async def test_an_agent_whose_wake_is_still_running_is_not_woken_again(claw, gateway):
    squad = await claw.seed()
    await claw.at(T0)
    first = [c for c in wakes(gateway) if c.body["sessionKey"] == "agent:main:main"]
    assert len(first) == 1
    # OpenClaw reports the run with its own runId; the heartbeat prompt ties it to the open wake.
    await claw.ok({"runId": "oc-77", "action": "start", "sessionKey": "agent:main:main", "prompt": "HEARTBEAT"})
    await claw.at(T0 + timedelta(minutes=15))
    nova = lambda: [c for c in wakes(gateway) if c.body["sessionKey"] == "agent:main:main"]  # noqa: E731
    assert len(nova()) == 1
    schedule = {s["agent"]["name"]: s for s in await claw.admin("query", "wakes:schedule")}
    assert schedule["Nova"]["lastWake"]["status"] == "running" and schedule["Nova"]["lastWake"]["runId"] == "oc-77"
    summary = await claw.admin("action", "wakes:heartbeatTick")
    assert summary["skipped"] == [{"agentId": squad["Nova"], "reason": "running"}]
    await claw.ok({"runId": "oc-77", "action": "end", "sessionKey": "agent:main:main", "response": "HEARTBEAT_OK"})
    await claw.at(T0 + timedelta(minutes=30))
    assert len(nova()) == 2
    assert [minute_of(c, claw) for c in nova()] == [0, 30]


async def test_an_error_ends_the_wake_too_and_the_gateway_run_id_is_enough(claw, gateway):
    await claw.seed()
    await claw.at(T0)
    run_id = wakes(gateway)[0].run_id
    await claw.ok({"runId": run_id, "action": "error", "sessionKey": "agent:main:main", "error": "model overloaded"})
    schedule = {s["agent"]["name"]: s for s in await claw.admin("query", "wakes:schedule")}
    assert schedule["Nova"]["lastWake"]["status"] == "ended"
    assert schedule["Nova"]["agent"]["status"] == "blocked"
    await claw.at(T0 + timedelta(minutes=15))
    assert [minute_of(c, claw) for c in wakes(gateway) if c.body["sessionKey"] == "agent:main:main"] == [0, 15]


async def test_a_wake_that_never_ends_expires_after_the_timeout(claw, gateway, claw_env):
    await claw.seed()
    claw_env.setenv("OPENCLAW_WAKE_TIMEOUT_MINUTES", "20")
    await claw.at(T0)
    await claw.at(T0 + timedelta(minutes=15))  # 15 < 20: still running
    await claw.at(T0 + timedelta(minutes=30))  # 30 >= 20: expired, woken again
    nova = [c for c in wakes(gateway) if c.body["sessionKey"] == "agent:main:main"]
    assert [minute_of(c, claw) for c in nova] == [0, 30]
    rows = await claw.admin("query", "wakes:schedule")
    assert rows[0]["lastWake"]["status"] == "running" and rows[0]["lastWake"]["slot"] == (T0 + timedelta(minutes=30)).timestamp() * 1000


async def test_a_failed_wake_is_retried_within_its_slot_with_the_same_key(claw, gateway):
    await claw.seed()
    gateway.answer_next(503, key_prefix=BEAT)
    await claw.at(T0)
    await claw.minutes(1)
    nova = [c for c in wakes(gateway) if c.body["sessionKey"] == "agent:main:main"]
    assert [c.status for c in nova] == [503, 200]
    assert nova[0].idempotency_key == nova[1].idempotency_key
    rows = await claw.admin("query", "wakes:schedule")
    assert (rows[0]["lastWake"]["status"], rows[0]["lastWake"]["attempts"]) == ("running", 2.0)


async def test_a_long_retry_after_skips_to_the_next_slot(claw, gateway):
    await claw.seed()
    gateway.answer_next(429, retry_after=600, key_prefix=BEAT)
    await claw.at(T0)
    await claw.minutes(14)
    nova = [c for c in wakes(gateway) if c.body["sessionKey"] == "agent:main:main"]
    assert [c.status for c in nova] == [429]
    await claw.minutes(1)
    nova = [c for c in wakes(gateway) if c.body["sessionKey"] == "agent:main:main"]
    assert [(minute_of(c, claw), c.status) for c in nova] == [(0, 429), (15, 200)]


async def test_a_late_tick_still_wakes_within_the_grace_and_downtime_is_not_piled_up(claw, gateway):
    await claw.seed()
    # The server was down from 07:59:30 to 08:04:30: Nova (08:00) is past the 3-minute grace,
    # Friday (08:02) and Shuri (08:04) are within it, Loki's minute (08:06) has not come.
    await claw.at(T0 + timedelta(minutes=4, seconds=30))
    assert sorted(c.body["sessionKey"] for c in wakes(gateway)) == ["agent:developer:main", "agent:product:main"]
    await claw.at(T0 + timedelta(minutes=5))
    assert len(wakes(gateway)) == 2
    await claw.at(T0 + timedelta(minutes=6))
    assert wakes(gateway)[-1].body["sessionKey"] == "agent:content:main"
    assert [c.body["sessionKey"] for c in wakes(gateway)].count("agent:main:main") == 0


async def test_the_prompt_is_configurable_and_nothing_runs_unconfigured(claw, claw_env):
    await claw.seed()
    before = claw.dep.latest_ts()
    summary = await claw.admin("action", "wakes:heartbeatTick")
    assert summary["configured"] is False and summary["woken"] == []
    assert claw.dep.latest_ts() == before
    await claw.at(T0)
    assert all(s["lastWake"] is None for s in await claw.admin("query", "wakes:schedule"))


async def test_a_custom_heartbeat_prompt(claw, gateway, claw_env):
    await claw.seed()
    claw_env.setenv("OPENCLAW_HEARTBEAT_PROMPT", "Read HEARTBEAT.md and check in.")
    await claw.at(T0)
    assert wakes(gateway)[0].body["message"] == "Read HEARTBEAT.md and check in."
    await claw.ok({"runId": "c1", "action": "start", "sessionKey": "agent:main:main",
                   "prompt": "Read HEARTBEAT.md and check in."})
    assert await claw.board() == {"inbox": ["Welcome the squad"]}
