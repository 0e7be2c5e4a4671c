"""The spec's "Thread Subscriptions": auto-subscribe rules and the addComment notification flow."""

from app_harness import ALICE, nova, app_env  # noqa: F401  (fixtures)

TITLE = "Fix auth token refresh"


async def inbox(nova, recipient_id=None, recipient_type="agent"):
    args = {"recipientId": recipient_id, "recipientType": recipient_type} if recipient_id else {}
    return [(n["sourceType"], n["content"]) for n in await nova.query("notifications:list", args)]


async def subscribers(nova, task_id):
    return [(s["subscriberId"], s["subscriberType"]) for s in await nova.query("tasks:subscribers", {"id": task_id})]


async def test_add_comment_produces_the_specs_subscriptions_and_notifications(nova):
    ids = await nova.seed("t1")
    friday, shuri, nova_id, loki = ids["Friday"], ids["Shuri"], ids["Nova"], ids["Loki"]

    # 4. Create task -> subscribed
    task = await nova.mutation("tasks:create", {"title": TITLE, "description": "Tokens expire but cached."})
    assert await subscribers(nova, task) == [("alice", "user")]

    # 3. Get assigned -> subscribed (and notified)
    await nova.mutation("tasks:assign", {"taskId": task, "agentId": friday})
    assert await subscribers(nova, task) == [("alice", "user"), (friday, "agent")]

    # 1. Comment -> subscribed; every other subscriber notified; 2. @mentioned -> notified + subscribed.
    # Mentions are case-insensitive; unknown names and e-mail addresses are ignored.
    await nova.mutation("tasks:addComment", {
        "taskId": task, "authorId": friday, "authorType": "agent",
        "content": "Found it in auth.ts. @shuri can you test? cc @Bruce and ops@example.com",
    })
    assert await subscribers(nova, task) == [("alice", "user"), (friday, "agent"), (shuri, "agent")]

    # @all notifies the whole squad; subscribers other than the author get "thread" first.
    await nova.mutation("tasks:addComment", {
        "taskId": task, "authorId": "alice", "authorType": "user", "content": "Thanks! @ALL standup at 10",
    })
    assert await subscribers(nova, task) == [
        ("alice", "user"), (friday, "agent"), (shuri, "agent"), (nova_id, "agent"), (loki, "agent"),
    ]

    thread = ("thread", f'New comment on "{TITLE}"')
    assert await inbox(nova) == [thread]  # alice: Friday's comment
    assert await inbox(nova, friday) == [
        ("assignment", f'You were assigned "{TITLE}"'),
        thread,
        ("mention", f'alice mentioned you on "{TITLE}"'),
    ]
    assert await inbox(nova, shuri) == [
        ("mention", f'Friday mentioned you on "{TITLE}"'),
        thread,
        ("mention", f'alice mentioned you on "{TITLE}"'),
    ]
    assert await inbox(nova, nova_id) == [("mention", f'alice mentioned you on "{TITLE}"')]
    assert await inbox(nova, loki) == [("mention", f'alice mentioned you on "{TITLE}"')]

    # Every notification points at the task; the comments are on the task, oldest first.
    got = await nova.query("tasks:get", {"id": task})
    assert [c["authorId"] for c in got["comments"]] == [friday, "alice"]
    for recipient in (friday, shuri, nova_id, loki):
        notes = await nova.query("notifications:list", {"recipientId": recipient, "recipientType": "agent"})
        assert {n["sourceId"] for n in notes} == {task}
        assert not any(n["delivered"] for n in notes)


async def test_authors_are_not_notified_about_themselves(nova):
    ids = await nova.seed("t1")
    task = await nova.mutation("tasks:create", {"title": "Solo", "actorId": ids["Friday"], "actorType": "agent"})
    await nova.mutation("tasks:addComment", {"taskId": task, "authorId": ids["Friday"], "authorType": "agent",
                                             "content": "Note to self @friday, and @all"})
    assert await inbox(nova, ids["Friday"]) == []
    assert await inbox(nova, ids["Loki"]) == [("mention", 'Friday mentioned you on "Solo"')]
    # The creator's subscription is not duplicated by commenting.
    assert [s["subscriberId"] for s in await nova.query("tasks:subscribers", {"id": task})] == [
        ids["Friday"], ids["Nova"], ids["Shuri"], ids["Loki"]]


async def test_delivery_and_read_state(nova):
    ids = await nova.seed("t1")
    task = await nova.mutation("tasks:create", {"title": "Ping"})
    await nova.mutation("tasks:addComment", {"taskId": task, "authorId": "alice", "authorType": "user",
                                             "content": "@Nova @Loki look"})
    nova_notes = await nova.query("notifications:list", {"recipientId": ids["Nova"], "recipientType": "agent"})
    await nova.mutation("notifications:markDelivered", {"ids": [nova_notes[0]["_id"]]})
    await nova.mutation("notifications:markRead", {"id": nova_notes[0]["_id"]})
    loki_note = (await nova.query("notifications:list", {"recipientId": ids["Loki"], "recipientType": "agent"}))[0]
    await nova.mutation("tasks:addComment", {"taskId": task, "authorId": "alice", "authorType": "user",
                                             "content": "@Nova again"})
    listed = await nova.query("notifications:list", {"recipientId": ids["Nova"], "recipientType": "agent"})
    # Undelivered first, then delivered.
    assert [(n["content"].split()[0], n["delivered"]) for n in listed] == [("New", False), ("alice", False),
                                                                         ("alice", True)]
    assert "readAt" in listed[2] and "readAt" not in listed[0]
    assert listed[2]["_id"] != loki_note["_id"]


async def test_comment_refusals_write_nothing(nova):
    ids = await nova.seed("t1")
    other = await nova.seed("t2")
    task = await nova.mutation("tasks:create", {"title": "Guarded"})
    comment = {"taskId": task, "authorId": "alice", "authorType": "user", "content": "hi"}
    assert await nova.error_code("mutation", "tasks:addComment", {**comment, "taskId": ids["Friday"]}) == "NOT_FOUND"
    assert await nova.error_code("mutation", "tasks:addComment", {**comment, "taskId": "nope"}) == "NOT_FOUND"
    assert await nova.error_code("mutation", "tasks:addComment", {**comment, "content": "  "}) == "EMPTY_CONTENT"
    assert await nova.error_code("mutation", "tasks:addComment",
                                 {**comment, "authorId": other["Friday"], "authorType": "agent"}) == "NOT_AN_AGENT"
    assert await nova.error_code("mutation", "tasks:addComment", {**comment, "authorId": "mallory"}) == "FORBIDDEN"
    assert await nova.error_code("mutation", "tasks:addComment",
                                 {**comment, "attachments": [task]}) == "NOT_FOUND"
    assert (await nova.query("tasks:get", {"id": task}, auth=ALICE))["comments"] == []
