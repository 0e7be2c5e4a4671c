"""Notifications to agents: the delivery cron and POST /notifications/deliver against a fake OpenClaw
gateway on loopback (tests/fakes/openclaw_gateway.py), on a ManualClock: no sleeps.

The clock starts at T0 - 30 s; `claw.at(T0)` runs the every-minute crons for the first time (the
heartbeat cron runs too: its calls are told apart by their Idempotency-Key).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from app_harness import app_env  # noqa: F401  (fixture)
from openclaw_harness import ADMIN_KEY, HOOKS_TOKEN, T0, claw, claw_env, gateway, ms  # noqa: F401  (fixtures)

NOTE = "nova-notification-"


def sent(gateway) -> list:
    """The gateway calls that delivered notifications (the heartbeat cron wakes agents too)."""
    return [c for c in gateway.agent_calls() if (c.idempotency_key or "").startswith("nova-notification-")]


async def assign(claw, title: str, agent_id: str) -> tuple[str, dict]:
    """A task assigned to the agent; returns it and the agent's assignment notification."""
    task_id = await claw.admin("mutation", "tasks:create", {"title": title, "assigneeIds": [agent_id]})
    notification = [n for n in await claw.notifications(agent_id) if n["sourceId"] == task_id][0]
    return task_id, notification


async def one(claw, agent_id: str, notification_id: str) -> dict:
    return [n for n in await claw.notifications(agent_id) if n["_id"] == notification_id][0]


async def test_an_agent_notification_is_delivered_once_with_token_key_and_session(claw, gateway):
    squad = await claw.seed()
    task_id, note = await assign(claw, "Fix SSO", squad["Friday"])
    # A user's notification is never sent to OpenClaw.
    await claw.admin("mutation", "tasks:addComment", {"taskId": task_id, "authorId": squad["Friday"],
                                                      "authorType": "agent", "content": "On it"})
    await claw.at(T0)
    calls = sent(gateway)
    assert len(calls) == 1
    call = calls[0]
    assert call.bearer == HOOKS_TOKEN and call.status == 200
    assert call.idempotency_key == f"nova-notification-{note['_id']}"
    assert call.body == {
        "message": f'[Nova Command] You were assigned "Fix SSO"\nKind: assignment\nAbout: {task_id}\n'
                   f"Notification: {note['_id']}",
        "sessionKey": "agent:developer:main", "agentId": "developer", "wakeMode": "now", "deliver": False,
        "name": "Nova Command",
    }
    delivered = await one(claw, squad["Friday"], note["_id"])
    assert delivered["delivered"] is True and delivered["deliveredAt"] == ms(T0)
    assert delivered["openclawRunId"] == call.run_id and delivered["deliveryAttempts"] == 1.0
    await claw.minutes(3)
    assert len(sent(gateway)) == 1  # never twice


async def test_429_is_retried_after_retry_after_with_the_same_key(claw, gateway):
    squad = await claw.seed()
    _, note = await assign(claw, "Throttled", squad["Shuri"])
    gateway.answer_next(429, retry_after=150, key_prefix=NOTE)
    await claw.at(T0)
    waiting = await one(claw, squad["Shuri"], note["_id"])
    assert waiting["delivered"] is False and waiting["deliveryAttempts"] == 1.0
    assert waiting["nextAttemptAt"] == ms(T0) + 150_000
    assert waiting["lastDeliveryError"].startswith("HTTP 429")
    await claw.minutes(2)  # 08:01, 08:02: not due yet
    assert len(sent(gateway)) == 1
    await claw.minutes(1)  # 08:03 >= 08:02:30
    calls = sent(gateway)
    assert [c.status for c in calls] == [429, 200]
    assert calls[0].idempotency_key == calls[1].idempotency_key == f"nova-notification-{note['_id']}"
    done = await one(claw, squad["Shuri"], note["_id"])
    assert done["delivered"] is True and done["deliveryAttempts"] == 2.0


async def test_503_backs_off_exponentially_and_never_drops(claw, gateway):
    squad = await claw.seed()
    _, note = await assign(claw, "Restarting", squad["Loki"])
    gateway.answer_next(503, times=3, key_prefix=NOTE)
    waits = []
    await claw.at(T0)
    for _ in range(12):
        n = await one(claw, squad["Loki"], note["_id"])
        if n["delivered"]:
            break
        waits.append((n["deliveryAttempts"], n["nextAttemptAt"] - ms(claw.now)))
        await claw.minutes(1)
        while claw.clock.now_ms() < n["nextAttemptAt"]:
            await claw.minutes(1)
    assert waits == [(1.0, 30_000.0), (2.0, 60_000.0), (3.0, 120_000.0)]
    assert [c.status for c in sent(gateway)] == [503, 503, 503, 200]
    assert (await one(claw, squad["Loki"], note["_id"]))["delivered"] is True


async def test_an_unavailable_gateway_stops_the_run_so_others_keep_their_turn(claw, gateway):
    squad = await claw.seed()
    _, first = await assign(claw, "One", squad["Friday"])
    _, second = await assign(claw, "Two", squad["Shuri"])
    gateway.answer_next(503, key_prefix=NOTE)
    await claw.at(T0)
    assert len(sent(gateway)) == 1
    assert "deliveryAttempts" not in await one(claw, squad["Shuri"], second["_id"])
    await claw.minutes(1)
    assert {c.idempotency_key for c in sent(gateway)[1:]} == {
        f"nova-notification-{first['_id']}", f"nova-notification-{second['_id']}"}


async def test_no_answer_and_a_reset_connection_are_retried(claw, gateway, claw_env):
    claw_env.setenv("OPENCLAW_GATEWAY_TIMEOUT_SECONDS", "0.5")
    squad = await claw.seed()
    _, note = await assign(claw, "Slow gateway", squad["Friday"])
    gateway.hang_next(key_prefix=NOTE)
    await claw.at(T0)
    n = await one(claw, squad["Friday"], note["_id"])
    assert n["delivered"] is False and n["lastDeliveryError"] == "no answer within 0.5s"
    gateway.reset_next(key_prefix=NOTE)
    await claw.minutes(1)
    n = await one(claw, squad["Friday"], note["_id"])
    assert n["delivered"] is False and n["deliveryAttempts"] == 2.0 and n["lastDeliveryError"]
    await claw.minutes(1)
    await claw.minutes(1)
    n = await one(claw, squad["Friday"], note["_id"])
    assert n["delivered"] is True and n["deliveryAttempts"] == 3.0
    assert len({c.idempotency_key for c in sent(gateway)}) == 1


async def test_a_wrong_token_is_kept_and_delivered_once_fixed(claw, gateway, claw_env):
    squad = await claw.seed()
    _, note = await assign(claw, "Auth", squad["Friday"])
    claw_env.setenv("OPENCLAW_HOOKS_TOKEN", "not-the-token")
    await claw.at(T0)
    n = await one(claw, squad["Friday"], note["_id"])
    assert n["delivered"] is False and n["lastDeliveryError"].startswith("HTTP 401")
    claw_env.setenv("OPENCLAW_HOOKS_TOKEN", HOOKS_TOKEN)
    await claw.minutes(1)
    assert (await one(claw, squad["Friday"], note["_id"]))["delivered"] is True
    assert [c.status for c in sent(gateway)] == [401, 200]


async def test_unconfigured_delivery_writes_nothing(claw):
    squad = await claw.seed()
    _, note = await assign(claw, "Nowhere", squad["Friday"])
    before = claw.dep.latest_ts()
    summary = await claw.admin("action", "delivery:deliverDue")
    assert summary == {"configured": False, "attempted": 0.0, "delivered": 0.0, "failed": 0.0,
                       "missing": ["OPENCLAW_GATEWAY_URL", "OPENCLAW_HOOKS_TOKEN"]}
    assert claw.dep.latest_ts() == before
    await claw.at(T0)
    assert "deliveryAttempts" not in await one(claw, squad["Friday"], note["_id"])


async def test_read_or_marked_notifications_are_not_sent(claw, gateway):
    squad = await claw.seed()
    _, note = await assign(claw, "Seen", squad["Friday"])
    await claw.admin("mutation", "notifications:markDelivered", {"ids": [note["_id"]]})
    await claw.at(T0)
    assert sent(gateway) == []


async def test_concurrent_runs_never_send_a_notification_twice(claw, gateway, claw_env):
    squad = await claw.seed()
    notes = [(await assign(claw, f"Task {i}", squad[name]))[1]
             for i, name in enumerate(["Friday", "Shuri", "Loki", "Nova", "Friday", "Shuri"])]
    results = await asyncio.gather(
        claw.admin("action", "delivery:deliverDue"),
        claw.post("/notifications/deliver", {}, headers={"Authorization": f"Bearer {ADMIN_KEY}"}),
        claw.admin("action", "delivery:deliverDue"),
    )
    assert sum(r["delivered"] for r in (results[0], results[1][1], results[2])) == len(notes)
    keys = [c.idempotency_key for c in sent(gateway)]
    assert sorted(keys) == sorted(f"nova-notification-{n['_id']}" for n in notes)


async def test_a_claim_cut_off_mid_send_is_retried_after_its_lease(claw, gateway):
    squad = await claw.seed()
    _, note = await assign(claw, "Crash", squad["Friday"])
    claw.clock.set(T0 - timedelta(seconds=10))
    # The claim committed, then the process died before the POST: the lease (2 min) holds it.
    claimed = await claw.admin("mutation", "delivery:claimDue", {"limit": 10.0})
    assert [c["id"] for c in claimed] == [note["_id"]]
    await claw.at(T0)
    await claw.minutes(1)
    assert sent(gateway) == []
    await claw.minutes(1)  # 08:02 > 07:59:50 + 2 min
    assert [c.idempotency_key for c in sent(gateway)] == [f"nova-notification-{note['_id']}"]
    n = await one(claw, squad["Friday"], note["_id"])
    assert n["delivered"] is True and n["deliveryAttempts"] == 2.0


async def test_the_http_trigger_needs_the_admin_key(claw, gateway, claw_env):
    squad = await claw.seed()
    await assign(claw, "Now please", squad["Friday"])
    before = claw.dep.latest_ts()
    status, body = await claw.post("/notifications/deliver", {})
    assert (status, body["code"]) == (401, "UNAUTHORIZED")
    for header in ({"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {ADMIN_KEY}"},
                   {"Authorization": f"Bearer {ADMIN_KEY}x"}, {"Authorization": "Bearer"}):
        status, _ = await claw.post("/notifications/deliver", {}, headers=header)
        assert status == 401, header
    assert claw.dep.latest_ts() == before and sent(gateway) == []
    status, body = await claw.post("/notifications/deliver", {}, headers={"Authorization": f"Convex {ADMIN_KEY}"})
    assert status == 200 and body == {"ok": True, "configured": True, "attempted": 1.0, "delivered": 1.0,
                                      "failed": 0.0, "missing": []}
    assert len(sent(gateway)) == 1


async def test_a_run_started_by_a_delivery_works_on_the_notified_task(claw, gateway):
    squad = await claw.seed()
    task_id, _ = await assign(claw, "Write the changelog", squad["Loki"])
    await claw.at(T0)
    run_id = sent(gateway)[0].run_id
    # OpenClaw runs the turn; the hook reports it with the gateway's runId and the message as prompt.
    message = [t for t in gateway.admitted if t.run_id == run_id][0].message
    answer = await claw.ok({"runId": run_id, "action": "start", "sessionKey": "agent:content:main",
                            "prompt": message})
    assert answer["taskId"] == task_id
    assert await claw.board() == {"inbox": ["Welcome the squad"], "in_progress": ["Write the changelog"]}
    await claw.ok({"runId": run_id, "action": "end", "sessionKey": "agent:content:main"})
    assert await claw.board() == {"inbox": ["Welcome the squad"], "review": ["Write the changelog"]}
