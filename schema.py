"""Nova Command's schema (the spec's `convex/schema.ts`), table by table as the spec writes it.

Deviations from the spec, each needed for correctness (listed in the README):
- every table carries `tenantId` (the spec's `threadSubscriptions` lacked a `by_tenant` index);
- indexes never list `_creationTime`: it is implied as the last field of every index (Convex rejects it);
- `tasks.status` gains "blocked" (the event hook and the standup use it); tasks gain `updatedAt`,
  `completedAt` (standups need "completed today") and `blockedReason`;
- `taskAssignees` (new): one row per (task, agent) mirroring the task's status, so "tasks assigned to
  agent X in status S" is one index range (`by_assignee` indexes the whole array and cannot answer it);
- `documents.type` accepts the types agents capture (markdown, code, image, note, text, media, document);
- lookups that must stay inside a tenant get `tenantId` appended to their index (`by_session`,
  `by_recipient`), which keeps the spec's prefix queries working;
- search (issue 12): full-text indexes on messages, tasks, documents, taskComments and agentMemory,
  each filtered by `tenantId` first; agentMemory gains `embedding` / `embeddingModel` and a vector
  index for recall by meaning (functions/search.py, functions/memory.py).
"""

from engine import define_schema, define_table, v

author_type = v.union(v.literal("user"), v.literal("agent"))

task_status = v.union(
    v.literal("inbox"),
    v.literal("assigned"),
    v.literal("in_progress"),
    v.literal("review"),
    v.literal("done"),
    v.literal("blocked"),
    v.literal("archived"),
)

schema = define_schema({
    # agents - AI team members
    "agents": define_table({
        "name": v.string(),                    # "Friday"
        "role": v.string(),                    # "Developer Agent"
        "avatar": v.string(),                  # "⚙️"
        "status": v.union(
            v.literal("active"),
            v.literal("idle"),
            v.literal("blocked"),
        ),
        "level": v.union(
            v.literal("lead"),
            v.literal("specialist"),
            v.literal("intern"),
        ),
        "sessionKey": v.string(),              # "agent:developer:main"
        "currentTaskId": v.optional(v.id("tasks")),
        "personality": v.optional(v.string()), # SOUL content
        "lastActiveAt": v.optional(v.number()),
        "tenantId": v.string(),
    })
    .index("by_tenant", ["tenantId"])
    .index("by_session", ["sessionKey", "tenantId"]),

    # channels - text and voice channels
    "channels": define_table({
        "name": v.string(),                    # "dev-tasks"
        "type": v.union(
            v.literal("text"),
            v.literal("voice"),
        ),
        "description": v.optional(v.string()),
        "tenantId": v.string(),
    })
    .index("by_tenant", ["tenantId"]),

    # messages - chat messages in channels
    "messages": define_table({
        "channelId": v.id("channels"),
        "authorId": v.string(),                # agent or user ID
        "authorType": author_type,
        "content": v.string(),                 # markdown
        "threadId": v.optional(v.id("messages")),
        "attachments": v.optional(v.array(v.id("documents"))),
        "tenantId": v.string(),
    })
    .index("by_channel", ["channelId"])
    .index("by_thread", ["threadId"])
    .index("by_tenant", ["tenantId"])
    .search_index("search_content", search_field="content", filter_fields=["tenantId", "channelId"]),

    # tasks - kanban tasks
    "tasks": define_table({
        "title": v.string(),
        "description": v.string(),
        "status": task_status,
        "assigneeIds": v.array(v.id("agents")),
        "tags": v.array(v.string()),
        "priority": v.union(
            v.literal("low"),
            v.literal("medium"),
            v.literal("high"),
            v.literal("urgent"),
        ),
        "progress": v.number(),                # 0-100
        "borderColor": v.optional(v.string()),
        "openclawRunId": v.optional(v.string()),
        "channelId": v.optional(v.id("channels")),  # linked channel
        "updatedAt": v.number(),               # ms since the epoch, every change
        "completedAt": v.optional(v.number()), # set when moved to "done", cleared when it leaves
        "blockedReason": v.optional(v.string()),
        "tenantId": v.string(),
    })
    .index("by_tenant", ["tenantId"])
    .index("by_status", ["status", "tenantId"])
    .index("by_assignee", ["assigneeIds", "tenantId"])  # kept from the spec: exact-set lookups only
    .index("by_openclaw", ["openclawRunId"])
    .index("by_completed", ["tenantId", "completedAt"])
    .search_index("search_title", search_field="title", filter_fields=["tenantId", "status"])
    .search_index("search_description", search_field="description", filter_fields=["tenantId", "status"]),

    # taskAssignees - one row per (task, agent): "tasks assigned to X in status S" as one index range
    "taskAssignees": define_table({
        "taskId": v.id("tasks"),
        "agentId": v.id("agents"),
        "status": task_status,                 # mirrors tasks.status
        "tenantId": v.string(),
    })
    .index("by_agent", ["tenantId", "agentId", "status"])
    .index("by_task", ["taskId"]),

    # taskComments - comments on tasks
    "taskComments": define_table({
        "taskId": v.id("tasks"),
        "authorId": v.string(),
        "authorType": author_type,
        "content": v.string(),
        "attachments": v.optional(v.array(v.id("documents"))),
        "tenantId": v.string(),
    })
    .index("by_task", ["taskId"])
    .index("by_tenant", ["tenantId"])
    .search_index("search_content", search_field="content", filter_fields=["tenantId", "taskId"]),

    # activities - activity feed events
    "activities": define_table({
        "type": v.union(
            v.literal("task_created"),
            v.literal("task_moved"),
            v.literal("task_assigned"),
            v.literal("task_completed"),
            v.literal("comment"),
            v.literal("document_created"),
            v.literal("agent_started"),
            v.literal("agent_completed"),
            v.literal("message"),
        ),
        "agentId": v.optional(v.id("agents")),
        "userId": v.optional(v.string()),
        "message": v.string(),
        "targetId": v.optional(v.string()),    # task/channel/doc ID
        "targetType": v.optional(v.string()),
        "metadata": v.optional(v.any()),
        "tenantId": v.string(),
    })
    .index("by_tenant", ["tenantId"])
    .index("by_type", ["type", "tenantId"]),

    # documents - files and deliverables
    "documents": define_table({
        "title": v.string(),
        "content": v.string(),                 # markdown
        "type": v.union(
            v.literal("deliverable"),
            v.literal("research"),
            v.literal("protocol"),
            v.literal("attachment"),
            v.literal("markdown"),
            v.literal("code"),
            v.literal("image"),
            v.literal("note"),
            v.literal("text"),
            v.literal("media"),
            v.literal("document"),
        ),
        "taskId": v.optional(v.id("tasks")),
        "agentId": v.optional(v.id("agents")),
        "path": v.optional(v.string()),
        # Deviation (issue 11): the bytes of an attachment / image / media document, in file storage.
        "storageId": v.optional(v.id("_storage")),
        "tenantId": v.string(),
    })
    .index("by_tenant", ["tenantId"])
    .index("by_task", ["taskId"])
    .index("by_storage", ["storageId"])
    .search_index("search_title", search_field="title", filter_fields=["tenantId", "type"])
    .search_index("search_content", search_field="content", filter_fields=["tenantId", "type"]),

    # voiceRooms - voice room state
    "voiceRooms": define_table({
        "channelId": v.id("channels"),
        "livekitRoom": v.string(),             # LiveKit room name
        "participants": v.array(v.object({
            "id": v.string(),
            "type": author_type,
            "joinedAt": v.number(),
        })),
        # Deviation: LiveKit participant session sids whose leave was applied (newest last, bounded),
        # so a retried or reordered participant_joined of an ended session is refused after a restart too.
        "endedSessions": v.optional(v.array(v.string())),
        "tenantId": v.string(),
    })
    .index("by_channel", ["channelId"])
    .index("by_tenant", ["tenantId"]),

    # notifications - @mentions and alerts
    "notifications": define_table({
        "recipientId": v.string(),             # agent or user ID
        "recipientType": author_type,
        "content": v.string(),
        "sourceType": v.union(
            v.literal("mention"),
            v.literal("assignment"),
            v.literal("thread"),
            v.literal("standup"),
        ),
        "sourceId": v.optional(v.string()),
        "delivered": v.boolean(),
        "readAt": v.optional(v.number()),
        # Delivery to OpenClaw (issue 6, functions/delivery.py): attempts, back-off, the run it started.
        "deliveryAttempts": v.optional(v.number()),
        "nextAttemptAt": v.optional(v.number()),
        "lastDeliveryError": v.optional(v.string()),
        "deliveredAt": v.optional(v.number()),
        "openclawRunId": v.optional(v.string()),
        "tenantId": v.string(),
    })
    .index("by_recipient", ["recipientId", "delivered", "tenantId"])
    .index("by_tenant", ["tenantId"])
    .index("by_delivery", ["recipientType", "delivered", "nextAttemptAt"])
    .index("by_openclaw_run", ["tenantId", "openclawRunId"]),

    # agentMemory - working memory and notes
    "agentMemory": define_table({
        "agentId": v.id("agents"),
        "type": v.union(
            v.literal("working"),              # WORKING.md
            v.literal("daily"),                # daily notes
            v.literal("longterm"),             # MEMORY.md
        ),
        "date": v.optional(v.string()),        # for daily: "2026-01-31"
        "content": v.string(),                 # markdown
        # Recall by meaning (issue 12, functions/_embedding.py): the content's embedding, made by an
        # action after each write (removed while stale), and the embedder that made it.
        "embedding": v.optional(v.array(v.float64())),
        "embeddingModel": v.optional(v.string()),
        "tenantId": v.string(),
    })
    .index("by_agent", ["agentId", "type"])
    .index("by_agent_date", ["agentId", "type", "date"])
    .index("by_tenant", ["tenantId"])
    .search_index("search_content", search_field="content", filter_fields=["tenantId", "agentId", "type"])
    .vector_index("by_embedding", vector_field="embedding", dimensions=256, filter_fields=["tenantId", "agentId"]),

    # agentStream - real-time agent output (Codex-style)
    "agentStream": define_table({
        "agentId": v.id("agents"),
        "runId": v.string(),                   # OpenClaw run ID
        "chunks": v.array(v.object({
            "type": v.union(
                v.literal("thinking"),
                v.literal("tool_call"),
                v.literal("tool_result"),
                v.literal("output"),
                v.literal("error"),
            ),
            "content": v.string(),
            "timestamp": v.number(),
        })),
        "status": v.union(
            v.literal("running"),
            v.literal("completed"),
            v.literal("error"),
            v.literal("paused"),
        ),
        "progress": v.number(),
        "startedAt": v.number(),
        "completedAt": v.optional(v.number()),
        # OpenClaw event hook (issue 6): `chunks` keeps only the most recent chunks (the 1 MiB
        # document limit); every chunk is in `agentStreamChunks`, `chunkCount` counts them.
        "chunkCount": v.optional(v.number()),
        "durationMs": v.optional(v.number()),
        "tenantId": v.string(),
    })
    .index("by_agent", ["agentId"])
    .index("by_run", ["runId"])
    .index("by_tenant", ["tenantId"]),

    # threadSubscriptions - who's subscribed to task threads
    "threadSubscriptions": define_table({
        "taskId": v.id("tasks"),
        "subscriberId": v.string(),
        "subscriberType": author_type,
        "tenantId": v.string(),
    })
    .index("by_task", ["taskId"])
    .index("by_subscriber", ["subscriberId"])
    .index("by_tenant", ["tenantId"]),

    # standups - daily standup summaries
    "standups": define_table({
        "date": v.string(),                    # "2026-01-31"
        "completed": v.array(v.object({
            "agentId": v.id("agents"),
            "taskTitle": v.string(),
        })),
        "inProgress": v.array(v.object({
            "agentId": v.id("agents"),
            "taskTitle": v.string(),
            "progress": v.number(),
        })),
        "blocked": v.array(v.object({
            "agentId": v.id("agents"),
            "reason": v.string(),
        })),
        "needsReview": v.array(v.object({
            "taskId": v.id("tasks"),
            "taskTitle": v.string(),
        })),
        "decisions": v.array(v.string()),
        "sentToTelegram": v.boolean(),
        "tenantId": v.string(),
    })
    .index("by_date", ["date", "tenantId"])
    .index("by_tenant", ["tenantId"]),

    # -- OpenClaw integration (issue 6: functions/openclaw.py, functions/wakes.py) ------------------

    # agentStreamChunks - every chunk of a run, in arrival order (agentStream keeps the recent ones)
    "agentStreamChunks": define_table({
        "runId": v.string(),
        "seq": v.number(),                     # 1, 2, 3... within the run
        "type": v.union(
            v.literal("thinking"),
            v.literal("tool_call"),
            v.literal("tool_result"),
            v.literal("output"),
            v.literal("error"),
        ),
        "content": v.string(),
        "timestamp": v.number(),               # the sender's time when it gave one
        "tenantId": v.string(),
    })
    .index("by_run", ["tenantId", "runId", "seq"])
    .index("by_tenant", ["tenantId"]),

    # openclawEvents - one row per accepted event: duplicates are recognised by `key`
    "openclawEvents": define_table({
        "key": v.string(),                     # Idempotency-Key header, eventId, or a body hash
        "runId": v.string(),
        "action": v.string(),
        "timestamp": v.number(),
        "documentId": v.optional(v.id("documents")),
        "tenantId": v.string(),
    })
    .index("by_key", ["tenantId", "key"])
    .index("by_run_action", ["tenantId", "runId", "action"])
    .index("by_tenant", ["tenantId"]),

    # agentWakes - heartbeat wakes sent through the gateway, and whether their run is still going
    "agentWakes": define_table({
        "agentId": v.id("agents"),
        "slot": v.number(),                    # the planned minute (ms) this wake is for
        "status": v.union(
            v.literal("sending"),              # claimed; the POST is in flight
            v.literal("running"),              # the gateway admitted it; its run has not ended
            v.literal("failed"),               # the POST failed; retried at nextAttemptAt
            v.literal("ended"),                # its run ended (an end/error event)
            v.literal("expired"),              # never ended within the timeout, or never admitted
        ),
        "attempts": v.number(),
        "nextAttemptAt": v.optional(v.number()),
        "sentAt": v.optional(v.number()),
        "gatewayRunId": v.optional(v.string()),  # runId of the gateway's answer
        "runId": v.optional(v.string()),         # runId of the events that reported the run
        "endedAt": v.optional(v.number()),
        "lastError": v.optional(v.string()),
        "tenantId": v.string(),
    })
    .index("by_agent", ["agentId", "slot"])
    .index("by_gateway_run", ["tenantId", "gatewayRunId"])
    .index("by_run", ["tenantId", "runId"])
    .index("by_tenant", ["tenantId"]),

    # -- Telegram standups (issue 6: functions/telegram.py) -------------------------------------------

    # standupDeliveries - one per standup sent (or being sent) to Telegram: the claim that makes a
    # concurrent second send a no-op, and each part's progress, so a retry never resends a part
    # Telegram already accepted. `standups.sentToTelegram` turns true with status "sent".
    "standupDeliveries": define_table({
        "standupId": v.id("standups"),
        "date": v.string(),
        "chatId": v.string(),
        "status": v.union(
            v.literal("sending"),              # claimed by a sender (until claimedAt + lease)
            v.literal("failed"),               # the last attempt stopped; retried by the next tick
            v.literal("sent"),                 # Telegram accepted every part
        ),
        "claimId": v.optional(v.string()),
        "claimedAt": v.optional(v.number()),
        "parts": v.array(v.object({
            "text": v.string(),                # MarkdownV2, as sent
            "messageId": v.optional(v.number()),  # set once Telegram accepted this part
        })),
        "attempts": v.number(),
        "lastError": v.optional(v.string()),
        "sentAt": v.optional(v.number()),
        "tenantId": v.string(),
    })
    .index("by_standup", ["standupId"])
    .index("by_status", ["status", "attempts"])
    .index("by_tenant", ["tenantId"]),
})
