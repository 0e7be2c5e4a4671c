"""Nova Command attachments in file storage (issue 11): documents of type attachment / image / media
hold their bytes through `storageId`, messages and comments attach those documents, and an agent can
upload in one call with `POST /documents/upload`."""

from __future__ import annotations

import json
import re
import time

import pytest

from app_harness import ADMIN, ALICE, BOB, REPO_ROOT, nova, app_env  # noqa: F401  (fixtures)
from engine import http_api
from engine.deployment import Deployment
from engine.http_api import HttpRequest
from engine.scheduler import ManualClock


async def upload(dep: Deployment, url: str, data: bytes, content_type: str) -> str:
    token = re.search(r"token=([^&]+)", url).group(1)
    response = await http_api.handle(dep, HttpRequest("POST", "/api/storage/upload", {"content-type": content_type},
                                                      {"token": token}, data))
    assert response.status == 200, response.body
    return json.loads(response.body)["storageId"]


async def test_the_convex_upload_flow_for_an_attachment_in_a_message(nova):
    ids = await nova.seed("t1")
    url = await nova.mutation("documents:generateUploadUrl")
    storage_id = await upload(nova.dep, url, b"%PDF-1.7 spec", "application/pdf")
    doc_id = await nova.mutation("documents:create", {"title": "Spec", "content": "", "type": "attachment",
                                                      "storageId": storage_id, "path": "spec.pdf"})
    document = await nova.query("documents:get", {"id": doc_id})
    assert document["storageId"] == storage_id
    file = await nova.query("documents:file", {"id": doc_id})
    assert file["contentType"] == "application/pdf" and file["size"] == 13.0
    assert file["url"].startswith("http://127.0.0.1:3210/api/storage/")
    message = await nova.mutation("messages:send", {"channelId": ids["#general"], "authorId": "alice",
                                                    "authorType": "user", "content": "see the spec",
                                                    "attachments": [doc_id]})
    assert message
    # Served back with its content type.
    served = await http_api.handle(nova.dep, HttpRequest("GET", "/" + file["url"].split("/", 3)[3], {}, {}, b""))
    assert served.body == b"%PDF-1.7 spec" and dict(served.headers)["content-type"] == "application/pdf"
    # Another tenant sees neither the document nor its file.
    assert await nova.error_code("query", "documents:file", {"id": doc_id}, auth=BOB) == "NOT_FOUND"
    # A file backs one document; only attachment/image/media hold files; ids must be stored files.
    assert await nova.error_code("mutation", "documents:create", {
        "title": "Again", "content": "", "type": "image", "storageId": storage_id}) == "DUPLICATE"
    other = await upload(nova.dep, await nova.mutation("documents:generateUploadUrl"), b"x", "text/plain")
    assert await nova.error_code("mutation", "documents:create", {
        "title": "Notes", "content": "", "type": "note", "storageId": other}) == "INVALID_ARGUMENTS"
    assert await nova.error_code("mutation", "documents:create", {
        "title": "Bogus", "content": "", "type": "media", "storageId": doc_id}) == "NOT_FOUND"
    # Removing the document deletes its file.
    await nova.mutation("documents:remove", {"id": doc_id})
    assert await nova.error_code("query", "documents:get", {"id": doc_id}) == "NOT_FOUND"
    assert (await http_api.handle(nova.dep, HttpRequest("GET", "/" + file["url"].split("/", 3)[3], {}, {}, b""))).status == 404
    # Uploading needs a caller.
    from app_harness import NOBODY

    assert await nova.error_code("mutation", "documents:generateUploadUrl", auth=NOBODY) == "UNAUTHENTICATED"
    assert await nova.query("documents:file", {"id": await nova.mutation(
        "documents:create", {"title": "Plain", "content": "x", "type": "note"})}) is None


async def test_an_agent_uploads_a_document_in_one_call(app_env, tmp_path):
    dep = await Deployment.open(REPO_ROOT, tmp_path / "db.sqlite3", admin_key="nova-admin",
                                clock=ManualClock(time.time() * 1000))
    try:
        await dep.call("seed:run", {"tenantId": "default"}, kind="mutation", auth=ADMIN)

        async def post(query: dict, body: bytes, headers: dict) -> tuple[int, dict]:
            response = await dep.handle_http_action(HttpRequest("POST", "/documents/upload", headers, query, body))
            return response.status, json.loads(response.body)

        admin = {"authorization": "Convex nova-admin", "content-type": "image/png"}
        status, body = await post({"title": "Wireframe", "type": "image"}, b"\x89PNG...", admin)
        assert status == 201 and set(body) == {"documentId", "storageId", "url"}
        document = (await dep.call("documents:get", {"id": body["documentId"]}, kind="query", auth=ADMIN)).value
        assert document["type"] == "image" and document["tenantId"] == "default"
        assert document["storageId"] == body["storageId"]
        # Refusals store nothing.
        rows_before = len(await dep.file_storage._all_keys())
        assert (await post({"title": "x", "type": "note"}, b"data", admin))[1]["code"] == "INVALID_ARGUMENTS"
        assert (await post({"title": "x", "taskId": "nope"}, b"data", admin))[1]["code"] == "NOT_FOUND"
        assert (await post({"type": "image"}, b"data", admin))[0] == 400
        assert (await post({"title": "x"}, b"", admin))[1]["code"] == "EMPTY_CONTENT"
        assert (await post({"title": "x"}, b"data", {}))[1]["code"] == "UNAUTHENTICATED"
        status, body = await post({"title": "x"}, b"data", {"authorization": "Bearer not-a-jwt"})
        assert (status, body["code"]) == (401, "UNAUTHENTICATED")
        await dep.file_storage.settled()
        assert len(await dep.file_storage._all_keys()) == rows_before
    finally:
        await dep.close()


@pytest.mark.slow
def test_attachments_end_to_end_with_the_official_client_and_fetch(server_factory, run_node):
    """A real server on the repo's app (local single-user mode), driven as the desktop app does
    (npm ConvexClient + fetch) and as an agent does (one POST on the site origin)."""
    from test_app_e2e import engine_run

    server = server_factory(REPO_ROOT, extra_env={"NOVA_LOCAL_TENANT": "default", "NOVA_AGENT_TENANT": "default"})
    engine_run(server, "seed:run")
    out = run_node("app_files", server.url, server.site_url, server.admin_key, timeout=90)
    assert out["ok"], out
    v = out["value"]
    assert v["postStatus"] == 200 and v["uploadOrigin"] == server.url
    assert v["messageAttachments"] == [v["documentId"]] and v["commentAttachments"] == [v["documentId"]]
    file = v["file"]
    assert file["url"].startswith(server.url + "/api/storage/") and file["contentType"] == "image/png"
    assert file["size"] == v["size"] and v["servedStatus"] == 200 and v["servedType"] == "image/png" and v["servedSame"]
    # Removing the document deleted its file: the live query now fails NOT_FOUND, the URL answers 404.
    assert v["lastFile"] == {"error": "NOT_FOUND"} and v["afterRemoveStatus"] == 404
    agent = v["agent"]
    assert agent["status"] == 201 and agent["keys"] == ["documentId", "storageId", "url"]
    assert agent["servedType"] == "audio/ogg" and agent["same"] and agent["urlOrigin"] == server.url
    assert v["byTask"] == [{"title": "Standup recording", "type": "media", "hasFile": True}]
