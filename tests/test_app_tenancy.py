"""Tenancy: the tenant comes from the caller, never from arguments; tenant A can neither read nor
change anything of tenant B; who may call at all."""

import logging

from engine.deployment import Deployment

from app_harness import ADMIN, ALICE, BOB, NOBODY, PAGE, REPO_ROOT, user, nova, app_env  # noqa: F401


async def test_tenant_a_cannot_read_or_change_tenant_b(nova):
    mine = await nova.seed("t1")
    theirs = await nova.seed("t2")
    task = await nova.mutation("tasks:create", {"title": "Secret plan", "assigneeIds": [mine["Friday"]]})
    doc = await nova.mutation("documents:create", {"title": "Plan", "content": "…", "type": "note", "taskId": task})
    await nova.mutation("messages:send", {"channelId": mine["#general"], "authorId": "alice",
                                          "authorType": "user", "content": "hello t1"})

    # Lists are per tenant.
    assert [t["title"] for t in await nova.query("tasks:list", auth=BOB)] == ["Welcome the squad"]
    assert {a["_id"] for a in await nova.query("agents:list", auth=BOB)} == {
        theirs[n] for n in ("Nova", "Friday", "Shuri", "Loki")}
    feed = (await nova.query("activities:list", {"paginationOpts": PAGE}, auth=BOB))["page"]
    assert [a["message"] for a in feed] == ['Nova created "Welcome the squad"']
    assert (await nova.query("documents:list", {"paginationOpts": PAGE}, auth=BOB))["page"] == []
    assert "Secret plan" not in str(await nova.query("tasks:board", auth=BOB))

    # Every read and write of t1's documents by t2 is "not found" (no existence leak).
    reads = [
        ("tasks:get", {"id": task}), ("tasks:subscribers", {"id": task}), ("documents:get", {"id": doc}),
        ("documents:listByTask", {"taskId": task}), ("channels:get", {"id": mine["#general"]}),
        ("messages:list", {"channelId": mine["#general"], "paginationOpts": PAGE}),
        ("agents:get", {"id": mine["Friday"]}), ("voice:getRoom", {"channelId": mine["#war-room"]}),
    ]
    for path, args in reads:
        assert await nova.error_code("query", path, args, auth=BOB) == "NOT_FOUND", path
    writes = [
        ("tasks:move", {"id": task, "status": "done"}), ("tasks:update", {"id": task, "title": "Mine now"}),
        ("tasks:setProgress", {"id": task, "progress": 50.0}), ("tasks:archive", {"id": task}),
        ("tasks:setBorderColor", {"id": task, "borderColor": "#f00"}),
        ("tasks:assign", {"taskId": task, "agentId": theirs["Friday"]}),
        ("tasks:addComment", {"taskId": task, "authorId": "bob", "authorType": "user", "content": "hi"}),
        ("documents:update", {"id": doc, "content": "gone"}),
        ("messages:send", {"channelId": mine["#general"], "authorId": "bob", "authorType": "user", "content": "x"}),
    ]
    for path, args in writes:
        assert await nova.error_code("mutation", path, args, auth=BOB) == "NOT_FOUND", path
    # t2 cannot use t1's agents either, even on its own tasks; nor t1's sessionKey lookups.
    their_task = await nova.mutation("tasks:create", {"title": "Theirs"}, auth=BOB)
    for path in ("tasks:assign", "tasks:unassign"):
        assert await nova.error_code("mutation", path, {"taskId": their_task, "agentId": mine["Friday"]},
                                     auth=BOB) == "NOT_AN_AGENT"
    for path, args in [("agents:update", {"id": mine["Friday"], "name": "Pwned"}),
                       ("agents:setStatus", {"id": mine["Friday"], "status": "blocked"}),
                       ("memory:setWorking", {"agentId": mine["Friday"], "content": "x"})]:
        assert await nova.error_code("mutation", path, args, auth=BOB) == "NOT_AN_AGENT"
    assert (await nova.query("agents:get", {"sessionKey": "agent:developer:main"}, auth=BOB))["_id"] == theirs["Friday"]

    # t1 sees everything unchanged.
    got = await nova.query("tasks:get", {"id": task})
    assert got["task"]["title"] == "Secret plan" and got["task"]["status"] == "assigned"
    assert got["comments"] == []
    assert (await nova.query("agents:get", {"id": mine["Friday"]}))["name"] == "Friday"


async def test_who_may_call(nova, app_env):
    await nova.seed("default")
    await nova.seed("t1")
    # Nobody: refused.
    assert await nova.error_code("query", "tasks:list", {}, auth=NOBODY) == "UNAUTHENTICATED"
    assert await nova.error_code("mutation", "tasks:create", {"title": "x"}, auth=NOBODY) == "UNAUTHENTICATED"
    # An identity without the tenant claim: refused.
    assert await nova.error_code("query", "tasks:list", {}, auth=user("eve", None)) == "NO_TENANT"
    # The admin acts as $NOVA_AGENT_TENANT ("default" unless set); impersonating a user, as that user.
    default_ids = {a["_id"] for a in await nova.query("agents:list", auth=ADMIN)}
    assert default_ids == {a["_id"] for a in await nova.query("agents:list", auth=user("x", "default"))}
    app_env.setenv("NOVA_AGENT_TENANT", "t1")
    assert {a["_id"] for a in await nova.query("agents:list", auth=ADMIN)} == {
        a["_id"] for a in await nova.query("agents:list", auth=ALICE)}
    impersonating = type(ADMIN)(identity={"subject": "bob", "tenantId": "t2"}, admin=True)
    assert await nova.query("agents:list", auth=impersonating) == []
    # The claim name is configurable.
    app_env.setenv("NOVA_TENANT_CLAIM", "org")
    assert await nova.error_code("query", "tasks:list", {}, auth=ALICE) == "NO_TENANT"
    assert len(await nova.query("agents:list", auth=user("y", None, org="t1"))) == 4
    app_env.delenv("NOVA_TENANT_CLAIM")
    # Local single-user mode: unauthenticated callers act as the named tenant.
    app_env.setenv("NOVA_LOCAL_TENANT", "t1")
    task = await nova.mutation("tasks:create", {"title": "From the desk"}, auth=NOBODY)
    assert (await nova.query("tasks:get", {"id": task}, auth=ALICE))["task"]["title"] == "From the desk"
    subscribed = await nova.query("tasks:subscribers", {"id": task}, auth=NOBODY)
    assert [(s["subscriberId"], s["subscriberType"]) for s in subscribed] == [("user", "user")]


async def test_local_mode_is_announced_loudly_at_start(app_env, caplog, capsys):
    app_env.setenv("NOVA_LOCAL_TENANT", "desk")
    with caplog.at_level(logging.WARNING):
        dep = await Deployment.open(REPO_ROOT, ":memory:")
        await dep.close()
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING and "NOVA_LOCAL_TENANT" in r.getMessage()]
    assert loud and "UNAUTHENTICATED CALLERS ACT AS TENANT 'desk'" in loud[0].getMessage()
    assert "!!! NOVA_LOCAL_TENANT=desk: UNAUTHENTICATED CALLERS ACT AS TENANT 'desk'" in capsys.readouterr().err
