"""The squad: agents, the heartbeat query (the spec's Heartbeat Check Procedure), the agent stream."""

from app_harness import BOB, nova, app_env  # noqa: F401  (fixtures)


async def test_agents_crud_and_status(nova):
    ids = await nova.seed("t1")
    squad = await nova.query("agents:list")
    assert [(a["name"], a["level"], a["sessionKey"]) for a in squad] == [
        ("Nova", "lead", "agent:main:main"), ("Friday", "specialist", "agent:developer:main"),
        ("Shuri", "specialist", "agent:product:main"), ("Loki", "specialist", "agent:content:main")]
    assert (await nova.query("agents:get", {"sessionKey": "agent:developer:main"}))["_id"] == ids["Friday"]
    assert await nova.error_code("query", "agents:get", {"sessionKey": "agent:nobody:main"}) == "NOT_FOUND"
    assert await nova.error_code("query", "agents:get", {}) == "INVALID_ARGUMENTS"

    wanda = await nova.mutation("agents:create", {"name": "Wanda", "role": "Designer", "avatar": "🎨",
                                                  "level": "intern", "sessionKey": "agent:design:main"})
    assert await nova.error_code("mutation", "agents:create", {
        "name": "Wanda 2", "role": "x", "avatar": "x", "level": "intern", "sessionKey": "agent:design:main"}) == "DUPLICATE"
    await nova.mutation("agents:update", {"id": wanda, "role": "Design Agent", "level": "specialist",
                                          "personality": "Bold colours."})
    assert await nova.error_code("mutation", "agents:setStatus",
                                 {"id": wanda, "status": "active", "currentTaskId": ids["#general"]}) == "NOT_FOUND"
    task = await nova.mutation("tasks:create", {"title": "Moodboard"})
    await nova.mutation("agents:setStatus", {"id": wanda, "status": "active", "currentTaskId": task})
    agent = await nova.query("agents:get", {"id": wanda})
    assert (agent["role"], agent["level"], agent["status"], agent["currentTaskId"]) == (
        "Design Agent", "specialist", "active", task)
    assert agent["lastActiveAt"] > 0
    await nova.mutation("agents:setStatus", {"id": wanda, "status": "idle", "currentTaskId": None})
    assert "currentTaskId" not in await nova.query("agents:get", {"id": wanda})
    beat = await nova.mutation("agents:reportHeartbeat", {"id": wanda})
    assert (await nova.query("agents:get", {"id": wanda}))["lastActiveAt"] == beat["lastActiveAt"]


async def test_heartbeat_reads_in_the_specs_priority_order(nova):
    ids = await nova.seed("t1")
    friday, lead = ids["Friday"], ids["Nova"]
    quiet = await nova.query("heartbeat:check", {"agentId": friday})
    assert list(quiet) == ["agent", "workingMemory", "mentions", "inProgress", "assigned", "inbox", "heartbeatOk"]
    assert quiet["heartbeatOk"] is True and quiet["inbox"] == []  # not a lead: no inbox

    await nova.mutation("memory:setWorking", {"agentId": friday, "content": "# Current Task\nFix auth"})
    fix = await nova.mutation("tasks:create", {"title": "Fix auth", "assigneeIds": [friday]})
    review = await nova.mutation("tasks:create", {"title": "Review PR", "assigneeIds": [friday]})
    await nova.mutation("tasks:move", {"id": fix, "status": "in_progress"})
    other = await nova.mutation("tasks:create", {"title": "Someone else's", "assigneeIds": [ids["Loki"]]})
    await nova.mutation("tasks:addComment", {"taskId": other, "authorId": "alice", "authorType": "user",
                                             "content": "@friday can you help Loki?"})

    beat = await nova.query("heartbeat:check", {"sessionKey": "agent:developer:main"})
    assert beat["agent"]["_id"] == friday
    assert beat["workingMemory"] == "# Current Task\nFix auth"
    assert [m["content"] for m in beat["mentions"]] == ['alice mentioned you on "Someone else\'s"']
    assert [t["_id"] for t in beat["inProgress"]] == [fix]
    assert [t["_id"] for t in beat["assigned"]] == [review]
    assert beat["inbox"] == [] and beat["heartbeatOk"] is False

    # Delivered mentions are done; only a lead sees the unassigned inbox.
    await nova.mutation("notifications:markDelivered", {"ids": [m["_id"] for m in beat["mentions"]]})
    assert (await nova.query("heartbeat:check", {"agentId": friday}))["mentions"] == []
    lead_beat = await nova.query("heartbeat:check", {"agentId": lead})
    assert [t["title"] for t in lead_beat["inbox"]] == ["Welcome the squad"]
    assert await nova.error_code("query", "heartbeat:check", {"sessionKey": "agent:ghost:main"}) == "NOT_AN_AGENT"


async def test_agent_stream_runs_and_chunks_in_order(nova):
    ids = await nova.seed("t1")
    friday = ids["Friday"]
    run = await nova.mutation("agentStream:startRun", {"agentId": friday, "runId": "abc-123", "prompt": "Fix it"})
    assert (await nova.query("agents:get", {"id": friday}))["status"] == "active"
    for i, kind in enumerate(["thinking", "tool_call", "tool_result", "output"]):
        await nova.mutation("agentStream:appendChunk", {"runId": "abc-123", "type": kind,
                                                        "content": f"step {i}", "progress": float(i * 25)})
    current = await nova.query("agentStream:listByAgent", {"agentId": friday})
    assert current["current"]["_id"] == run and [r["_id"] for r in current["recent"]] == [run]
    got = await nova.query("agentStream:getRun", {"runId": "abc-123"})
    assert [(c["type"], c["content"]) for c in got["chunks"]] == [
        ("thinking", "step 0"), ("tool_call", "step 1"), ("tool_result", "step 2"), ("output", "step 3")]
    assert got["progress"] == 75.0 and got["status"] == "running"
    stamps = [c["timestamp"] for c in got["chunks"]]
    assert stamps == sorted(stamps)

    finished = await nova.mutation("agentStream:finishRun", {"runId": "abc-123", "status": "completed"})
    assert finished["durationMs"] >= 0
    second = await nova.mutation("agentStream:startRun", {"agentId": friday, "runId": "def-456"})
    await nova.mutation("agentStream:finishRun", {"runId": "def-456", "status": "error", "error": "boom"})
    listing = await nova.query("agentStream:listByAgent", {"agentId": friday})
    assert listing["current"] is None and [r["_id"] for r in listing["recent"]] == [second, run]
    failed = await nova.query("agentStream:getRun", {"runId": "def-456"})
    assert failed["status"] == "error" and failed["chunks"][-1]["content"] == "boom"
    assert (await nova.query("agents:get", {"id": friday}))["status"] == "idle"
    feed = await nova.query("activities:list", {"paginationOpts": {"numItems": 10.0, "cursor": None},
                                                "type": "agent_completed"})
    assert [a["metadata"]["status"] for a in feed["page"]] == ["error", "completed"]

    assert await nova.error_code("query", "agentStream:getRun", {"runId": "nope"}) == "NOT_FOUND"
    assert await nova.error_code("mutation", "agentStream:appendChunk",
                                 {"runId": "abc-123", "type": "output", "content": "x", "progress": 120.0}) == "INVALID_PROGRESS"
    await nova.seed("t2")
    assert await nova.error_code("query", "agentStream:getRun", {"runId": "abc-123"}, auth=BOB) == "NOT_FOUND"
    assert await nova.error_code("query", "agentStream:listByAgent", {"agentId": friday}, auth=BOB) == "NOT_AN_AGENT"
