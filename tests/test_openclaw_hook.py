"""POST /openclaw/event in process: the spec's switch for both body shapes, and the robustness a
fire-and-forget sender needs (duplicates, out-of-order events, unknown agents, long runs).

Bodies: `spec(...)` is the spec's shape; `hook(...)` is what the mission-control hook sends
(shared/reference/integrations.md §2). Status codes through a real server: test_openclaw_http.py.
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from app_harness import app_env  # noqa: F401  (fixture)
from engine.values import value_size
from openclaw_harness import T0, claw, claw_env, iso, ms  # noqa: F401  (fixtures)

DEV = "agent:developer:main"
LEAD = "agent:main:main"


def spec(run_id: str, action: str, **fields) -> dict:
    return {"runId": run_id, "action": action, "sessionKey": fields.pop("sessionKey", DEV), **fields}


def hook(run_id: str, action: str, at, **fields) -> dict:
    event_type = {"start": "lifecycle:start", "end": "lifecycle:end", "error": "lifecycle:error",
                  "progress": "tool:start", "document": "tool:write"}[action]
    return {"runId": run_id, "action": action, "sessionKey": fields.pop("sessionKey", DEV),
            "timestamp": iso(at), "eventType": fields.pop("eventType", event_type), **fields}


async def test_spec_shape_start_progress_end(claw):
    squad = await claw.seed()
    friday = squad["Friday"]
    start = await claw.ok(spec("r1", "start", prompt="Fix the login redirect\nUsers land on /404 after SSO."))
    task_id = start["taskId"]
    task = (await claw.admin("query", "tasks:get", {"id": task_id}))["task"]
    assert task["title"] == "Fix the login redirect"
    assert task["description"] == "Fix the login redirect\nUsers land on /404 after SSO."
    assert task["status"] == "in_progress" and task["assigneeIds"] == [friday] and task["openclawRunId"] == "r1"
    assert await claw.admin("query", "tasks:listForAgent", {"agentId": friday, "status": "in_progress"}) == [task]
    agent = await claw.agent(friday)
    assert agent["status"] == "active" and agent["currentTaskId"] == task_id
    stream = await claw.stream("r1")
    assert (stream["status"], stream["chunks"], stream["progress"], stream["agentId"]) == ("running", [], 0.0, friday)

    await claw.ok(spec("r1", "progress", chunk={"type": "thinking", "content": "Reading auth.ts"}, progress=30))
    await claw.ok(spec("r1", "progress", chunk={"type": "tool_call", "content": "edit auth.ts"}, progress=70))
    stream = await claw.stream("r1")
    assert [(c["type"], c["content"]) for c in stream["chunks"]] == [("thinking", "Reading auth.ts"),
                                                                     ("tool_call", "edit auth.ts")]
    assert stream["progress"] == 70.0 and stream["chunkCount"] == 2.0
    assert (await claw.admin("query", "tasks:get", {"id": task_id}))["task"]["progress"] == 70.0

    await claw.ok(spec("r1", "end"))
    stream = await claw.stream("r1")
    assert stream["status"] == "completed" and stream["progress"] == 100.0
    assert stream["durationMs"] == stream["completedAt"] - stream["startedAt"] >= 0
    assert await claw.board() == {"inbox": ["Welcome the squad"], "review": ["Fix the login redirect"]}
    agent = await claw.agent(friday)
    assert agent["status"] == "idle" and "currentTaskId" not in agent
    feed = [(a["type"], a["message"]) for a in await claw.feed() if a.get("agentId") == friday]
    assert feed == [
        ("task_created", 'Friday created "Fix the login redirect"'),
        ("agent_started", 'Friday started "Fix the login redirect"'),
        ("task_moved", 'Friday moved "Fix the login redirect" to review'),
        ("agent_completed", 'Friday finished "Fix the login redirect"'),
    ]


async def test_hook_shape_with_timestamps_messages_response_and_a_document(claw):
    squad = await claw.seed()
    t = T0 + timedelta(hours=1)
    start = await claw.ok(hook("h1", "start", t, prompt="Write the release notes", source="Telegram"))
    await claw.ok(hook("h1", "progress", t + timedelta(seconds=5), message="💭 Thinking...",
                       eventType="assistant:thinking"))
    await claw.ok(hook("h1", "progress", t + timedelta(seconds=9), message="🔧 Using tool: write"))
    doc = await claw.ok(hook("h1", "document", t + timedelta(seconds=20), agentId="developer", sessionKey=None,
                             document={"title": "RELEASE.md", "content": "# 1.4\n- SSO fix", "type": "markdown",
                                       "path": "/work/RELEASE.md"}))
    await claw.ok(hook("h1", "end", t + timedelta(seconds=95), response="Release notes are in RELEASE.md"))

    task = (await claw.admin("query", "tasks:get", {"id": start["taskId"]}))["task"]
    assert task["tags"] == ["openclaw", "telegram"] and task["status"] == "review" and task["progress"] == 100.0
    assert task["description"] == "Write the release notes\n\nSource: Telegram"
    stream = await claw.stream("h1")
    assert stream["startedAt"] == ms(t) and stream["completedAt"] == ms(t + timedelta(seconds=95))
    assert stream["durationMs"] == 95_000.0
    assert [(c["type"], c["content"], c["timestamp"]) for c in stream["chunks"]] == [
        ("thinking", "💭 Thinking...", ms(t + timedelta(seconds=5))),
        ("tool_call", "🔧 Using tool: write", ms(t + timedelta(seconds=9))),
        ("output", "Release notes are in RELEASE.md", ms(t + timedelta(seconds=95))),
    ]
    documents = await claw.admin("query", "documents:listByTask", {"taskId": start["taskId"]})
    assert [(d["_id"], d["title"], d["type"], d["path"], d["agentId"]) for d in documents] == [
        (doc["documentId"], "RELEASE.md", "markdown", "/work/RELEASE.md", squad["Friday"])]
    completed = (await claw.feed("agent_completed"))[-1]
    assert completed["metadata"] == {"runId": "h1", "status": "completed", "durationMs": 95_000.0,
                                     "taskId": start["taskId"], "response": "Release notes are in RELEASE.md"}
    started = (await claw.feed("agent_started"))[-1]
    assert started["metadata"] == {"runId": "h1", "kind": "work", "prompt": "Write the release notes",
                                   "source": "Telegram"}


async def test_error_blocks_the_task_and_the_agent_and_reaches_the_feed(claw):
    squad = await claw.seed()
    start = await claw.ok(spec("e1", "start", prompt="Migrate the database"))
    await claw.ok(spec("e1", "error", error="Permission denied: /var/lib/pg"))
    task = (await claw.admin("query", "tasks:get", {"id": start["taskId"]}))["task"]
    assert task["status"] == "blocked" and task["blockedReason"] == "Permission denied: /var/lib/pg"
    assert (await claw.agent(squad["Friday"]))["status"] == "blocked"
    stream = await claw.stream("e1")
    assert stream["status"] == "error" and stream["chunks"][-1]["type"] == "error"
    error = (await claw.feed("agent_completed"))[-1]
    assert error["message"] == 'Friday hit an error on "Migrate the database": Permission denied: /var/lib/pg'
    assert error["metadata"]["error"] == "Permission denied: /var/lib/pg" and error["metadata"]["status"] == "error"
    # The hook's error without a message
    await claw.ok(hook("e2", "start", T0, prompt="Deploy"))
    await claw.ok(hook("e2", "error", T0 + timedelta(seconds=3)))
    assert (await claw.stream("e2"))["chunks"][-1]["content"] == "Unknown error"
    # A later run of the agent makes it active again.
    await claw.ok(spec("e3", "start", prompt="Retry the migration"))
    assert (await claw.agent(squad["Friday"]))["status"] == "active"


async def test_duplicates_change_nothing(claw):
    await claw.seed()
    events = [hook("d1", "start", T0, prompt="Ship it"),
              hook("d1", "progress", T0 + timedelta(seconds=1), message="working"),
              spec("d1", "progress", chunk={"type": "output", "content": "same"}, progress=50),
              hook("d1", "document", T0 + timedelta(seconds=2), document={"title": "a", "content": "b", "type": "note"}),
              hook("d1", "end", T0 + timedelta(seconds=3), response="shipped")]
    for event in events:
        assert (await claw.ok(event))["duplicate"] is False
    before = claw.dep.latest_ts()
    for event in events:
        again = await claw.ok(event)
        assert again["duplicate"] is True and again["runId"] == "d1"
    # An explicit Idempotency-Key identifies an event whatever its body.
    await claw.ok(spec("d1", "progress", chunk={"type": "output", "content": "x"}), headers={"Idempotency-Key": "k-1"})
    after_keyed = claw.dep.latest_ts()
    assert (await claw.ok(spec("d1", "progress", chunk={"type": "output", "content": "y"}),
                          headers={"Idempotency-Key": "k-1"}))["duplicate"] is True
    assert claw.dep.latest_ts() == after_keyed > before
    assert [c["content"] for c in await claw.chunks("d1")] == ["working", "same", "shipped", "x"]
    assert len(await claw.feed("agent_started")) == 1 and len(await claw.feed("agent_completed")) == 1
    assert len(await claw.feed("document_created")) == 1


async def test_a_resent_start_or_end_with_a_new_timestamp_does_not_repeat_the_feed(claw):
    await claw.seed()
    await claw.ok(hook("x1", "start", T0, prompt="Once"))
    await claw.ok(hook("x1", "start", T0 + timedelta(seconds=1), prompt="Once"))
    await claw.ok(hook("x1", "end", T0 + timedelta(seconds=10)))
    await claw.ok(hook("x1", "end", T0 + timedelta(seconds=11)))
    await claw.ok(hook("x1", "error", T0 + timedelta(seconds=12), error="late"))
    assert len(await claw.feed("agent_started")) == 1 and len(await claw.feed("agent_completed")) == 1
    assert (await claw.stream("x1"))["status"] == "completed"  # the first terminal event decides
    assert await claw.board() == {"inbox": ["Welcome the squad"], "review": ["Once"]}


async def test_progress_before_start_is_kept_and_start_fills_in(claw):
    squad = await claw.seed()
    t = T0 + timedelta(minutes=5)
    await claw.ok(hook("o1", "progress", t + timedelta(seconds=2), message="💭 Thinking..."))
    await claw.ok(spec("o1", "progress", chunk={"type": "output", "content": "half way"}, progress=50))
    stream = await claw.stream("o1")
    assert stream["status"] == "running" and stream["progress"] == 50.0 and stream["chunkCount"] == 2.0
    assert await claw.board() == {"inbox": ["Welcome the squad"]}  # no card before the prompt is known
    start = await claw.ok(hook("o1", "start", t, prompt="Refactor billing"))
    stream = await claw.stream("o1")
    assert stream["startedAt"] == ms(t)
    task = (await claw.admin("query", "tasks:get", {"id": start["taskId"]}))["task"]
    assert task["status"] == "in_progress" and task["progress"] == 50.0
    assert (await claw.agent(squad["Friday"]))["currentTaskId"] == start["taskId"]
    assert [c["content"] for c in await claw.chunks("o1")] == ["💭 Thinking...", "half way"]


async def test_progress_without_an_agent_waits_for_the_first_event_naming_it(claw):
    await claw.seed()
    pending = await claw.ok({"runId": "p1", "action": "progress", "chunk": {"type": "thinking", "content": "early"}})
    assert pending["pending"] is True and "streamId" not in pending
    assert [c["content"] for c in await claw.chunks("p1")] == ["early"]
    await claw.ok(spec("p1", "start", prompt="Late start"))
    stream = await claw.stream("p1")
    assert [c["content"] for c in stream["chunks"]] == ["early"] and stream["chunkCount"] == 1.0
    await claw.ok({"runId": "p1", "action": "progress", "chunk": {"type": "output", "content": "later"}})
    assert [c["content"] for c in await claw.chunks("p1")] == ["early", "later"]


async def test_end_before_start_then_the_late_start(claw):
    squad = await claw.seed()
    await claw.ok(hook("l1", "end", T0 + timedelta(seconds=40), response="All done"))
    stream = await claw.stream("l1")
    assert stream["status"] == "completed" and stream["durationMs"] == 0.0
    start = await claw.ok(hook("l1", "start", T0, prompt="Write tests"))
    stream = await claw.stream("l1")
    assert stream["status"] == "completed" and stream["durationMs"] == 40_000.0
    task = (await claw.admin("query", "tasks:get", {"id": start["taskId"]}))["task"]
    assert task["status"] == "review" and task["progress"] == 100.0  # never re-opened by a late start
    assert (await claw.agent(squad["Friday"]))["status"] == "idle"


async def test_a_document_before_its_task_joins_it_and_a_path_is_updated_in_place(claw):
    await claw.seed()
    first = await claw.ok(hook("w1", "document", T0, document={"title": "plan.md", "content": "v1", "type": "markdown",
                                                               "path": "/plan.md"}))
    start = await claw.ok(hook("w1", "start", T0 - timedelta(seconds=1), prompt="Plan the sprint"))
    again = await claw.ok(hook("w1", "document", T0 + timedelta(seconds=5),
                               document={"title": "plan.md", "content": "v2", "type": "markdown", "path": "/plan.md"}))
    assert again["documentId"] == first["documentId"]
    documents = await claw.admin("query", "documents:listByTask", {"taskId": start["taskId"]})
    assert [(d["content"], d["taskId"]) for d in documents] == [("v2", start["taskId"])]
    # Unknown types are kept as generic documents; a missing title comes from the path.
    odd = await claw.ok(hook("w1", "document", T0 + timedelta(seconds=6),
                             document={"content": "x", "type": "spreadsheet", "path": "/data/q1.csv"}))
    odd_doc = await claw.admin("query", "documents:get", {"id": odd["documentId"]})
    assert (odd_doc["title"], odd_doc["type"]) == ("q1.csv", "document")


async def test_a_task_linked_to_the_run_is_used_and_a_done_task_is_never_moved(claw):
    squad = await claw.seed()
    task_id = await claw.admin("mutation", "tasks:create", {"title": "Linked", "openclawRunId": "k1"})
    start = await claw.ok(spec("k1", "start", prompt="whatever the prompt says"))
    assert start["taskId"] == task_id
    task = (await claw.admin("query", "tasks:get", {"id": task_id}))["task"]
    assert task["status"] == "in_progress" and task["assigneeIds"] == [squad["Friday"]]
    await claw.admin("mutation", "tasks:move", {"id": task_id, "status": "done"})
    await claw.ok(spec("k1", "error", error="too late"))
    assert (await claw.admin("query", "tasks:get", {"id": task_id}))["task"]["status"] == "done"
    assert await claw.board() == {"inbox": ["Welcome the squad"], "done": ["Linked"]}


async def test_end_status_done(claw, claw_env):
    await claw.seed()
    claw_env.setenv("OPENCLAW_END_STATUS", "done")
    await claw.ok(spec("s1", "start", prompt="Straight to done"))
    await claw.ok(spec("s1", "end"))
    assert (await claw.board())["done"] == ["Straight to done"]
    assert (await claw.feed("task_completed"))[-1]["message"] == 'Friday completed "Straight to done"'


async def test_an_unknown_session_key_gets_an_agent(claw):
    await claw.seed()
    answer = await claw.ok(spec("u1", "start", sessionKey="agent:designer:main", prompt="Draw the logo"))
    assert answer["agentCreated"] is True
    designer = await claw.agent(answer["agentId"])
    assert (designer["name"], designer["role"], designer["level"], designer["sessionKey"], designer["status"]) == (
        "Designer", "OpenClaw agent", "specialist", "agent:designer:main", "active")
    assert designer["tenantId"] == "default"
    again = await claw.ok(spec("u2", "start", sessionKey="agent:designer:main", prompt="Draw the icon"))
    assert again["agentId"] == designer["_id"] and "agentCreated" not in again


async def test_heartbeat_and_notification_runs_make_no_cards(claw):
    await claw.seed()
    await claw.ok(spec("hb1", "start", sessionKey=LEAD, prompt="HEARTBEAT"))
    await claw.ok(spec("hb1", "end", sessionKey=LEAD, response="HEARTBEAT_OK"))
    await claw.ok(spec("n1", "start", prompt="[Nova Command] Loki mentioned you on \"Launch\""))
    assert await claw.board() == {"inbox": ["Welcome the squad"]}
    assert [a["message"] for a in await claw.feed("agent_started")] == ["Nova started a heartbeat", "Friday started a run"]


async def test_unknown_run_without_an_agent_is_refused_and_writes_nothing(claw):
    await claw.seed()
    before = claw.dep.latest_ts()
    status, body = await claw.event({"runId": "ghost", "action": "end", "response": "?"})
    assert (status, body["code"]) == (422, "UNKNOWN_RUN")
    assert claw.dep.latest_ts() == before


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"action": "start", "sessionKey": DEV}, 400, "MISSING_RUN_ID"),
    ({"runId": "", "action": "start", "sessionKey": DEV}, 400, "MISSING_RUN_ID"),
    ({"runId": 7, "action": "start", "sessionKey": DEV}, 400, "INVALID_FIELD"),
    ({"runId": "r", "sessionKey": DEV}, 400, "MISSING_ACTION"),
    ({"runId": "r", "action": "pause", "sessionKey": DEV}, 400, "UNKNOWN_ACTION"),
    ({"runId": "r", "action": "start"}, 400, "MISSING_SESSION_KEY"),
    ({"runId": "r", "action": "progress", "sessionKey": DEV, "chunk": {"type": "shout", "content": "x"}}, 400, "INVALID_CHUNK"),
    ({"runId": "r", "action": "progress", "sessionKey": DEV, "chunk": "text"}, 400, "INVALID_CHUNK"),
    ({"runId": "r", "action": "progress", "sessionKey": DEV, "progress": 120}, 400, "INVALID_PROGRESS"),
    ({"runId": "r", "action": "progress", "sessionKey": DEV, "progress": True}, 400, "INVALID_PROGRESS"),
    ({"runId": "r", "action": "document", "sessionKey": DEV}, 400, "INVALID_DOCUMENT"),
    ({"runId": "r", "action": "document", "sessionKey": DEV, "document": {"title": "t"}}, 400, "INVALID_DOCUMENT"),
    ({"runId": "r", "action": "start", "sessionKey": DEV, "timestamp": "yesterday"}, 400, "INVALID_TIMESTAMP"),
    ({"runId": "r", "action": "start", "sessionKey": DEV, "prompt": 12}, 400, "INVALID_FIELD"),
    ([{"runId": "r", "action": "start"}], 400, "INVALID_BODY"),
])
async def test_bad_events_are_clear_400s_and_write_nothing(claw, body, status, code):
    await claw.seed()
    before = claw.dep.latest_ts()
    got_status, got = await claw.event(body)
    assert (got_status, got["ok"], got["code"]) == (status, False, code)
    assert got["message"]
    assert claw.dep.latest_ts() == before


@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe", b'{"runId": NaN}'])
async def test_malformed_json_is_400(claw, raw):
    status, body = await claw.event(None, raw=raw)
    assert (status, body["code"]) == (400, "INVALID_JSON")


async def test_the_size_limit_is_413(claw, claw_env):
    await claw.seed()
    claw_env.setenv("OPENCLAW_EVENT_MAX_BYTES", "2048")
    status, body = await claw.event(spec("big", "progress", chunk={"type": "output", "content": "x" * 3000}))
    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert (await claw.ok(spec("big", "start", prompt="small")))["duplicate"] is False


async def test_the_webhook_secret(claw, claw_env):
    await claw.seed()
    claw_env.setenv("OPENCLAW_WEBHOOK_SECRET", "s3cret-value")
    before = claw.dep.latest_ts()
    for token in (None, "", "wrong", "s3cret-valu", "s3cret-value2"):
        status, body = await claw.event(spec("a1", "start", prompt="x"), token=token)
        assert (status, body["code"]) == (401, "UNAUTHORIZED"), token
    status, body = await claw.event(spec("a1", "start", prompt="x"),
                                    headers={"Authorization": "Basic s3cret-value"})
    assert status == 401
    assert claw.dep.latest_ts() == before
    assert (await claw.ok(spec("a1", "start", prompt="x"), token="s3cret-value"))["duplicate"] is False


async def test_a_huge_chunk_is_kept_whole_but_the_stream_stays_small(claw):
    await claw.seed()
    await claw.ok(spec("big1", "start", prompt="Dump a log"))
    content = "0123456789" * 40_000  # 400 kB, under the 512 KiB event limit
    await claw.ok(spec("big1", "progress", chunk={"type": "tool_result", "content": content}))
    stream = await claw.stream("big1")
    assert len(stream["chunks"][0]["content"]) < 2100 and "openclaw:listChunks" in stream["chunks"][0]["content"]
    assert (await claw.chunks("big1"))[0]["content"] == content


@pytest.mark.slow  # ~25 s: ten thousand single-event requests, each its own transaction
async def test_ten_thousand_progress_chunks_lose_nothing_and_stay_readable(claw):
    squad = await claw.seed()
    await claw.ok(hook("long", "start", T0, prompt="A very long run"))
    n = 10_000
    for i in range(n):
        # Alternate the two shapes; each event is distinct, so none is a duplicate.
        if i % 2:
            body = spec("long", "progress", chunk={"type": "output", "content": f"line {i}"}, progress=i * 100 // n)
        else:
            body = hook("long", "progress", T0 + timedelta(milliseconds=i + 1), message=f"line {i}")
        status, answer = await claw.event(body)
        assert status == 200 and answer["duplicate"] is False, answer
    await claw.ok(hook("long", "end", T0 + timedelta(minutes=30), response="done"))
    chunks = await claw.chunks("long")
    assert [c["content"] for c in chunks] == [f"line {i}" for i in range(n)] + ["done"]
    assert [c["seq"] for c in chunks] == [float(i) for i in range(1, n + 2)]
    stream = await claw.stream("long")
    assert stream["chunkCount"] == n + 1 and len(stream["chunks"]) == 20
    assert [c["content"] for c in stream["chunks"]][-2:] == [f"line {n - 1}", "done"]
    assert value_size(stream) < 64 * 1024  # far below the 1 MiB document limit
    assert (await claw.agent(squad["Friday"]))["status"] == "idle"
    listed = await claw.admin("query", "agentStream:listByAgent", {"agentId": squad["Friday"]})
    assert listed["recent"][0]["runId"] == "long"
    assert len(json.dumps(listed)) < 128 * 1024
