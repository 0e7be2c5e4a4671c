"""A full day on the board, then `generateDailyStandup`: the spec's categories, for every tenant, once."""

import time

from app_harness import ADMIN, ALICE, BOB, PAGE, nova, app_env  # noqa: F401  (fixtures)

DAY_MS = 86_400_000


async def new_task(nova, title, agent=None, *, auth=ALICE):
    task = await nova.mutation("tasks:create", {"title": title}, auth=auth)
    if agent is not None:
        await nova.mutation("tasks:assign", {"taskId": task, "agentId": agent}, auth=auth)
    return task


async def move(nova, task, status, auth=ALICE, **extra):
    await nova.mutation("tasks:move", {"id": task, "status": status, **extra}, auth=auth)


async def test_a_full_day_yields_the_specs_standup(nova, monkeypatch):
    ids = await nova.seed("t1")
    other = await nova.seed("t2")
    friday, shuri, loki, lead = ids["Friday"], ids["Shuri"], ids["Loki"], ids["Nova"]

    # Yesterday: a task completed then, which today's standup must not list.
    now = time.time() * 1000
    nova.freeze_clock(monkeypatch, now - DAY_MS)
    old = await new_task(nova, "Yesterday's fix", friday)
    await move(nova, old, "done")
    nova.freeze_clock(monkeypatch, now)

    # Today.
    auth_fix = await new_task(nova, "Fix auth token refresh", friday)
    await move(nova, auth_fix, "in_progress", actorId=friday, actorType="agent")
    await nova.mutation("tasks:setProgress", {"id": auth_fix, "progress": 100.0})
    await move(nova, auth_fix, "review", actorId=friday, actorType="agent")
    await nova.mutation("tasks:addComment", {"taskId": auth_fix, "authorId": "alice", "authorType": "user",
                                             "content": "Looks good.\nDecision: Ship the auth fix on Friday"})
    await move(nova, auth_fix, "done")

    launch = await new_task(nova, "Write launch post", loki)
    await move(nova, launch, "in_progress")
    await nova.mutation("tasks:setProgress", {"id": launch, "progress": 40.0})
    await nova.mutation("tasks:addComment", {"taskId": launch, "authorId": lead, "authorType": "agent",
                                             "content": "decision: Loki owns the launch post"})

    onboarding = await new_task(nova, "Spec onboarding", shuri)
    await move(nova, onboarding, "blocked", reason="Waiting for design review")
    ci = await new_task(nova, "Migrate CI", friday)
    await move(nova, ci, "blocked")

    reopened = await new_task(nova, "Flaky login test", shuri)
    await move(nova, reopened, "done")
    await move(nova, reopened, "in_progress")  # reopened: no longer completed

    docs = await new_task(nova, "Review API docs", lead)
    await move(nova, docs, "review")
    await new_task(nova, "Unassigned idea")  # stays in the inbox, in no category
    await new_task(nova, "Other tenant's review", other["Friday"], auth=BOB)

    result = await nova.mutation("standups:generateDailyStandup", {}, auth=ADMIN)
    today = result["date"]
    assert sorted(s["tenantId"] for s in result["standups"]) == ["t1", "t2"]
    assert all(s["created"] for s in result["standups"])

    standup = await nova.query("standups:get", {"date": today})
    assert {k: v for k, v in standup.items() if not k.startswith("_")} == {
        "date": today,
        "completed": [{"agentId": friday, "taskTitle": "Fix auth token refresh"}],
        "inProgress": [
            {"agentId": loki, "taskTitle": "Write launch post", "progress": 40.0},
            {"agentId": shuri, "taskTitle": "Flaky login test", "progress": 0.0},
        ],
        "blocked": [
            {"agentId": shuri, "reason": "Waiting for design review"},
            {"agentId": friday, "reason": "Migrate CI"},
        ],
        "needsReview": [{"taskId": docs, "taskTitle": "Review API docs"}],
        "decisions": ["Ship the auth fix on Friday", "Loki owns the launch post"],
        "sentToTelegram": False,
        "tenantId": "t1",
    }

    # The other tenant's standup holds only its own day, and neither can read the other's.
    theirs = await nova.query("standups:get", {"date": today}, auth=BOB)
    assert theirs["tenantId"] == "t2" and theirs["completed"] == [] and theirs["needsReview"] == []
    assert theirs["_id"] != standup["_id"]

    # Idempotent per (date, tenant): a second run refreshes, it does not add.
    await move(nova, launch, "review")
    again = await nova.mutation("standups:generateDailyStandup", {}, auth=ADMIN)
    assert not any(s["created"] for s in again["standups"])
    assert await nova.query("standups:list") == [await nova.query("standups:get", {"date": today})]
    refreshed = await nova.query("standups:get", {"date": today})
    assert refreshed["_id"] == standup["_id"]
    assert [r["taskTitle"] for r in refreshed["needsReview"]] == ["Write launch post", "Review API docs"]

    # The day as the activity feed saw it.
    completed = await nova.query("activities:list", {"paginationOpts": PAGE, "type": "task_completed"})
    assert [a["targetId"] for a in completed["page"]] == [reopened, auth_fix, old]


async def test_standup_for_an_empty_deployment_and_bad_dates(nova):
    assert await nova.mutation("standups:generateDailyStandup", {"date": "2026-01-31"}, auth=ADMIN) == {
        "date": "2026-01-31", "standups": []}
    assert await nova.error_code("mutation", "standups:generateDailyStandup", {"date": "2026-02-30"},
                                 auth=ADMIN) == "INVALID_DATE"
    # Internal: not callable by clients.
    outcome = await nova.dep.call("standups:generateDailyStandup", {}, kind="mutation", auth=ALICE)
    assert not outcome.success and "Could not find public function" in outcome.error_message
