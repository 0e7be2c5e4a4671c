"""Channels, messages (threads, attachments, pagination) and documents."""

from app_harness import BOB, PAGE, nova, app_env  # noqa: F401  (fixtures)


async def test_channels(nova):
    ids = await nova.seed("t1")
    assert [(c["name"], c["type"]) for c in await nova.query("channels:list")] == [
        ("dev-tasks", "text"), ("general", "text"), ("standup", "text"), ("war-room", "voice")]
    assert [c["name"] for c in await nova.query("channels:list", {"type": "voice"})] == ["war-room"]
    lounge = await nova.mutation("channels:create", {"name": " lounge ", "type": "voice", "description": "Chill"})
    assert (await nova.query("channels:get", {"id": lounge}))["name"] == "lounge"
    assert await nova.error_code("mutation", "channels:create", {"name": "general", "type": "text"}) == "DUPLICATE"
    # Names are unique per tenant, not across tenants.
    await nova.mutation("channels:create", {"name": "lounge", "type": "text"}, auth=BOB)
    assert ids["#general"] != (await nova.query("channels:list", {"type": "text"}, auth=BOB))[0]["_id"]


async def test_messages_threads_and_pagination(nova):
    ids = await nova.seed("t1")
    general, friday = ids["#general"], ids["Friday"]
    first = await nova.mutation("messages:send", {"channelId": general, "authorId": "alice", "authorType": "user",
                                                  "content": "**Morning** squad"})
    for i in range(5):
        await nova.mutation("messages:send", {"channelId": general, "authorId": friday, "authorType": "agent",
                                              "content": f"update {i}"})
    doc = await nova.mutation("documents:create", {"title": "Log", "content": "```\ntrace\n```", "type": "code",
                                                   "agentId": friday})
    reply = await nova.mutation("messages:send", {"channelId": general, "authorId": friday, "authorType": "agent",
                                                  "content": "see log", "threadId": first, "attachments": [doc]})
    # A reply to a reply joins the root thread.
    await nova.mutation("messages:send", {"channelId": general, "authorId": "alice", "authorType": "user",
                                          "content": "thanks", "threadId": reply})

    page1 = await nova.query("messages:list", {"channelId": general, "paginationOpts": {"numItems": 4.0, "cursor": None}})
    assert [m["content"] for m in page1["page"]] == ["update 4", "update 3", "update 2", "update 1"]
    assert page1["isDone"] is False
    page2 = await nova.query("messages:list", {"channelId": general,
                                               "paginationOpts": {"numItems": 4.0, "cursor": page1["continueCursor"]}})
    assert [m["content"] for m in page2["page"]] == ["update 0", "**Morning** squad"] and page2["isDone"]

    thread = await nova.query("messages:thread", {"threadId": first, "paginationOpts": PAGE})
    assert [(m["content"], m.get("attachments")) for m in thread["page"]] == [("see log", [doc]), ("thanks", None)]
    assert all(m["threadId"] == first for m in thread["page"])

    assert await nova.error_code("mutation", "messages:send", {
        "channelId": ids["#dev-tasks"], "authorId": "alice", "authorType": "user", "content": "x",
        "threadId": first}) == "INVALID_THREAD"
    assert await nova.error_code("mutation", "messages:send", {
        "channelId": general, "authorId": "alice", "authorType": "user", "content": "x",
        "attachments": [first]}) == "NOT_FOUND"
    assert await nova.error_code("mutation", "messages:send", {
        "channelId": general, "authorId": "alice", "authorType": "user", "content": ""}) == "EMPTY_CONTENT"
    feed = await nova.query("activities:list", {"paginationOpts": PAGE, "type": "message"})
    assert len(feed["page"]) == 8 and feed["page"][0]["message"] == "alice posted in #general"


async def test_documents(nova):
    ids = await nova.seed("t1")
    task = await nova.mutation("tasks:create", {"title": "Research"})
    kinds = ["deliverable", "research", "protocol", "attachment", "markdown", "code", "image", "note", "text",
             "media", "document"]
    made = [await nova.mutation("documents:create", {"title": f"Doc {k}", "content": "# x", "type": k,
                                                     "taskId": task, "path": f"/{k}.md"}) for k in kinds]
    loose = await nova.mutation("documents:create", {"title": "Loose", "content": "", "type": "note",
                                                     "agentId": ids["Shuri"]})
    assert [d["_id"] for d in await nova.query("documents:listByTask", {"taskId": task})] == made
    await nova.mutation("documents:update", {"id": loose, "content": "filled", "taskId": task, "type": "research"})
    got = await nova.query("documents:get", {"id": loose})
    assert (got["content"], got["taskId"], got["type"], got["agentId"]) == ("filled", task, "research", ids["Shuri"])
    await nova.mutation("documents:update", {"id": loose, "taskId": None})
    assert "taskId" not in await nova.query("documents:get", {"id": loose})
    listed = await nova.query("documents:list", {"paginationOpts": {"numItems": 2.0, "cursor": None}})
    assert [d["_id"] for d in listed["page"]] == [loose, made[-1]]
    created = await nova.query("activities:list", {"paginationOpts": PAGE, "type": "document_created"})
    assert created["page"][0]["message"] == 'Shuri created "Loose"' and created["page"][0]["agentId"] == ids["Shuri"]
    assert await nova.error_code("mutation", "documents:create",
                                 {"title": "x", "content": "", "type": "note", "taskId": ids["Shuri"]}) == "NOT_FOUND"
    assert await nova.error_code("mutation", "documents:create",
                                 {"title": "x", "content": "", "type": "note", "agentId": task}) == "NOT_AN_AGENT"
