"""The app's public surface as `function-spec` describes it: every function, its kind and visibility,
declared argument and return validators (so the README's function table cannot drift silently)."""

from app_harness import nova, app_env  # noqa: F401  (fixtures)

PUBLIC = {
    "Query": [
        "activities:list", "agentStream:getRun", "agentStream:listByAgent", "agents:get", "agents:list",
        "channels:get", "channels:list", "documents:file", "documents:get", "documents:list", "documents:listByTask",
        "heartbeat:check", "memory:getDaily", "memory:getLongTerm", "memory:getWorking", "memory:listDaily",
        "messages:list", "messages:thread", "notifications:list", "openclaw:listChunks", "standups:get", "standups:list",
        "tasks:board", "tasks:get", "tasks:list", "tasks:listForAgent", "tasks:subscribers", "voice:getRoom",
        "wakes:schedule",  # issue 6 (OpenClaw)
        "search:all", "search:comments", "search:documents", "search:memory", "search:messages", "search:tasks",
    ],
    "Mutation": [
        "agentStream:appendChunk", "agentStream:finishRun", "agentStream:startRun", "agents:create",
        "agents:reportHeartbeat", "agents:setStatus", "agents:update", "channels:create", "documents:create",
        "documents:generateUploadUrl", "documents:remove", "documents:update", "memory:appendDaily", "memory:setLongTerm", "memory:setWorking", "messages:send",
        "notifications:markDelivered", "notifications:markRead", "tasks:addComment", "tasks:archive",
        "tasks:assign", "tasks:create", "tasks:move", "tasks:setBorderColor", "tasks:setProgress",
        "tasks:unassign", "tasks:update", "voice:getVoiceToken", "voice:leave",
    ],
}
PUBLIC["Query"].sort()
INTERNAL = ["seed:run", "standups:generateDailyStandup", "standups:markSent"]
# issue 6 (OpenClaw): event ingestion, notification delivery, heartbeat wakes
INTERNAL += ["delivery:claimDue", "delivery:deliverDue", "delivery:recordDelivery", "openclaw:ingest",
             "wakes:claimHeartbeats", "wakes:heartbeatTick", "wakes:recordWake"]
# issue 6 (LiveKit): room events from POST /livekit/webhook
INTERNAL += ["livekitEvents:participantJoined", "livekitEvents:participantLeft", "livekitEvents:roomFinished"]
# issue 6 (Telegram standups, key decisions, weekly cleanup)
INTERNAL += ["decisions:digest", "decisions:pick", "maintenance:cleanup", "maintenance:cronRun",
             "maintenance:trimNotifications", "maintenance:trimStreams", "telegram:claimDelivery",
             "telegram:deliveryOf", "telegram:finalizeStandup", "telegram:finishDelivery",
             "telegram:generateStandups", "telegram:recordPart", "telegram:releaseDelivery",
             "telegram:retryableDeliveries", "telegram:sendStandup", "telegram:sendStandups",
             "telegram:standupTick", "telegram:standupView", "telegram:standupsForDate"]
# issue 11 (file storage): POST /documents/upload
INTERNAL += ["documents:createFromUpload"]
# issue 12 (search): memory embeddings and recall
INTERNAL += ["memory:agentOf", "memory:contentOf", "memory:embedMemory", "memory:embedMissing",
             "memory:loadForRecall", "memory:missingEmbeddings", "memory:storeEmbedding"]
INTERNAL.sort()
ACTIONS = ["memory:recall"]  # issue 12: recall by meaning (embeds the question)


async def test_function_spec_lists_the_whole_api(nova):
    spec = {f["identifier"].replace(".js:", ":"): f for f in nova.dep.function_spec()}
    public = {kind: sorted(p for p, f in spec.items() if f["functionType"] == kind and f["visibility"]["kind"] == "public")
              for kind in ("Query", "Mutation", "Action")}
    assert public == {**PUBLIC, "Action": ACTIONS}
    assert sorted(p for p, f in spec.items() if f["visibility"]["kind"] == "internal") == INTERNAL
    for path, f in spec.items():
        assert f["args"]["type"] == "object", path
        assert f["returns"]["type"] != "any", path
    # Public arguments never carry the tenant: it comes from the caller (internal functions, which
    # no client can call, may be told it by the function that checked the caller).
    assert not [p for p, f in spec.items() if "tenantId" in f["args"]["value"] and f["visibility"]["kind"] == "public"]
