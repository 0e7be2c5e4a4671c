"""Function logs: the bounded live feed, request ids, `GET /api/logs/stream`, and `python -m engine logs`."""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from engine import logs

REPO_ROOT = Path(__file__).resolve().parent.parent
DEADLINE_S = 20.0


# --- the feed, in process ------------------------------------------------------------------------


def _entry(n: int) -> logs.LogEntry:
    return logs.LogEntry(float(n), "query", "a:b", "rid", "LOG", f"[LOG] {n}")


async def test_a_slow_reader_loses_its_oldest_lines_and_never_blocks_publishers():
    feed = logs.LogFeed(capacity=3)
    slow = feed.subscribe()
    for n in range(10):  # nobody reads: publishing must still return at once
        feed.publish(_entry(n))
    entries, dropped = await slow.get(timeout=0)
    assert [e.line for e in entries] == ["[LOG] 7", "[LOG] 8", "[LOG] 9"]
    assert dropped == 7
    feed.publish(_entry(10))
    assert await slow.get(timeout=0) == ([_entry(10)], 0)
    assert await slow.get(timeout=0) == ([], 0)


async def test_close_wakes_a_waiting_reader_and_unsubscribes():
    feed = logs.LogFeed()
    sub = feed.subscribe()
    waiting = asyncio.ensure_future(sub.get(timeout=None))
    await asyncio.sleep(0)  # let it block
    sub.close()
    assert await waiting == ([], 0)
    feed.publish(_entry(1))
    assert await sub.get(timeout=0) == ([], 0)


async def test_lines_carry_the_function_and_one_request_id_per_call_tree():
    logs.install()
    sub = logs.feed.subscribe()
    try:
        with logs.capture("standups:generate", kind="action", request_id="rid-1") as outer:
            print("outer", 1)
            with logs.capture("standups:load", kind="query") as inner:
                print("inner")
            with logs.capture() as helper:  # no name of its own: keeps the enclosing one
                print("helper")
        entries, _ = await sub.get(timeout=0)
    finally:
        sub.close()
    assert (outer, inner, helper) == (["[LOG] 'outer' 1"], ["[LOG] 'inner'"], ["[LOG] 'helper'"])
    assert [(e.kind, e.path, e.request_id, e.line) for e in entries] == [
        ("action", "standups:generate", "rid-1", "[LOG] 'outer' 1"),
        ("query", "standups:load", "rid-1", "[LOG] 'inner'"),
        ("action", "standups:generate", "rid-1", "[LOG] 'helper'"),
    ]


# --- a real server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(shared_server_factory):
    return shared_server_factory("site")


class _Stream:
    """An open /api/logs/stream response, read as server-sent events."""

    def __init__(self, server, client: httpx.Client) -> None:
        self._cm = client.stream("GET", f"{server.url}/api/logs/stream",
                                 headers={"Authorization": f"Convex {server.admin_key}"},
                                 timeout=httpx.Timeout(DEADLINE_S))
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200
        assert self.response.headers["content-type"] == "text/event-stream; charset=utf-8"
        self._lines = self.response.iter_lines()
        assert next(self._lines) == ": connected"  # subscribed: what happens from now on is delivered

    def next_entry(self, predicate) -> dict:
        for line in self._lines:
            if line.startswith("data: "):
                entry = json.loads(line[len("data: "):])
                if predicate(entry):
                    return entry
        raise AssertionError("the log stream ended")

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def test_the_stream_requires_the_admin_key(site):
    r = httpx.get(f"{site.url}/api/logs/stream")
    assert r.status_code == 401
    assert r.json()["code"] == "Unauthenticated"
    r = httpx.get(f"{site.url}/api/logs/stream", headers={"Authorization": "Convex wrong-key"})
    assert r.status_code == 401
    assert r.json()["code"] == "BadAdminKey"


def test_function_and_http_action_lines_reach_the_stream_and_the_server_log(site):
    with httpx.Client() as client:
        stream = _Stream(site, client)
        try:
            r = client.post(f"{site.url}/api/query", json={"path": "logs:hello", "args": {"tag": "feed-1"}})
            assert r.json()["logLines"] == ["[LOG] 'hello from a function' 'feed-1'"]
            entry = stream.next_entry(lambda e: "feed-1" in e["line"])
            assert {k: entry[k] for k in ("kind", "path", "level", "line")} == {
                "kind": "query", "path": "logs:hello", "level": "LOG",
                "line": "[LOG] 'hello from a function' 'feed-1'"}
            assert len(entry["requestId"]) == 16 and abs(entry["ts"] - time.time()) < 60
            assert f"Q(logs:hello) [Request ID: {entry['requestId']}] [LOG] 'hello from a function' 'feed-1'" \
                in site.log_tail(400)

            client.post(f"{site.url}/api/mutation", json={"path": "logs:warn", "args": {"tag": "feed-2"}})
            entry = stream.next_entry(lambda e: "feed-2" in e["line"])
            assert (entry["kind"], entry["path"], entry["level"], entry["line"]) == (
                "mutation", "logs:warn", "WARN", "[WARN] 'careful feed-2'")

            assert client.get(f"{site.site_url}/noisy", params={"tag": "feed-3"}).status_code == 204
            entry = stream.next_entry(lambda e: "feed-3" in e["line"])
            assert (entry["kind"], entry["path"], entry["line"]) == (
                "http", "GET /noisy", "[LOG] 'http action says hi' 'feed-3'")
        finally:
            stream.close()


def _read_until(proc: subprocess.Popen, stream, needle: str) -> str:
    """Read `stream` (a pipe of `proc`) until `needle` appears, within the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    seen = b""
    fd = stream.fileno()
    while needle.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"{needle!r} not seen before EOF (exit {proc.poll()}); got {seen!r}")
            seen += chunk
    return seen.decode()


def test_logs_command_follows_the_server(site):
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "logs", "--url", site.url, "--admin-key", site.admin_key],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _read_until(proc, proc.stderr, f"Watching logs for {site.url}...")
        httpx.post(f"{site.url}/api/query", json={"path": "logs:hello", "args": {"tag": "cli-tag"}})
        out = _read_until(proc, proc.stdout, "cli-tag")
        assert "[CONVEX Q(logs:hello)] [LOG] 'hello from a function' 'cli-tag'" in out
    finally:
        proc.terminate()
        proc.wait(timeout=DEADLINE_S)
        proc.stdout.close()
        proc.stderr.close()


def test_the_logs_command_needs_an_admin_key(site, tmp_path):
    environ = {k: v for k, v in os.environ.items() if k != "CONVEX_ADMIN_KEY"}
    done = subprocess.run([sys.executable, "-m", "engine", "logs", "--url", site.url, "--admin-key", "nope"],
                          cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=DEADLINE_S)
    assert done.returncode == 1
    assert "error: BadAdminKey" in done.stderr


def test_an_open_stream_does_not_hold_up_shutdown(server_factory):
    server = server_factory("site")
    with httpx.Client() as client:
        stream = _Stream(server, client)
        try:
            server.stop()  # SIGTERM; a graceful exit is 0 (a forced kill after the deadline would be -9)
            assert server.proc.returncode == 0
            with pytest.raises(AssertionError, match="the log stream ended"):
                stream.next_entry(lambda e: True)
        finally:
            stream.close()
