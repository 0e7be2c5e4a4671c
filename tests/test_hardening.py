"""What no client may do to a running server (issue 9): push the commit clock, crash a route with
deep nesting or a huge body, share its database with a second process, or freeze it with a
function that never returns. Real server processes, real sockets.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from conftest import REPO_ROOT, free_port
from test_sync_protocol import APP, Conn, ts_text, ts_value, unique

pytestmark = pytest.mark.slow

INT64_MAX = 2**63 - 1
DEEP = 10_000  # levels of nesting the issue reported as a 500


def _ts(value: int) -> str:
    return base64.b64encode(struct.pack("<Q", value)).decode()


def _increment(server, name: str) -> dict:
    r = httpx.post(f"{server.url}/api/mutation", json={"path": "counters:increment", "args": {"name": name},
                                                      "format": "json"}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def _commit_ts(server) -> int:
    r = httpx.post(f"{server.url}/api/query_ts", json={}, timeout=30)
    return struct.unpack("<Q", base64.b64decode(r.json()["ts"]))[0]


# --- the commit clock ---------------------------------------------------------------------------


@pytest.mark.parametrize("observed", ["/////////38=", _ts(INT64_MAX - 2), _ts(2**62)])
async def test_an_anonymous_connect_frame_cannot_move_the_clock(server_factory, observed):
    """The reported frames: maxObservedTimestamp 2^63-1 (the client's little-endian base64), 2^63-3
    and 2^62 on an unauthenticated socket. Every later commit, on every connection and after a
    restart, still succeeds with a timestamp close to now."""
    server = server_factory(APP)
    assert observed != "/////////38=" or ts_value(observed) == INT64_MAX
    conn = await Conn.open(server, max_observed=observed)
    try:
        [q] = await conn.add(("counters:get", {"name": "x"}))
        await conn.settle_query_set()
    finally:
        await conn.close()
    for _ in range(3):
        assert _increment(server, "after")["status"] == "success"
    assert abs(_commit_ts(server) - time.time_ns()) < 60 * 10**9
    server.restart()
    assert _increment(server, "after")["value"] == 4.0
    assert abs(_commit_ts(server) - time.time_ns()) < 60 * 10**9


async def test_query_at_a_future_ts_is_refused_and_moves_nothing(server_factory):
    server = server_factory(APP)
    _increment(server, "q")
    r = httpx.post(f"{server.url}/api/query_at_ts", json={"path": "counters:get", "args": {"name": "q"},
                                                         "ts": _ts(INT64_MAX), "format": "json"})
    assert r.status_code == 400 and r.json()["code"] == "InvalidTimestamp"
    assert _increment(server, "q")["status"] == "success"
    assert abs(_commit_ts(server) - time.time_ns()) < 60 * 10**9


def test_a_database_whose_stored_clock_is_far_ahead_still_takes_writes(server_factory):
    """A high-water mark written by an engine that trusted client timestamps (2^63-3: two commits
    from overflowing). After the upgrade the server starts, sets its clock back to now (saying so
    in its log) and keeps taking writes."""
    server = server_factory(APP)
    _increment(server, "ahead")
    server.stop()
    db = sqlite3.connect(server.db_path)
    db.execute("UPDATE meta SET v = ? WHERE k = 'ts'", (INT64_MAX - 2,))
    db.commit()
    db.close()
    server.start()
    for _ in range(5):
        response = _increment(server, "ahead")
        assert response["status"] == "success", response
    assert response["value"] == 6.0
    assert abs(_commit_ts(server) - time.time_ns()) < 60 * 10**9
    assert "days ahead of this machine's clock" in server.log_path.read_text()


# --- deep nesting -------------------------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _deep_args(depth: int) -> str:
    return '{"x": ' + _nested(depth) + "}"


@pytest.mark.parametrize("depth", [DEEP, 100])
def test_deep_nesting_is_a_4xx_naming_the_limit_on_every_api_route(shared_server_factory, depth):
    server = shared_server_factory(APP)
    deep = _deep_args(depth)
    admin = {"Authorization": f"Convex {server.admin_key}"}
    bodies = {
        "/api/query": f'{{"path": "counters:get", "args": {deep}}}',
        "/api/mutation": f'{{"path": "counters:increment", "args": {deep}}}',
        "/api/action": f'{{"path": "actions:echo", "args": {deep}}}',
        "/api/function": f'{{"path": "counters:get", "args": {deep}}}',
        "/api/query_batch": f'{{"queries": [{{"path": "counters:get", "args": {deep}}}]}}',
        "/api/query_at_ts": f'{{"path": "counters:get", "args": {deep}, "ts": "{_ts(1)}"}}',
        "/api/run/counters/get": f'{{"args": {deep}}}',
    }
    for path, body in bodies.items():
        r = httpx.post(server.url + path, content=body.encode(), headers={"content-type": "application/json", **admin})
        assert r.status_code == 400, (path, r.status_code, r.text[:300])
        assert r.json()["code"] == "TooNestedError", (path, r.text[:300])
        assert "maximum nesting 64" in r.json()["message"], path
    r = httpx.get(f"{server.url}/api/query", params={"path": "counters:get", "args": deep})
    assert r.status_code == 400 and r.json()["code"] == "TooNestedError"
    # Still serving.
    assert httpx.post(f"{server.url}/api/query", json={"path": "counters:get", "args": {"name": "n"}}).status_code == 200


def test_sixty_four_levels_are_fine(shared_server_factory):
    server = shared_server_factory(APP)
    r = httpx.post(f"{server.url}/api/action", content=f'{{"path": "actions:echo", "args": {{"x": {_nested(63)}}}}}'.encode())
    assert r.status_code == 200 and r.json()["status"] == "success"


async def test_a_deeply_nested_sync_frame_ends_only_that_connection(shared_server_factory):
    server = shared_server_factory(APP)
    conn = await Conn.open(server)
    raw = '{"type": "Mutation", "requestId": 0, "udfPath": "counters:increment", "args": [' + _deep_args(DEEP) + "]}"
    await conn.ws.send(raw)
    _, _, frames = await conn.closed()
    assert any(f["type"] == "FatalError" and "too nested" in f["error"] for f in frames), frames
    other = await Conn.open(server)
    try:
        response, _ = await other.call_mutation("counters:increment", {"name": unique()})
        assert response["success"]
    finally:
        await other.close()


def test_deep_nesting_on_the_apps_site_routes_is_a_4xx(app_server):
    server = app_server
    admin = {"Authorization": f"Convex {server.admin_key}"}
    for path, headers in (("/voice/token", {"Authorization": "Bearer x"}), ("/standup/send", admin),
                          ("/openclaw/event", {})):
        r = httpx.post(server.site_url + path, content=_nested(DEEP).encode(),
                       headers={"content-type": "application/json", **headers})
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text[:300])
        assert "code" in r.json() and "nested too deeply" in r.text and "1000 levels" in r.text, (path, r.text[:300])


@pytest.fixture
def app_server(server_factory):
    """The Nova Command app itself (the repo root), as `serve` runs it."""
    return server_factory(REPO_ROOT, extra_env={"LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s" * 32,
                                                "LIVEKIT_URL": "ws://127.0.0.1:1"})


# --- oversized bodies -----------------------------------------------------------------------------


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _post_raw(port: int, path: str, size: int, *, chunked: bool) -> tuple[int, dict]:
    """POST `size` bytes (1 MiB pieces, from a thread) while reading the answer as it comes: the
    status and the JSON body. A connection reset instead of an answer fails the test."""
    import threading

    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    head = f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
    head += "transfer-encoding: chunked\r\n\r\n" if chunked else f"content-length: {size}\r\n\r\n"
    piece = b"[" * (1 << 20)

    def send() -> None:
        try:
            sock.sendall(head.encode())
            for _ in range(size // len(piece)):
                sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            if chunked:
                sock.sendall(b"0\r\n\r\n")
        except OSError:  # the server stopped reading once it had answered: expected
            pass

    sender = threading.Thread(target=send)
    sender.start()
    received = b""
    try:
        while b"\r\n\r\n" not in received or len(received.split(b"\r\n\r\n", 1)[1]) < _length(received):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    finally:
        sender.join()
        sock.close()
    head_bytes, _, body = received.partition(b"\r\n\r\n")
    assert head_bytes.startswith(b"HTTP/1.1 "), received[:200]
    return int(head_bytes.split()[1]), json.loads(body[:_length(received)])


def _length(received: bytes) -> int:
    for line in received.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 30


@pytest.mark.parametrize("chunked", [False, True])
def test_oversized_bodies_get_a_readable_413_on_every_route_and_memory_stays_flat(app_server, chunked):
    server = app_server
    api_port = int(server.url.rsplit(":", 1)[1])
    site_port = int(server.site_url.rsplit(":", 1)[1])
    before = _rss_kib(server.proc.pid)
    targets = [(api_port, "/api/mutation"), (api_port, "/api/query"), (api_port, "/api/action"),
               (api_port, "/api/run/tasks/board"), (site_port, "/voice/token"), (site_port, "/standup/send")]
    for port, path in targets:
        for size in (21 << 20, 100 << 20):  # HTTP actions take up to 20 MiB, the API 16
            status, body = _post_raw(port, path, size, chunked=chunked)
            assert status == 413 and body["code"] == "PayloadTooLarge", (path, size, status, body)
            assert "exceeds the limit of" in body["message"]
    growth = _rss_kib(server.proc.pid) - before
    assert growth < 32 * 1024, f"RSS grew {growth} KiB over ~700 MiB of refused bodies"
    assert httpx.get(f"{server.url}/version").status_code == 200


def test_a_body_just_under_the_limit_is_still_taken(app_server):
    # 16 MiB of arguments is Convex's limit: an (invalid) body of that size gets a function-level answer.
    r = httpx.post(f"{app_server.url}/api/query", content=b" " * (16 << 20), timeout=60)
    assert r.status_code == 400 and r.json()["code"] == "BadJsonBody"


# --- one process per database --------------------------------------------------------------------


def test_a_second_serve_on_the_same_database_exits_naming_the_holder(shared_server_factory, tmp_path):
    server = shared_server_factory(APP)
    env = {**os.environ, "CONVEX_ADMIN_KEY": server.admin_key}
    done = subprocess.run([sys.executable, "-m", "engine", "serve", "--app", str(APP), "--db", str(server.db_path),
                           "--port", str(free_port()), "--site-port", str(free_port())],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 1, done
    assert "is in use by another engine process" in done.stderr
    assert f"pid {server.proc.pid}" in done.stderr and f"serving {server.url}" in done.stderr
    assert _increment(server, "still")["status"] == "success"


# --- execution limits ----------------------------------------------------------------------------


async def test_a_spinning_query_is_stopped_and_a_live_subscriber_keeps_being_served(shared_server_factory):
    """`while True: pass` in a query: it fails after Convex's 1 s with Convex's text; a subscriber on
    another socket gets the Transition for a mutation made meanwhile, and the server stays up."""
    server = shared_server_factory(APP)
    name = unique()
    watcher = await Conn.open(server)
    writer = await Conn.open(server)
    try:
        [q] = await watcher.add(("counters:get", {"name": name}))
        await watcher.settle_query_set()
        spin = asyncio.get_running_loop().run_in_executor(
            None, lambda: httpx.post(f"{server.url}/api/query", json={"path": "limits:spin", "args": {}}, timeout=30))
        response, _ = await writer.call_mutation("counters:increment", {"name": name})
        assert response["success"]
        await watcher.until(lambda m: m["type"] == "Transition" and watcher.value(q) == 1.0, timeout=10)
        answer = await spin
        assert answer.status_code == 200 and answer.json()["status"] == "error"
        assert answer.json()["errorMessage"].endswith("Function execution timed out (maximum duration: 1s)\n")  # every error text ends in a newline, as Convex's
    finally:
        await watcher.close()
        await writer.close()


def test_a_mutation_past_its_limit_writes_nothing(shared_server_factory):
    server = shared_server_factory(APP)
    name = unique()
    r = httpx.post(f"{server.url}/api/mutation", json={"path": "limits:writeThenSpin", "args": {"name": name}}, timeout=30)
    assert r.json()["status"] == "error" and "Function execution timed out (maximum duration: 1s)" in r.json()["errorMessage"]
    r = httpx.post(f"{server.url}/api/query", json={"path": "counters:get", "args": {"name": name}})
    assert r.json() == {"status": "success", "value": None}


def test_actions_that_never_return_or_never_yield_are_stopped(server_factory):
    server = server_factory(APP, extra_env={"NODE_ACTION_USER_TIMEOUT_SECS": "2", "ENGINE_ACTION_STEP_TIMEOUT_SECS": "1"})
    r = httpx.post(f"{server.url}/api/action", json={"path": "limits:forever", "args": {}}, timeout=30)
    assert r.json()["status"] == "error"
    assert r.json()["errorMessage"].endswith("Function execution timed out (maximum duration: 2s)\n")
    r = httpx.post(f"{server.url}/api/action", json={"path": "limits:spinAction", "args": {}}, timeout=30)
    assert r.json()["status"] == "error" and "without awaiting" in r.json()["errorMessage"]
    assert _increment(server, "alive")["status"] == "success"


async def test_an_action_in_flight_does_not_keep_the_server_from_stopping(server_factory):
    server = server_factory(APP)  # Convex's 10 minutes
    conn = await Conn.open(server)
    await conn.send({"type": "Action", "requestId": 0, "udfPath": "limits:forever", "args": [{}]})
    started = time.monotonic()
    server.proc.send_signal(__import__("signal").SIGTERM)
    code = await asyncio.get_running_loop().run_in_executor(None, lambda: server.proc.wait(timeout=30))
    assert code == 0 and time.monotonic() - started < 15
    await conn.close()



