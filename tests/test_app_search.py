"""Nova Command search: `search:all` and the per-table searches (tenant-scoped, reactive), and agent
memory recall by meaning through the `agentMemory.by_embedding` vector index, with the offline
embedder and with an embeddings service (a local fake on loopback)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from app_harness import ADMIN, ALICE, BOB, NOBODY, CallFailed, nova, app_env  # noqa: F401  (fixtures)
from functions._embedding import HashEmbedder


async def populate(nova: Any, tenant: str, who: Any) -> dict[str, str]:
    ids = await nova.seed(tenant)
    general = ids["#general"] if "#general" in ids else next(v for k, v in ids.items() if k.startswith("#"))
    ids["channel"] = general
    ids["message"] = await nova.mutation("messages:send", {
        "channelId": general, "authorId": who.identity["subject"], "authorType": "user",
        "content": f"The authentication token refresh is broken for {tenant}"}, auth=who)
    ids["task"] = await nova.mutation("tasks:create", {"title": "Fix authentication refresh",
                                                       "description": "Tokens expire but the cache returns them."},
                                      auth=who)
    ids["other_task"] = await nova.mutation("tasks:create", {"title": "Lunch order",
                                                             "description": "Pizza; mention the authentication fix"},
                                            auth=who)
    ids["document"] = await nova.mutation("documents:create", {"title": "Auth notes", "type": "research",
                                                               "content": "Refresh tokens rotate every hour."}, auth=who)
    ids["comment"] = await nova.mutation("tasks:addComment", {"taskId": ids["task"], "authorId": who.identity["subject"],
                                                              "authorType": "user",
                                                              "content": "Reproduced the authentication bug"},
                                         auth=who)
    ids["memory"] = await nova.mutation("memory:setWorking", {
        "agentId": ids["Friday"], "content": "Working on the authentication token refresh bug in auth.ts"}, auth=who)
    return ids


async def test_search_all_finds_every_kind_in_the_callers_tenant_only(nova: Any) -> None:
    t1 = await populate(nova, "t1", ALICE)
    t2 = await populate(nova, "t2", BOB)
    found = await nova.query("search:all", {"query": "authentication"})
    assert [d["_id"] for d in found["messages"]] == [t1["message"]]
    assert [d["_id"] for d in found["tasks"]] == [t1["task"], t1["other_task"]]  # title match first
    assert [d["_id"] for d in found["comments"]] == [t1["comment"]]
    assert [d["_id"] for d in found["memory"]] == [t1["memory"]]
    assert all("embedding" not in m for m in found["memory"])
    assert found["documents"] == []
    # Search as you type: the last word is a prefix.
    assert [d["_id"] for d in (await nova.query("search:all", {"query": "refresh tok"}))["documents"]] == [t1["document"]]
    theirs = await nova.query("search:all", {"query": "authentication"}, auth=BOB)
    assert [d["_id"] for d in theirs["messages"]] == [t2["message"]]
    assert not {d["_id"] for kind in theirs.values() for d in kind} & {v for v in t1.values()}


async def test_per_table_searches_and_their_filters(nova: Any) -> None:
    t1 = await populate(nova, "t1", ALICE)
    t2 = await populate(nova, "t2", BOB)
    assert [d["_id"] for d in await nova.query("search:messages", {"query": "token", "channelId": t1["channel"]})] \
        == [t1["message"]]
    assert await nova.error_code("query", "search:messages", {"query": "token", "channelId": t2["channel"]}) == "NOT_FOUND"
    assert [d["_id"] for d in await nova.query("search:tasks", {"query": "authentication", "status": "inbox"})] \
        == [t1["task"], t1["other_task"]]
    assert await nova.query("search:tasks", {"query": "authentication", "status": "done"}) == []
    assert await nova.error_code("query", "search:tasks", {"query": "x", "status": "doing"}) == "INVALID_STATUS"
    assert [d["_id"] for d in await nova.query("search:documents", {"query": "rotate", "type": "research"})] \
        == [t1["document"]]
    assert [d["_id"] for d in await nova.query("search:comments", {"query": "reproduced", "taskId": t1["task"]})] \
        == [t1["comment"]]
    assert [d["_id"] for d in await nova.query("search:memory", {"query": "auth", "agentId": t1["Friday"],
                                                                 "type": "working"})] == [t1["memory"]]
    assert await nova.query("search:memory", {"query": "auth", "agentId": t1["Shuri"]}) == []
    assert await nova.error_code("query", "search:memory", {"query": "x", "agentId": t2["Friday"]}) == "NOT_AN_AGENT"
    assert await nova.error_code("query", "search:all", {"query": "x", "limit": 0.0}) == "INVALID_ARGUMENTS"
    assert await nova.error_code("query", "search:all", {"query": "x"}, auth=NOBODY) == "UNAUTHENTICATED"


async def test_a_subscribed_search_is_touched_by_its_tenants_matching_writes_only(nova: Any) -> None:
    t1 = await populate(nova, "t1", ALICE)
    t2 = await populate(nova, "t2", BOB)
    dep = nova.dep
    fn = dep.app.functions["search:messages"]
    run, _ = await dep.runner.run_query(fn, {"query": "deploy"}, ALICE)
    assert run.value == []

    async def touched(action: Any) -> bool:
        before = dep.committer.sequenced_ts
        await action()
        keys = [k for _, ks in dep.committer.write_log.since(before) for k in ks]
        return run.reads.overlaps(keys)

    def send(channel: str, content: str, who: Any) -> Any:
        return lambda: nova.mutation("messages:send", {"channelId": channel, "authorId": who.identity["subject"],
                                                       "authorType": "user", "content": content}, auth=who)
    assert not await touched(send(t2["channel"], "deploy tonight", BOB))      # another tenant
    assert not await touched(send(t1["channel"], "lunch tonight", ALICE))     # no matching word
    assert await touched(send(t1["channel"], "deployed tonight", ALICE))      # a completion of "deploy"


async def test_memory_is_recalled_by_meaning(nova: Any) -> None:
    t1 = await populate(nova, "t1", ALICE)
    await nova.mutation("memory:setLongTerm", {"agentId": t1["Friday"], "content": "Prefers pizza for team lunch"})
    await nova.mutation("memory:appendDaily", {"agentId": t1["Shuri"], "content": "- Tested the deployment pipeline"})
    await nova.dep.scheduler.drain()  # the embeddings are made by scheduled actions
    found = await nova.call("action", "memory:recall", {"query": "auth token refresh problem"})
    assert found[0]["memory"]["_id"] == t1["memory"] and found[0]["score"] > found[1]["score"]
    assert all("embedding" not in r["memory"] for r in found)
    assert (await nova.call("action", "memory:recall", {"query": "lunch pizza", "limit": 1.0}))[0]["memory"]["type"] \
        == "longterm"
    shuri = await nova.call("action", "memory:recall", {"query": "deployment", "agentId": t1["Shuri"]})
    assert {r["memory"]["agentId"] for r in shuri} == {t1["Shuri"]}
    daily = await nova.call("action", "memory:recall", {"query": "deployment", "type": "daily"})
    assert daily and {r["memory"]["type"] for r in daily} == {"daily"}
    # Another tenant recalls nothing of t1's.
    await nova.seed("t2")
    assert await nova.call("action", "memory:recall", {"query": "auth token refresh problem"}, auth=BOB) == []


async def test_a_rewritten_memory_drops_its_stale_embedding_until_re_embedded(nova: Any) -> None:
    t1 = await populate(nova, "t1", ALICE)
    await nova.dep.scheduler.drain()
    await nova.mutation("memory:setWorking", {"agentId": t1["Friday"], "content": "Now writing release notes"})
    first = (await nova.call("action", "memory:recall", {"query": "release notes"}))
    assert all(r["memory"]["_id"] != t1["memory"] for r in first)  # stale: not in the index yet
    await nova.dep.scheduler.drain()
    found = await nova.call("action", "memory:recall", {"query": "release notes"})
    assert found[0]["memory"]["_id"] == t1["memory"]
    assert found[0]["memory"]["content"] == "Now writing release notes"


def test_the_offline_embedder_is_deterministic_and_normalized() -> None:
    e = HashEmbedder()
    a, b = e.vector("Deploy the auth fix"), e.vector("deploy the AUTH fix!")
    assert a == b and len(a) == 256 and abs(sum(x * x for x in a) - 1.0) < 1e-9
    near = sum(x * y for x, y in zip(e.vector("deployed the fix"), a))
    far = sum(x * y for x, y in zip(e.vector("pizza for lunch"), a))
    assert near > 0.5 > far
    assert e.vector("") == [0.0] * 256


class _FakeEmbeddings(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/embeddings on loopback."""

    requests: list[dict[str, Any]] = []
    status = 200
    dims = 256

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if type(self).status != 200:
            self.send_response(type(self).status)
            self.end_headers()
            return
        embedder = HashEmbedder()
        data = [{"index": i, "embedding": embedder.vector(t)[:type(self).dims] + [0.0] * max(0, type(self).dims - 256)}
                for i, t in enumerate(body["input"])]
        out = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def embeddings_service(app_env: pytest.MonkeyPatch) -> Any:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeEmbeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeEmbeddings.requests = []
    _FakeEmbeddings.status = 200
    _FakeEmbeddings.dims = 256
    app_env.setenv("NOVA_EMBEDDINGS_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
    app_env.setenv("NOVA_EMBEDDINGS_API_KEY", "sk-test-secret")
    app_env.setenv("NOVA_EMBEDDINGS_MODEL", "fake-embedder")
    yield _FakeEmbeddings
    server.shutdown()
    server.server_close()


async def test_recall_through_an_embeddings_service(embeddings_service: Any, nova: Any) -> None:
    t1 = await populate(nova, "t1", ALICE)
    await nova.dep.scheduler.drain()
    found = await nova.call("action", "memory:recall", {"query": "auth token refresh problem"})
    assert found[0]["memory"]["_id"] == t1["memory"]
    request = embeddings_service.requests[-1]
    assert request["path"] == "/v1/embeddings" and request["auth"] == "Bearer sk-test-secret"
    assert request["body"]["model"] == "fake-embedder" and request["body"]["dimensions"] == 256
    memories = await nova.dep.call("memory:contentOf", {"memoryId": t1["memory"]}, kind="query",
                                   auth=ADMIN)
    assert memories.value["model"] == "fake-embedder"


async def test_a_failing_embeddings_service_is_a_clear_error_without_the_key(embeddings_service: Any,
                                                                            nova: Any) -> None:
    await nova.seed("t1")
    embeddings_service.status = 500
    with pytest.raises(CallFailed) as info:
        await nova.call("action", "memory:recall", {"query": "anything"})
    assert info.value.outcome.error_data["code"] == "EMBEDDING_FAILED"
    assert "HTTP 500" in info.value.outcome.error_data["message"]
    assert "sk-test-secret" not in str(info.value.outcome.error_message)
    embeddings_service.status = 200
    embeddings_service.dims = 1536
    with pytest.raises(CallFailed) as info:
        await nova.call("action", "memory:recall", {"query": "anything"})
    assert "1536 dimensions" in info.value.outcome.error_data["message"]
