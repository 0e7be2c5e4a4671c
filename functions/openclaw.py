"""OpenClaw lifecycle events -> the kanban, the agent streams, the squad and the feed.

`openclaw:ingest` (internal) applies ONE event, already normalised by the HTTP hook
(functions/_http/openclaw.py), in one transaction: an event is applied completely or not at all.
The spec's switch:
  start     the run's task (linked by `tasks.openclawRunId`, else created from the prompt) goes to
            in_progress, the stream is initialised, the agent becomes active, `agent_started`;
  progress  the chunk is appended, `progress` (0-100) copied to the stream and the task;
  end       the task goes to review (`OPENCLAW_END_STATUS=done`: done), the agent idle, the
            duration is computed, `agent_completed`;
  error     the task is blocked (reason: the error), the agent blocked, the error is in the feed
            (`agent_completed` with status "error") and in the stream as an "error" chunk;
  document  a document (upserted by path within the run) linked to the run's task.

Robustness (events are fire-and-forget: late, twice, out of order):
- every applied event leaves an `openclawEvents` row keyed by its idempotency key; an event whose
  key was seen changes nothing (`duplicate: true`);
- the stream is created by whichever event of a run comes first; a progress before any event that
  names the agent is kept in `agentStreamChunks` and joins the stream when it is created;
- state only moves forward: the first terminal event (end or error) decides; a late start fills in
  the task and startedAt but never re-opens a finished run; a task a human moved to done or
  archived is never moved by events;
- the chunks of a run are rows of `agentStreamChunks` (runId, seq); the stream document keeps the
  RECENT_CHUNKS latest (content cut at RECENT_CHUNK_CHARS) in the spec's `chunks` plus `chunkCount`,
  so a run of any length stays under the 1 MiB document limit;
- an unknown sessionKey gets an agent created for it (name from the key, level specialist);
- runs that Nova Command itself started (heartbeat wakes, notification deliveries) never create
  task cards: a notification run about a task assigned to the agent is linked to that task.
Everything happens in the agent tenant (`$NOVA_AGENT_TENANT`, default "default").
"""

from __future__ import annotations

from typing import Any

from engine import UNDEFINED, env, internal_mutation, pagination_opts_validator, query, v

from ._clock import now_ms
from ._docs import doc, paginated
from ._errors import app_error
from ._feed import log_activity, subscribe_to_task
from ._gateway import agent_id_of
from ._tenancy import Actor, current_caller
from .agents import by_session_key
from .agentStream import chunk_type, run_by_id
from .documents import document_type
from .tasks import set_status

ACTIONS = ("start", "progress", "end", "error", "document")
RECENT_CHUNKS = 20
RECENT_CHUNK_CHARS = 2000
MAX_TITLE_CHARS = 120
MAX_DESCRIPTION_CHARS = 20_000
MAX_REASON_CHARS = 500
RECENT_RUNS = 20
STALE_RUN_MS = 6 * 3_600_000.0
END_STATUS_ENV = "OPENCLAW_END_STATUS"
HEARTBEAT_PROMPT_ENV = "OPENCLAW_HEARTBEAT_PROMPT"
DEFAULT_HEARTBEAT_PROMPT = "HEARTBEAT"
# Every message Nova Command sends an agent starts with this (functions/delivery.py).
NOTIFICATION_PREFIX = "[Nova Command]"
TERMINAL = ("completed", "error")
UNTOUCHABLE_TASK = ("done", "archived")

event_validator = v.object({
    "tenantId": v.string(),
    "key": v.string(),
    "runId": v.string(),
    "action": v.union(*[v.literal(a) for a in ACTIONS]),
    "timestamp": v.optional(v.number()),
    "sessionKey": v.optional(v.string()),
    "prompt": v.optional(v.string()),
    "source": v.optional(v.string()),
    "eventType": v.optional(v.string()),
    "chunk": v.optional(v.object({"type": chunk_type, "content": v.string()})),
    "progress": v.optional(v.number()),
    "error": v.optional(v.string()),
    "response": v.optional(v.string()),
    "document": v.optional(v.object({
        "title": v.string(),
        "content": v.string(),
        "type": document_type,
        "path": v.optional(v.string()),
    })),
})

ingest_result = v.object({
    "duplicate": v.boolean(),
    "runId": v.string(),
    "action": v.string(),
    "pending": v.optional(v.boolean()),
    "streamId": v.optional(v.id("agentStream")),
    "agentId": v.optional(v.id("agents")),
    "agentCreated": v.optional(v.boolean()),
    "taskId": v.optional(v.id("tasks")),
    "documentId": v.optional(v.id("documents")),
})


def heartbeat_prompt() -> str:
    return env.get(HEARTBEAT_PROMPT_ENV) or DEFAULT_HEARTBEAT_PROMPT


def end_status() -> str:
    return "done" if (env.get(END_STATUS_ENV) or "").strip().lower() == "done" else "review"


def is_heartbeat_prompt(prompt: str | None) -> bool:
    return prompt is not None and prompt.strip().startswith(heartbeat_prompt())


def short_chunk(row: dict[str, Any]) -> dict[str, Any]:
    content = row["content"]
    if len(content) > RECENT_CHUNK_CHARS:
        content = content[:RECENT_CHUNK_CHARS] + f"… [{len(row['content'])} characters: openclaw:listChunks has all]"
    return {"type": row["type"], "content": content, "timestamp": row["timestamp"]}


# -- reads shared with functions/wakes.py and the tests ---------------------------------------------


async def stream_of(ctx, tenant_id: str, run_id: str) -> dict[str, Any] | None:
    async for stream in ctx.db.query("agentStream").with_index("by_run", lambda q: q.eq("runId", run_id)):
        if stream["tenantId"] == tenant_id:
            return stream
    return None


async def task_of_run(ctx, tenant_id: str, run_id: str) -> dict[str, Any] | None:
    async for task in ctx.db.query("tasks").with_index("by_openclaw", lambda q: q.eq("openclawRunId", run_id)):
        if task["tenantId"] == tenant_id:
            return task
    return None


def _chunks_of(ctx, tenant_id: str, run_id: str):
    return ctx.db.query("agentStreamChunks").with_index(
        "by_run", lambda q: q.eq("tenantId", tenant_id).eq("runId", run_id))


async def last_seq(ctx, tenant_id: str, run_id: str) -> int:
    last = await _chunks_of(ctx, tenant_id, run_id).order("desc").first()
    return int(last["seq"]) if last is not None else 0


async def events_of(ctx, tenant_id: str, run_id: str, action: str) -> list[dict[str, Any]]:
    return await (ctx.db.query("openclawEvents")
                  .with_index("by_run_action", lambda q: q.eq("tenantId", tenant_id).eq("runId", run_id)
                              .eq("action", action))
                  .collect())


# -- one run, while an event is applied ----------------------------------------------------------


class Run:
    """The stream, agent and task of one run inside the ingest transaction (kept in step with
    what was written, so later steps see earlier ones)."""

    def __init__(self, ctx, event: dict[str, Any], ts: float) -> None:
        self.ctx = ctx
        self.event = event
        self.tenant_id: str = event["tenantId"]
        self.run_id: str = event["runId"]
        self.ts = ts
        self.stream: dict[str, Any] | None = None
        self.agent: dict[str, Any] | None = None
        self.agent_created = False
        self.task: dict[str, Any] | None = None

    @property
    def actor(self) -> Actor:
        assert self.agent is not None
        return Actor(self.agent["_id"], "agent", self.agent["name"], self.agent)

    @property
    def ended(self) -> bool:
        return self.stream is not None and self.stream["status"] in TERMINAL

    async def patch_stream(self, fields: dict[str, Any]) -> None:
        assert self.stream is not None
        await self.ctx.db.patch(self.stream["_id"], fields)
        self.stream = {**self.stream, **fields}

    async def patch_agent(self, fields: dict[str, Any]) -> None:
        assert self.agent is not None
        await self.ctx.db.patch(self.agent["_id"], fields)
        self.agent = {k: val for k, val in {**self.agent, **fields}.items() if val is not UNDEFINED}

    async def resolve_agent(self) -> None:
        """The stream's agent, else the agent of the event's sessionKey (created when unknown)."""
        if self.stream is not None:
            self.agent = await self.ctx.db.get(self.stream["agentId"])
        session_key = self.event.get("sessionKey")
        if self.agent is not None or session_key is None:
            return
        self.agent = await by_session_key(self.ctx, session_key, self.tenant_id)
        if self.agent is None:
            name = agent_id_of(session_key) or session_key
            agent_id = await self.ctx.db.insert("agents", {
                "name": name[:1].upper() + name[1:],
                "role": "OpenClaw agent",
                "avatar": "🤖",
                "status": "idle",
                "level": "specialist",
                "sessionKey": session_key,
                "lastActiveAt": now_ms(),
                "tenantId": self.tenant_id,
            })
            self.agent = await self.ctx.db.get(agent_id)
            self.agent_created = True

    async def create_stream(self) -> None:
        """The run's stream, taking in the chunks that arrived before it (kept, in order)."""
        assert self.agent is not None
        count = await last_seq(self.ctx, self.tenant_id, self.run_id)
        earlier = await _chunks_of(self.ctx, self.tenant_id, self.run_id).order("desc").take(RECENT_CHUNKS)
        started = min([self.ts, *(c["timestamp"] for c in earlier)])
        stream = {
            "agentId": self.agent["_id"],
            "runId": self.run_id,
            "chunks": [short_chunk(c) for c in reversed(earlier)],
            "status": "running",
            "progress": 0.0,
            "startedAt": started,
            "chunkCount": float(count),
            "tenantId": self.tenant_id,
        }
        stream_id = await self.ctx.db.insert("agentStream", stream)
        self.stream = {**stream, "_id": stream_id}

    async def append(self, chunk_type_: str, content: str) -> None:
        """A chunk: a row of agentStreamChunks, and (with a stream) the recent window."""
        if self.stream is not None and "chunkCount" in self.stream:
            seq = int(self.stream["chunkCount"]) + 1  # the stream counts its rows: one read less
        else:
            seq = await last_seq(self.ctx, self.tenant_id, self.run_id) + 1
        row = {"runId": self.run_id, "seq": float(seq), "type": chunk_type_, "content": content,
               "timestamp": self.ts, "tenantId": self.tenant_id}
        await self.ctx.db.insert("agentStreamChunks", row)
        if self.stream is not None:
            recent = [*self.stream["chunks"], short_chunk(row)][-RECENT_CHUNKS:]
            await self.patch_stream({"chunks": recent, "chunkCount": float(seq)})

    async def move_task(self, status: str, reason: str | None = None) -> None:
        """Move the run's task (never out of done/archived), with the feed entry tasks:move writes."""
        task = self.task
        if task is None or task["status"] in UNTOUCHABLE_TASK:
            return
        fields: dict[str, Any] = {}
        if status == "blocked" and reason:
            fields["blockedReason"] = reason[:MAX_REASON_CHARS]
        if status in (end_status(), "done"):
            fields["progress"] = 100.0
        if task["status"] == status and not fields:
            return
        await set_status(self.ctx, task, status, fields)
        self.task = await self.ctx.db.get(task["_id"])
        if task["status"] == status:
            return
        if status == "done":
            await log_activity(self.ctx, self.tenant_id, "task_completed", f'{self.actor.name} completed "{task["title"]}"',
                               actor=self.actor, target_id=task["_id"], metadata={"runId": self.run_id})
        else:
            await log_activity(self.ctx, self.tenant_id, "task_moved",
                               f'{self.actor.name} moved "{task["title"]}" to {status}', actor=self.actor,
                               target_id=task["_id"], metadata={"from": task["status"], "to": status,
                                                                "runId": self.run_id})

    def column(self) -> str | None:
        """Where the run's state puts its task."""
        status = self.stream["status"] if self.stream is not None else "running"
        return {"running": "in_progress", "completed": end_status(), "error": "blocked"}.get(status)


# -- the system runs: heartbeats and notification deliveries -------------------------------------


async def wake_of_run(ctx, tenant_id: str, run_id: str) -> dict[str, Any] | None:
    for index in ("by_run", "by_gateway_run"):
        field = "runId" if index == "by_run" else "gatewayRunId"
        wake = await (ctx.db.query("agentWakes")
                      .with_index(index, lambda q, f=field: q.eq("tenantId", tenant_id).eq(f, run_id)).first())
        if wake is not None:
            return wake
    return None


async def classify(run: Run) -> tuple[str, dict[str, Any] | None]:
    """("heartbeat" | "notification" | "work", the task a notification run is about)."""
    ctx, prompt = run.ctx, run.event.get("prompt")
    assert run.agent is not None
    wake = await wake_of_run(ctx, run.tenant_id, run.run_id)
    if wake is None and is_heartbeat_prompt(prompt):
        # The gateway's runId may differ from the events' runId: the agent's open wake is this run.
        latest = await (ctx.db.query("agentWakes").with_index("by_agent", lambda q: q.eq("agentId", run.agent["_id"]))  # type: ignore[index]  # set above
                        .order("desc").first())
        if latest is not None and latest["status"] in ("sending", "running") and "runId" not in latest:
            wake = latest
    if wake is not None:
        if wake.get("runId") != run.run_id:
            await ctx.db.patch(wake["_id"], {"runId": run.run_id})
        return "heartbeat", None
    if is_heartbeat_prompt(prompt):
        return "heartbeat", None
    notification = await (ctx.db.query("notifications")
                          .with_index("by_openclaw_run", lambda q: q.eq("tenantId", run.tenant_id)
                                      .eq("openclawRunId", run.run_id)).first())
    if notification is not None:
        task_id = ctx.db.normalize_id("tasks", notification.get("sourceId") or "")
        task = await ctx.db.get(task_id) if task_id is not None else None
        if task is not None and task["tenantId"] == run.tenant_id and run.agent["_id"] in task["assigneeIds"]:
            return "notification", task
        return "notification", None
    if prompt is not None and prompt.lstrip().startswith(NOTIFICATION_PREFIX):
        return "notification", None
    return "work", None


async def end_wake(run: Run) -> None:
    wake = await wake_of_run(run.ctx, run.tenant_id, run.run_id)
    if wake is not None and wake["status"] in ("sending", "running", "failed"):
        await run.ctx.db.patch(wake["_id"], {"status": "ended", "endedAt": run.ts})


# -- the actions -----------------------------------------------------------------------------------


def last_error(run: Run) -> str | None:
    """The error a failed run reported (its latest "error" chunk)."""
    for chunk in reversed(run.stream["chunks"] if run.stream is not None else []):
        if chunk["type"] == "error":
            return chunk["content"]
    return None


def _title(prompt: str | None, run: Run) -> str:
    for line in (prompt or "").splitlines():
        line = line.strip()
        if line:
            return line if len(line) <= MAX_TITLE_CHARS else line[:MAX_TITLE_CHARS - 1] + "…"
    return f"{run.actor.name}: run {run.run_id}"[:MAX_TITLE_CHARS]


async def create_task(run: Run) -> dict[str, Any]:
    """A card for a run nobody linked: assigned to the agent (no assignment notification: the agent
    started it itself), the agent subscribed, `task_created` in the feed."""
    ctx, prompt, source = run.ctx, run.event.get("prompt"), run.event.get("source")
    assert run.agent is not None
    status = run.column() or "in_progress"
    now = now_ms()
    description = (prompt or "")[:MAX_DESCRIPTION_CHARS]
    if source:
        description = (description + f"\n\nSource: {source}").strip()
    task = {
        "title": _title(prompt, run),
        "description": description,
        "status": status,
        "assigneeIds": [run.agent["_id"]],
        "tags": ["openclaw", *([source.strip().lower()[:40]] if source and source.strip() else [])],
        "priority": "medium",
        "progress": 100.0 if status in ("review", "done") else float(run.stream["progress"] if run.stream else 0.0),
        "openclawRunId": run.run_id,
        "updatedAt": now,
        "tenantId": run.tenant_id,
    }
    if status == "done":
        task["completedAt"] = now
    if status == "blocked":
        task["blockedReason"] = (last_error(run) or "The run failed")[:MAX_REASON_CHARS]
    task_id = await ctx.db.insert("tasks", task)
    await ctx.db.insert("taskAssignees", {"taskId": task_id, "agentId": run.agent["_id"], "status": status,
                                          "tenantId": run.tenant_id})
    await subscribe_to_task(ctx, task_id, run.agent["_id"], "agent", run.tenant_id)
    await log_activity(ctx, run.tenant_id, "task_created", f'{run.actor.name} created "{task["title"]}"',
                       actor=run.actor, target_id=task_id, metadata={"runId": run.run_id})
    return await ctx.db.get(task_id)


async def link_documents(run: Run) -> None:
    """Documents the run wrote before its task existed join the task."""
    assert run.task is not None
    for event in await events_of(run.ctx, run.tenant_id, run.run_id, "document"):
        document = await run.ctx.db.get(event["documentId"]) if "documentId" in event else None
        if document is not None and "taskId" not in document:
            await run.ctx.db.patch(document["_id"], {"taskId": run.task["_id"]})


async def on_start(run: Run) -> None:
    ctx = run.ctx
    assert run.stream is not None and run.agent is not None
    first_start = not await events_of(ctx, run.tenant_id, run.run_id, "start")
    fields: dict[str, Any] = {}
    started = min(run.stream["startedAt"], run.ts)
    if started != run.stream["startedAt"]:
        fields["startedAt"] = started
    if run.stream["status"] == "paused":
        fields["status"] = "running"
    if run.ended and "completedAt" in run.stream:
        fields["durationMs"] = max(0.0, run.stream["completedAt"] - started)
    if fields:
        await run.patch_stream(fields)

    kind, notified_task = await classify(run)
    if run.task is None and notified_task is not None:
        await ctx.db.patch(notified_task["_id"], {"openclawRunId": run.run_id, "updatedAt": now_ms()})
        run.task = await ctx.db.get(notified_task["_id"])
    if run.task is None and kind == "work":
        run.task = await create_task(run)
    elif run.task is not None and run.agent["_id"] not in run.task["assigneeIds"]:
        # A card linked to the run by hand, without the agent on it: the run's agent works on it.
        await ctx.db.patch(run.task["_id"], {"assigneeIds": [*run.task["assigneeIds"], run.agent["_id"]]})
        await ctx.db.insert("taskAssignees", {"taskId": run.task["_id"], "agentId": run.agent["_id"],
                                              "status": run.task["status"], "tenantId": run.tenant_id})
        await subscribe_to_task(ctx, run.task["_id"], run.agent["_id"], "agent", run.tenant_id)
        run.task = await ctx.db.get(run.task["_id"])
    if run.task is not None:
        column = run.column()
        if column is not None:
            await run.move_task(column, last_error(run) if column == "blocked" else None)
        await link_documents(run)

    if not run.ended:
        agent_fields: dict[str, Any] = {"status": "active", "lastActiveAt": now_ms()}
        if run.task is not None:
            agent_fields["currentTaskId"] = run.task["_id"]
        await run.patch_agent(agent_fields)
    else:
        await run.patch_agent({"lastActiveAt": now_ms()})
    if first_start:
        what = f'"{run.task["title"]}"' if run.task is not None else ("a heartbeat" if kind == "heartbeat" else "a run")
        metadata: dict[str, Any] = {"runId": run.run_id, "kind": kind}
        for key in ("prompt", "source"):
            if key in run.event:
                metadata[key] = run.event[key][:MAX_DESCRIPTION_CHARS]
        await log_activity(ctx, run.tenant_id, "agent_started", f"{run.actor.name} started {what}",
                           actor=run.actor, target_id=run.stream["_id"], target_type="agentStream",
                           metadata=metadata)


async def on_progress(run: Run) -> None:
    """The hot path of a long run: a chunk costs two index reads and three writes. The task is
    only read when a percentage comes; the agent never is (its status and lastActiveAt are kept
    by the run's other events)."""
    assert run.stream is not None
    chunk = run.event.get("chunk")
    if chunk is not None:
        await run.append(chunk["type"], chunk["content"])
    if "progress" in run.event and not run.ended:
        progress = float(run.event["progress"])
        await run.patch_stream({"progress": progress})
        task = await task_of_run(run.ctx, run.tenant_id, run.run_id)
        if task is not None and task["status"] not in UNTOUCHABLE_TASK:
            await run.ctx.db.patch(task["_id"], {"progress": progress, "updatedAt": now_ms()})


async def other_running_run(run: Run) -> bool:
    """Whether another of the agent's recent runs (the newest RECENT_RUNS) is still running."""
    assert run.agent is not None
    recent = await (run.ctx.db.query("agentStream").with_index("by_agent", lambda q: q.eq("agentId", run.agent["_id"]))  # type: ignore[index]  # set above
                    .order("desc").take(RECENT_RUNS))
    # A run silent for STALE_RUN_MS lost its end event: it no longer keeps the agent busy.
    return any(s["status"] == "running" and s["runId"] != run.run_id and run.ts - s["startedAt"] < STALE_RUN_MS
               for s in recent)


async def finish(run: Run, status: str, error: str | None = None) -> None:
    """The run's first terminal event: stream, task, agent, wake and feed."""
    assert run.stream is not None and run.agent is not None
    started = run.stream["startedAt"]
    completed = max(run.ts, started)
    duration = completed - started
    fields: dict[str, Any] = {"status": status, "completedAt": completed, "durationMs": duration}
    if status == "completed":
        fields["progress"] = 100.0
    await run.patch_stream(fields)
    if status == "completed":
        await run.move_task(end_status())
    else:
        await run.move_task("blocked", error)
    agent_fields: dict[str, Any] = {"lastActiveAt": now_ms()}
    if status == "error":
        agent_fields["status"] = "blocked"
    elif not await other_running_run(run):
        # Idle only when no other run of the agent is still going (a heartbeat that ends while
        # the agent works on a task leaves it active).
        agent_fields["status"] = "idle"
        if run.task is not None and run.agent.get("currentTaskId") == run.task["_id"]:
            agent_fields["currentTaskId"] = UNDEFINED
    await run.patch_agent(agent_fields)
    await end_wake(run)
    subject = f'"{run.task["title"]}"' if run.task is not None else "a run"
    metadata: dict[str, Any] = {"runId": run.run_id, "status": status, "durationMs": duration}
    if run.task is not None:
        metadata["taskId"] = run.task["_id"]
    if status == "completed":
        message = f"{run.actor.name} finished {subject}"
        if "response" in run.event:
            metadata["response"] = run.event["response"][:MAX_DESCRIPTION_CHARS]
    else:
        message = f"{run.actor.name} hit an error on {subject}: {(error or '')[:200]}"
        metadata["error"] = (error or "")[:MAX_DESCRIPTION_CHARS]
    await log_activity(run.ctx, run.tenant_id, "agent_completed", message, actor=run.actor,
                       target_id=run.stream["_id"], target_type="agentStream", metadata=metadata)


async def on_end(run: Run) -> None:
    response = run.event.get("response")
    if response:
        await run.append("output", response)
    if not run.ended:
        await finish(run, "completed")
    else:
        await run.patch_agent({"lastActiveAt": now_ms()})


async def on_error(run: Run) -> None:
    error = run.event.get("error") or "Unknown error"
    await run.append("error", error)
    if not run.ended:
        await finish(run, "error", error)
    else:
        await run.patch_agent({"lastActiveAt": now_ms()})


async def on_document(run: Run) -> str:
    ctx, document = run.ctx, run.event["document"]
    assert run.agent is not None
    existing = None
    if "path" in document:
        for event in await events_of(ctx, run.tenant_id, run.run_id, "document"):
            candidate = await ctx.db.get(event["documentId"]) if "documentId" in event else None
            if candidate is not None and candidate.get("path") == document["path"]:
                existing = candidate
    fields: dict[str, Any] = {"title": document["title"], "content": document["content"], "type": document["type"]}
    if run.task is not None:
        fields["taskId"] = run.task["_id"]
    if existing is not None:
        await ctx.db.patch(existing["_id"], fields)
        document_id = existing["_id"]
    else:
        document_id = await ctx.db.insert("documents", {
            **fields, "agentId": run.agent["_id"], "tenantId": run.tenant_id,
            **({"path": document["path"]} if "path" in document else {}),
        })
        metadata: dict[str, Any] = {"runId": run.run_id}
        if run.task is not None:
            metadata["taskId"] = run.task["_id"]
        await log_activity(ctx, run.tenant_id, "document_created", f'{run.actor.name} created "{document["title"]}"',
                           actor=run.actor, target_id=document_id, target_type="document", metadata=metadata)
    await run.patch_agent({"lastActiveAt": now_ms()})
    return document_id


@internal_mutation(args={"event": event_validator}, returns=ingest_result)
async def ingest(ctx, args):
    """Apply one OpenClaw event (see the module docstring); a seen key changes nothing."""
    event = args["event"]
    tenant_id, run_id, action = event["tenantId"], event["runId"], event["action"]
    result: dict[str, Any] = {"duplicate": False, "runId": run_id, "action": action}
    seen = await (ctx.db.query("openclawEvents")
                  .with_index("by_key", lambda q: q.eq("tenantId", tenant_id).eq("key", event["key"])).first())
    if seen is not None:
        return {**result, "duplicate": True}
    if "progress" in event and not 0 <= event["progress"] <= 100:
        raise app_error("INVALID_PROGRESS", f"progress is a percentage from 0 to 100, got {event['progress']!r}.")

    run = Run(ctx, event, float(event.get("timestamp", now_ms())))
    run.stream = await stream_of(ctx, tenant_id, run_id)
    if action == "progress" and run.stream is not None:
        # A run's progress never needs more than its stream (see on_progress).
        await on_progress(run)
        await ctx.db.insert("openclawEvents", {"key": event["key"], "runId": run_id, "action": action,
                                               "timestamp": run.ts, "tenantId": tenant_id})
        return {**result, "streamId": run.stream["_id"], "agentId": run.stream["agentId"]}
    await run.resolve_agent()
    record: dict[str, Any] = {"key": event["key"], "runId": run_id, "action": action, "timestamp": run.ts,
                              "tenantId": tenant_id}
    if run.agent is None:
        if action != "progress":
            raise app_error("UNKNOWN_RUN", f"Run {run_id!r} is not known yet and the event names no agent: "
                                           "send its sessionKey.", runId=run_id)
        # Kept: the chunk waits in agentStreamChunks for the first event that names the agent.
        chunk = event.get("chunk")
        if chunk is not None:
            await run.append(chunk["type"], chunk["content"])
        await ctx.db.insert("openclawEvents", record)
        return {**result, "pending": True}
    if run.stream is None:
        await run.create_stream()
    run.task = await task_of_run(ctx, tenant_id, run_id)

    if action == "start":
        await on_start(run)
    elif action == "progress":
        await on_progress(run)
    elif action == "end":
        await on_end(run)
    elif action == "error":
        await on_error(run)
    else:
        document_id = await on_document(run)
        record["documentId"] = document_id
        result["documentId"] = document_id
    await ctx.db.insert("openclawEvents", record)

    assert run.stream is not None and run.agent is not None
    result.update({"streamId": run.stream["_id"], "agentId": run.agent["_id"]})
    if run.agent_created:
        result["agentCreated"] = True
    if run.task is not None:
        result["taskId"] = run.task["_id"]
    return result


# -- reading a run's full stream -------------------------------------------------------------------


@query(args={"runId": v.string(), "paginationOpts": pagination_opts_validator},
       returns=paginated(doc("agentStreamChunks")))
async def listChunks(ctx, args):
    """Every chunk of a run, oldest first, paginated (`agentStream.chunks` holds only the latest)."""
    caller = await current_caller(ctx)
    run = await stream_of(ctx, caller.tenant_id, args["runId"])
    if run is None:
        # A run whose chunks arrived before any event named its agent has rows but no stream yet.
        if await _chunks_of(ctx, caller.tenant_id, args["runId"]).first() is None:
            await run_by_id(ctx, args["runId"], caller.tenant_id)  # raises NOT_FOUND
    return await _chunks_of(ctx, caller.tenant_id, args["runId"]).paginate(args["paginationOpts"])
