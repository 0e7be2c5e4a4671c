"""Tasks on the kanban: create, move, assign/unassign (and the taskAssignees join they keep), progress,
border colour, archive, and the refusals of bad input (each a ConvexError code, nothing written)."""

from engine.ids import decode_id, new_id

from app_harness import ALICE, PAGE, nova, app_env  # noqa: F401  (fixtures)


async def columns(nova):
    board = await nova.query("tasks:board")
    return {status: [t["title"] for t in tasks] for status, tasks in board.items() if tasks}


async def assigned_to(nova, agent, status=None):
    args = {"agentId": agent, **({"status": status} if status else {})}
    return [t["title"] for t in await nova.query("tasks:listForAgent", args)]


async def test_kanban_lifecycle(nova):
    ids = await nova.seed("t1")
    friday, shuri = ids["Friday"], ids["Shuri"]
    fix = await nova.mutation("tasks:create", {
        "title": "Fix auth", "description": "Token refresh", "priority": "high", "tags": ["auth"],
        "channelId": ids["#dev-tasks"], "borderColor": "#ff8800"})
    post = await nova.mutation("tasks:create", {"title": "Launch post", "assigneeIds": [shuri, shuri]})
    assert await columns(nova) == {"inbox": ["Welcome the squad", "Fix auth"], "assigned": ["Launch post"]}
    created = (await nova.query("tasks:get", {"id": fix}))["task"]
    assert (created["priority"], created["tags"], created["progress"], created["borderColor"]) == (
        "high", ["auth"], 0.0, "#ff8800")
    assert created["updatedAt"] > 0 and "completedAt" not in created

    # Assigning an inbox task moves it to "assigned"; the join answers "tasks of agent X in status S".
    await nova.mutation("tasks:assign", {"taskId": fix, "agentId": friday})
    await nova.mutation("tasks:assign", {"taskId": fix, "agentId": friday})  # idempotent
    await nova.mutation("tasks:assign", {"taskId": fix, "agentId": shuri})
    got = await nova.query("tasks:get", {"id": fix})
    assert got["task"]["assigneeIds"] == [friday, shuri]
    assert [a["name"] for a in got["assignees"]] == ["Friday", "Shuri"]
    assert await assigned_to(nova, shuri) == ["Launch post", "Fix auth"]
    assert await assigned_to(nova, friday, "assigned") == ["Fix auth"]

    await nova.mutation("tasks:move", {"id": fix, "status": "in_progress", "actorId": friday, "actorType": "agent"})
    assert await assigned_to(nova, friday, "assigned") == []
    assert await assigned_to(nova, friday, "in_progress") == ["Fix auth"]
    assert await assigned_to(nova, shuri, "in_progress") == ["Fix auth"]
    await nova.mutation("tasks:setProgress", {"id": fix, "progress": 55.5})
    await nova.mutation("tasks:setBorderColor", {"id": fix, "borderColor": None})
    await nova.mutation("tasks:update", {"id": fix, "title": "Fix auth refresh", "channelId": None})
    task = (await nova.query("tasks:get", {"id": fix}))["task"]
    assert task["progress"] == 55.5 and "borderColor" not in task and "channelId" not in task
    assert task["title"] == "Fix auth refresh" and task["updatedAt"] >= created["updatedAt"]

    # Blocked keeps its reason only while blocked; done keeps completedAt only while done.
    await nova.mutation("tasks:move", {"id": fix, "status": "blocked", "reason": "Needs keys"})
    assert (await nova.query("tasks:get", {"id": fix}))["task"]["blockedReason"] == "Needs keys"
    await nova.mutation("tasks:move", {"id": fix, "status": "done"})
    task = (await nova.query("tasks:get", {"id": fix}))["task"]
    assert "blockedReason" not in task and task["completedAt"] >= task["_creationTime"]
    assert await assigned_to(nova, friday, "done") == ["Fix auth refresh"]
    await nova.mutation("tasks:move", {"id": fix, "status": "review"})
    assert "completedAt" not in (await nova.query("tasks:get", {"id": fix}))["task"]

    # Unassigning keeps the join in step; the last assignee leaving an "assigned" task returns it to the inbox.
    await nova.mutation("tasks:unassign", {"taskId": fix, "agentId": shuri})
    assert await assigned_to(nova, shuri) == ["Launch post"]
    await nova.mutation("tasks:unassign", {"taskId": post, "agentId": shuri})
    await nova.mutation("tasks:unassign", {"taskId": post, "agentId": shuri})  # no-op
    assert await assigned_to(nova, shuri) == []
    assert await columns(nova) == {"inbox": ["Welcome the squad", "Launch post"], "review": ["Fix auth refresh"]}

    await nova.mutation("tasks:archive", {"id": fix})
    assert await columns(nova) == {"inbox": ["Welcome the squad", "Launch post"]}
    assert [t["title"] for t in await nova.query("tasks:list", {"status": "archived"})] == ["Fix auth refresh"]
    assert [t["title"] for t in await nova.query("tasks:list")] == ["Welcome the squad", "Launch post"]

    # The feed tells the story, newest first.
    feed = await nova.query("activities:list", {"paginationOpts": PAGE})
    kinds = [a["type"] for a in feed["page"] if a.get("targetId") == fix]
    assert kinds == ["task_moved", "task_moved", "task_completed", "task_moved", "task_moved",
                     "task_assigned", "task_assigned", "task_created"]
    moved = [a for a in feed["page"] if a["type"] == "task_moved" and a.get("targetId") == fix][-1]
    assert moved["agentId"] == friday and moved["metadata"] == {"from": "assigned", "to": "in_progress"}
    assert moved["message"] == 'Friday moved "Fix auth" to in_progress'
    # Friday was active: lastActiveAt is kept.
    assert (await nova.query("agents:get", {"id": friday}))["lastActiveAt"] > 0


async def test_bad_input_is_refused_with_a_code_and_writes_nothing(nova):
    ids = await nova.seed("t1")
    task = await nova.mutation("tasks:create", {"title": "Guarded"})
    missing_task = new_id(decode_id(task))  # a well-formed id of the tasks table, no such document
    cases = [
        ("tasks:move", {"id": missing_task, "status": "done"}, "NOT_FOUND"),
        ("tasks:move", {"id": ids["Friday"], "status": "done"}, "NOT_FOUND"),  # an id of another table
        ("tasks:move", {"id": "not-an-id", "status": "done"}, "NOT_FOUND"),
        ("tasks:move", {"id": task, "status": "doing"}, "INVALID_STATUS"),
        ("tasks:move", {"id": task, "status": "Done"}, "INVALID_STATUS"),
        ("tasks:setProgress", {"id": task, "progress": 101.0}, "INVALID_PROGRESS"),
        ("tasks:setProgress", {"id": task, "progress": -0.5}, "INVALID_PROGRESS"),
        ("tasks:setProgress", {"id": task, "progress": float("nan")}, "INVALID_PROGRESS"),
        ("tasks:assign", {"taskId": task, "agentId": "alice"}, "NOT_AN_AGENT"),
        ("tasks:assign", {"taskId": task, "agentId": ids["#general"]}, "NOT_AN_AGENT"),
        ("tasks:assign", {"taskId": missing_task, "agentId": ids["Friday"]}, "NOT_FOUND"),
        ("tasks:create", {"title": "x", "assigneeIds": [ids["Friday"], "bogus"]}, "NOT_AN_AGENT"),
        ("tasks:create", {"title": "x", "channelId": task}, "NOT_FOUND"),
        ("tasks:create", {"title": "  "}, "EMPTY_CONTENT"),
        ("tasks:create", {"title": "x", "actorId": "alice", "actorType": "agent"}, "NOT_AN_AGENT"),
        ("tasks:addComment", {"taskId": missing_task, "authorId": "alice", "authorType": "user",
                              "content": "hi"}, "NOT_FOUND"),
        ("tasks:update", {"id": task, "title": ""}, "EMPTY_CONTENT"),
    ]
    for path, args, code in cases:
        assert await nova.error_code("mutation", path, args) == code, (path, args)
    assert await nova.error_code("query", "tasks:list", {"status": "later"}) == "INVALID_STATUS"
    assert await nova.error_code("query", "tasks:get", {"id": missing_task}) == "NOT_FOUND"
    assert await nova.error_code("query", "tasks:listForAgent", {"agentId": task}) == "NOT_AN_AGENT"
    # A type error in the arguments is the engine's ArgumentValidationError, before the handler runs.
    outcome = await nova.dep.call("tasks:setProgress", {"id": task, "progress": "50"}, kind="mutation", auth=ALICE)
    assert not outcome.success and "ArgumentValidationError" in outcome.error_message
    assert (await nova.query("tasks:get", {"id": task}))["task"]["progress"] == 0.0
