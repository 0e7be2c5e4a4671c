"""File storage in-process (engine.file_storage, engine.blobs): the `_storage` rows, blobs on disk,
deletion freeing bytes, crash recovery, limits, upload tokens, the HTTP endpoints, and export/import
in `npx convex export --include-file-storage`'s layout. The npm and PyPI clients drive it end to end
in tests/test_conformance_exact.py."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import threading
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine import http_api
from engine.deployment import Auth, Deployment
from engine.file_storage import FILES_PREFIX, UPLOAD_PATH
from engine.http_api import HttpRequest
from engine.scheduler import ManualClock
from engine.snapshot_zip import export_snapshot, import_snapshot

APP = Path(__file__).resolve().parent / "apps" / "exact"
ADMIN = Auth(admin=True)


async def ok(dep: Deployment, path: str, args: dict | None = None, kind: str = "mutation") -> Any:
    outcome = await dep.call(path, args or {}, kind=kind, auth=ADMIN)
    assert outcome.success, outcome.error_message
    return outcome.value


async def fails(dep: Deployment, path: str, args: dict | None = None, kind: str = "mutation") -> str:
    outcome = await dep.call(path, args or {}, kind=kind, auth=ADMIN)
    assert not outcome.success, outcome.value
    return outcome.error_message


async def upload(dep: Deployment, data: bytes, content_type: str | None = "text/plain", **headers: str):
    url = await ok(dep, "files:generateUploadUrl")
    token = re.search(r"token=([^&]+)", url).group(1)
    hdrs = {"content-type": content_type} if content_type else {}
    hdrs.update(headers)
    return await http_api.handle(dep, HttpRequest("POST", UPLOAD_PATH, hdrs, {"token": token}, data))


async def get(dep: Deployment, url: str, **headers: str):
    path = "/" + url.split("/", 3)[3]
    return await http_api.handle(dep, HttpRequest("GET", path, headers, {}, b""))


def blob_files(db: Path) -> set[str]:
    folder = Path(str(db) + ".storage")
    return {p.name for p in folder.glob("*/*") if p.is_file() and not p.parent.name.startswith(".")}


@pytest.fixture
async def dep(tmp_path):
    d = await Deployment.open(APP, tmp_path / "db.sqlite3", admin_key="k", clock=ManualClock(1_800_000_000_000))
    yield d
    await d.close()


async def test_upload_row_url_get_and_delete(dep, tmp_path):
    data = os.urandom(300_000)
    response = await upload(dep, data, "image/png")
    assert response.status == 200
    storage_id = json.loads(response.body)["storageId"]
    row = await ok(dep, "files:row", {"storageId": storage_id}, "query")
    assert row == {"_id": storage_id, "_creationTime": row["_creationTime"], "size": 300_000.0,
                   "sha256": base64.b64encode(hashlib.sha256(data).digest()).decode(), "contentType": "image/png"}
    assert await ok(dep, "files:rows", {}, "query") == [row]
    url = await ok(dep, "files:url", {"storageId": storage_id}, "query")
    served = await get(dep, url)
    assert served.status == 200 and served.body == data
    assert dict(served.headers)["content-type"] == "image/png"
    assert dict(served.headers)["digest"] == f"sha-256={row['sha256']}"
    # The file's UUID (Convex's legacy storage id) works as well as its Id<"_storage">.
    file_uuid = url.rsplit("/", 1)[1]
    assert await ok(dep, "files:urlOfAnyString", {"storageId": file_uuid}, "query") == url
    assert blob_files(tmp_path / "db.sqlite3") == {file_uuid}
    await ok(dep, "files:remove", {"storageId": storage_id})
    await dep.file_storage.settled()
    assert blob_files(tmp_path / "db.sqlite3") == set()  # the bytes are freed
    assert (await get(dep, url)).status == 404
    assert await ok(dep, "files:url", {"storageId": storage_id}, "query") is None
    assert await ok(dep, "files:row", {"storageId": storage_id}, "query") is None


async def test_a_mutation_that_deletes_then_fails_keeps_the_file(dep, tmp_path):
    storage_id = json.loads((await upload(dep, b"keep me")).body)["storageId"]
    outcome = await dep.call("files:removeThenFail", {"storageId": storage_id}, kind="mutation", auth=ADMIN)
    assert not outcome.success
    await dep.file_storage.settled()
    assert len(blob_files(tmp_path / "db.sqlite3")) == 1
    assert await ok(dep, "files:url", {"storageId": storage_id}, "query") is not None


async def test_store_and_get_in_actions_and_content_type_null_when_absent(dep):
    result = await ok(dep, "files:storeText", {"text": "hi"}, "action")
    assert result["roundTrip"] == "hi"
    row = await ok(dep, "files:row", {"storageId": result["storageId"]}, "query")
    assert row["contentType"] is None  # as Convex's _storage virtual table shows it
    response = await upload(dep, b"raw", None)
    row = await ok(dep, "files:row", {"storageId": json.loads(response.body)["storageId"]}, "query")
    assert row["contentType"] is None
    meta = await ok(dep, "files:metadata", {"storageId": result["storageId"]}, "query")
    assert meta == {"storageId": meta["storageId"], "sha256": hashlib.sha256(b"hi").hexdigest(), "size": 2.0,
                    "contentType": None}
    await ok(dep, "files:removeInAction", {"storageId": result["storageId"]}, "action")
    assert await ok(dep, "files:read", {"storageId": result["storageId"]}, "action") is None


async def test_storage_ids_are_validated_and_the_key_table_is_private(dep):
    storage_id = json.loads((await upload(dep, b"x")).body)["storageId"]
    other = await ok(dep, "files:save", {"name": "f", "storageId": storage_id})
    message = await fails(dep, "files:save", {"name": "f", "storageId": other})  # v.id("_storage")
    assert "ArgumentValidationError" in message
    message = await fails(dep, "files:urlOfAnyString", {"storageId": "nope"}, "query")
    assert ("Uncaught Error: Invalid argument `storageId` for `storage.getUrl`: Invalid storage ID: \"nope\". "
            "Storage ID should be an\n                    Id of '_storage' table, or a UUID string.") in message
    assert "There is no system table \"_storage_keys\"" in await fails(dep, "files:peekKeys", {}, "query")
    # db.get of the private table's ids reads like a missing document.
    key_id = (await dep.file_storage._all_keys())[0]["_id"]
    assert await ok(dep, "files:getAny", {"id": key_id}, "query") is None


async def test_limits_tokens_digests_and_paths(tmp_path):
    clock = ManualClock(1_800_000_000_000)
    dep = await Deployment.open(APP, tmp_path / "db.sqlite3", admin_key="k", clock=clock)
    try:
        dep.file_storage.max_file_bytes = 10
        too_big = await upload(dep, b"x" * 11)
        assert too_big.status == 413 and json.loads(too_big.body)["code"] == "FileTooLarge"
        message = await fails(dep, "files:storeText", {"text": "x" * 11}, "action")
        assert "Uncaught Error: The file is 11 bytes; files may be at most 10 bytes" in message
        # The HTTP body limit of the upload path follows the same knob (checked before reading).
        assert http_api.body_limit(UPLOAD_PATH) == http_api.BODY_LIMITS[UPLOAD_PATH]
        # Digest: checked when sent.
        bad = await upload(dep, b"abc", **{"digest": "sha-256=" + base64.b64encode(b"0" * 32).decode()})
        assert bad.status == 400 and json.loads(bad.body)["code"] == "Sha256Mismatch"
        good = await upload(dep, b"abc", **{"digest": "sha-256=" + base64.b64encode(hashlib.sha256(b"abc").digest()).decode()})
        assert good.status == 200
        # Tokens: valid for an hour, then Convex's expired error; forged ones are refused.
        url = await ok(dep, "files:generateUploadUrl")
        token = re.search(r"token=([^&]+)", url).group(1)
        clock.advance(minutes=59)
        assert (await http_api.handle(dep, HttpRequest("POST", UPLOAD_PATH, {}, {"token": token}, b"1"))).status == 200
        clock.advance(minutes=1)
        late = await http_api.handle(dep, HttpRequest("POST", UPLOAD_PATH, {}, {"token": token}, b"1"))
        assert (late.status, json.loads(late.body)) == (401, {"code": "StorageTokenExpired",
                                                              "message": "Store File Authorization expired"})
        forged = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
        assert (await http_api.handle(dep, HttpRequest("POST", UPLOAD_PATH, {}, {"token": forged}, b"1"))).status == 401
        missing = await http_api.handle(dep, HttpRequest("POST", UPLOAD_PATH, {}, {}, b"1"))
        assert json.loads(missing.body)["code"] == "StorageTokenInvalid"
        # Paths: not a UUID -> Convex's InvalidStoragePath; an unknown UUID -> FileNotFound.
        bad_path = await http_api.handle(dep, HttpRequest("GET", FILES_PREFIX + "not-a-uuid", {}, {}, b""))
        assert bad_path.status == 400 and json.loads(bad_path.body)["code"] == "InvalidStoragePath"
        unknown = await http_api.handle(dep, HttpRequest("GET", FILES_PREFIX + "00000000-0000-4000-8000-000000000000",
                                                         {}, {}, b""))
        assert (unknown.status, json.loads(unknown.body)["code"]) == (404, "FileNotFound")
        # Ranges: one range, open-ended and suffix forms; several or unsatisfiable -> 416.
        sid = json.loads((await upload(dep, b"0123456789")).body)["storageId"]
        file_url = await ok(dep, "files:url", {"storageId": sid}, "query")
        for spec, body in (("bytes=2-4", b"234"), ("bytes=7-", b"789"), ("bytes=-2", b"89"), ("bytes=8-100", b"89")):
            part = await get(dep, file_url, range=spec)
            assert (part.status, part.body) == (206, body), spec
        for spec in ("bytes=20-30", "bytes=0-1,3-4", "items=0-1"):
            assert (await get(dep, file_url, range=spec)).status == 416, spec
    finally:
        await dep.close()


async def test_a_crash_mid_store_leaves_nothing_after_the_restart(tmp_path):
    db = tmp_path / "db.sqlite3"
    dep = await Deployment.open(APP, db, admin_key="k")
    kept = json.loads((await upload(dep, b"committed")).body)["storageId"]
    await dep.close()
    folder = Path(str(db) + ".storage")
    # What a crash leaves: a partial write never renamed, and a whole blob whose rows never committed.
    (folder / ".tmp" / "blob-123.part").write_bytes(b"half a fi")
    (folder / "de").mkdir(exist_ok=True)
    (folder / "de" / "deadbeef-0000-4000-8000-000000000000").write_bytes(b"orphan")
    dep = await Deployment.open(APP, db, admin_key="k")
    try:
        assert list((folder / ".tmp").iterdir()) == []
        assert len(blob_files(db)) == 1
        url = await ok(dep, "files:url", {"storageId": kept}, "query")
        assert (await get(dep, url)).body == b"committed"
    finally:
        await dep.close()


async def test_export_and_import_carry_files_in_convex_layout(tmp_path):
    db = tmp_path / "a.sqlite3"
    dep = await Deployment.open(APP, db, admin_key="k")
    png = os.urandom(5000)
    ids = {"png": json.loads((await upload(dep, png, "image/png")).body)["storageId"],
           "txt": json.loads((await upload(dep, b"hello", "text/plain")).body)["storageId"],
           "raw": json.loads((await upload(dep, b"\x00raw", None)).body)["storageId"]}
    await ok(dep, "files:save", {"name": "logo", "storageId": ids["png"]})
    rows = {row["_id"]: row for row in await ok(dep, "files:rows", {}, "query")}
    await dep.close()

    without = tmp_path / "plain.zip"
    await export_snapshot(db, without)
    assert not any(n.startswith("_storage") for n in zipfile.ZipFile(without).namelist())

    snapshot = tmp_path / "with-files.zip"
    counts = await export_snapshot(db, snapshot, include_file_storage=True)
    assert counts["_storage"] == 3
    with zipfile.ZipFile(snapshot) as zf:
        names = set(zf.namelist())
        assert {f"_storage/{ids['png']}.png", f"_storage/{ids['txt']}.txt", f"_storage/{ids['raw']}"} <= names
        assert not any("_storage_keys" in n for n in names)
        lines = [json.loads(line) for line in zf.read("_storage/documents.jsonl").decode().splitlines()]
        assert zf.read(f"_storage/{ids['png']}.png") == png
        listing = zf.read("_tables/documents.jsonl").decode()
        assert '"_storage"' not in listing
    assert [list(line) for line in lines] == [["_id", "_creationTime", "sha256", "size", "contentType", "internalId"]] * 3
    by_id = {line["_id"]: line for line in lines}
    assert by_id[ids["txt"]]["size"] == 5 and isinstance(by_id[ids["txt"]]["size"], int)
    assert by_id[ids["raw"]]["contentType"] is None
    assert by_id[ids["png"]]["sha256"] == rows[ids["png"]]["sha256"]

    target = tmp_path / "b.sqlite3"
    counts = await import_snapshot(APP, target, snapshot)
    assert counts["_storage"] == 3 and counts["files"] == 1
    dep = await Deployment.open(APP, target, admin_key="k")
    try:
        assert {row["_id"]: row for row in await ok(dep, "files:rows", {}, "query")} == rows
        url = await ok(dep, "files:url", {"storageId": ids["png"]}, "query")
        served = await get(dep, url)
        assert served.body == png and dict(served.headers)["content-type"] == "image/png"
        assert len(blob_files(target)) == 3
    finally:
        await dep.close()

    # A ZIP whose bytes do not match the line is refused, and leaves nothing behind.
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(snapshot) as src, zipfile.ZipFile(broken, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, b"tampered" if name == f"_storage/{ids['txt']}.txt" else data)
    with pytest.raises(Exception) as info:
        await import_snapshot(APP, tmp_path / "c.sqlite3", broken)
    assert "do not match its size and sha256" in str(info.value)
    assert blob_files(tmp_path / "c.sqlite3") == set()


@pytest.mark.slow
def test_kill_9_during_an_upload_leaves_no_half_file_and_no_row(server_factory):
    server = server_factory(APP)
    url = httpx.post(f"{server.url}/api/mutation", json={"path": "files:generateUploadUrl", "args": {}}).json()["value"]
    path = url.split(server.url, 1)[1]
    size = 8 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Length: {size}\r\n\r\n".encode())
        sock.sendall(os.urandom(size // 2))  # half the body is on its way ...
        server.kill()  # ... when the server dies
    server.start()
    rows = httpx.post(f"{server.url}/api/query", json={"path": "files:rows", "args": {}}).json()["value"]
    assert rows == []
    folder = Path(str(server.db_path) + ".storage")
    assert blob_files(server.db_path) == set()
    assert list((folder / ".tmp").iterdir()) == []
    # The restarted server still takes uploads.
    url = httpx.post(f"{server.url}/api/mutation", json={"path": "files:generateUploadUrl", "args": {}}).json()["value"]
    r = httpx.post(url, content=b"after the crash", headers={"content-type": "text/plain"})
    assert r.status_code == 200 and len(blob_files(server.db_path)) == 1


@pytest.mark.slow
def test_kill_9_while_the_blob_is_being_written_leaves_no_half_file_and_no_row(server_factory):
    """The upload has arrived whole and its blob is being written (its temporary file exists) when
    the server is killed: after the restart there is no row, no blob and no temporary file, and
    the file uploaded before is intact."""
    server = server_factory(APP, extra_env={"CONVEX_STORAGE_MAX_FILE_BYTES": str(200 * 1024 * 1024)})
    api = f"{server.url}/api/mutation"

    def upload_url() -> str:
        return httpx.post(api, json={"path": "files:generateUploadUrl", "args": {}}).json()["value"]

    kept = httpx.post(upload_url(), content=b"kept", headers={"content-type": "text/plain"}).json()["storageId"]
    tmp = Path(str(server.db_path) + ".storage") / ".tmp"
    assert list(tmp.iterdir()) == []
    url = upload_url()
    payload = os.urandom(96 * 1024 * 1024)
    outcome: dict[str, Any] = {}

    def post() -> None:
        try:
            outcome["response"] = httpx.post(url, content=payload, headers={"content-type": "video/mp4"}, timeout=60)
        except httpx.HTTPError as e:  # the server died under it: expected
            outcome["error"] = e

    sender = threading.Thread(target=post, daemon=True)
    sender.start()
    # Watch for the temporary file of the blob write (a tight loop over one small folder; the
    # write and its fsync of 96 MiB take far longer than one look).
    seen = False
    while sender.is_alive() and not seen:
        with os.scandir(tmp) as entries:
            seen = any(entry.name.endswith(".part") for entry in entries)
    if seen:
        server.kill()
    sender.join(60)
    assert seen, f"the upload finished before its blob write was seen: {outcome}"
    assert "response" not in outcome or outcome["response"].status_code != 200, outcome
    server.start()
    rows = httpx.post(f"{server.url}/api/query", json={"path": "files:rows", "args": {}}).json()["value"]
    assert [row["_id"] for row in rows] == [kept]
    assert list(tmp.iterdir()) == []
    assert len(blob_files(server.db_path)) == 1
    served = httpx.get(httpx.post(f"{server.url}/api/query", json={"path": "files:url", "args": {
        "storageId": kept}}).json()["value"])
    assert served.content == b"kept"


@pytest.mark.slow
def test_npx_convex_export_include_file_storage_against_a_running_server(server_factory, tmp_path):
    """The official CLI's `npx convex export --include-file-storage` gets the files in its layout, and
    `npx convex import` restores them into a running server (ids, bytes, content types)."""
    from test_convex_cli import _project, npx

    server = server_factory(APP)
    url = httpx.post(f"{server.url}/api/mutation", json={"path": "files:generateUploadUrl", "args": {}}).json()["value"]
    storage_id = httpx.post(url, content=b"exported bytes", headers={"content-type": "text/plain"}).json()["storageId"]
    project = _project(tmp_path)
    snapshot = tmp_path / "snapshot.zip"
    done = npx(server, project, "export", "--include-file-storage", "--path", str(snapshot))
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(snapshot) as zf:
        assert zf.read(f"_storage/{storage_id}.txt") == b"exported bytes"
        [line] = [json.loads(x) for x in zf.read("_storage/documents.jsonl").decode().splitlines()]
        assert line["_id"] == storage_id and line["size"] == 14 and line["contentType"] == "text/plain"
    plain = tmp_path / "plain.zip"
    assert npx(server, project, "export", "--path", str(plain)).returncode == 0
    assert not any(n.startswith("_storage") for n in zipfile.ZipFile(plain).namelist())
    # `npx convex import` of that ZIP into a fresh server: the same ids, the bytes served again.
    other = server_factory(APP)
    done = npx(other, project, "import", "--yes", str(snapshot))
    assert done.returncode == 0, done.stderr + done.stdout

    def rows(srv) -> list[dict]:
        return httpx.post(f"{srv.url}/api/query", json={"path": "files:rows", "args": {}}).json()["value"]

    def served(srv, sid: str) -> httpx.Response:
        url = httpx.post(f"{srv.url}/api/query", json={"path": "files:url", "args": {"storageId": sid}}).json()["value"]
        return httpx.get(url)

    assert rows(other) == rows(server)
    response = served(other, storage_id)
    assert response.content == b"exported bytes" and response.headers["content-type"] == "text/plain"
    assert len(blob_files(other.db_path)) == 1
    # Into a deployment that holds files: refused (requireEmpty), nothing written; --replace
    # replaces them (the replaced file's bytes are freed).
    again = npx(other, project, "import", "--yes", str(snapshot))
    assert again.returncode != 0 and "_storage" in again.stderr + again.stdout
    assert len(blob_files(other.db_path)) == 1
    replaced = npx(other, project, "import", "--yes", "--replace", str(snapshot))
    assert replaced.returncode == 0, replaced.stderr + replaced.stdout
    assert served(other, storage_id).content == b"exported bytes" and [r["_id"] for r in rows(other)] == [storage_id]
    assert len(blob_files(other.db_path)) == 1
