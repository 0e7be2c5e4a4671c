"""Conformance with the official npm client (convex 1.48.0 on Node 20) over the WebSocket sync protocol:
`ConvexClient` from "convex/browser" and `BaseConvexClient` with the `ws` constructor, driven by
tests/js/sync_client.mjs (one scenario per test) and tests/js/sync_restart.mjs (a client kept alive
while the server restarts and crashes under it).

ConvexReactClient is not covered: importing "convex/react" needs the `react` package, which
tests/js does not install (BaseConvexClient is the same sync client underneath).
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import shutil
import subprocess
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

APP = Path(__file__).resolve().parent / "apps" / "sync"
JS_DIR = Path(__file__).resolve().parent / "js"
_spec = importlib.util.spec_from_file_location("sync_app_auth_config_js", APP / "auth_config.py")
auth_config = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(auth_config)  # type: ignore[union-attr]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(shared_server_factory: Any) -> Any:
    return shared_server_factory(APP)


def scenario(run_node: Any, server: Any, name: str, env: dict[str, str] | None = None) -> dict:
    out = run_node("sync_client", server.url, name, env=env, timeout=120)
    assert out["ok"], out.get("error")
    return out["value"]


def test_subscriptions_mutations_and_actions(run_node, server):
    out = scenario(run_node, server, "basic")
    # A's subscription saw B's writes, its own, and the action's (each value once).
    assert out["values"] == [None, 1, 5, 6, 7, 8]
    assert (out["fromB"], out["fromA"], out["query"], out["viaAction"]) == (1, 6, 6, 8)
    # The mutation promise resolved only once A's local query showed its own write.
    assert out["seenWhenResolved"] == 6
    assert out["action"] == {"x": 1, "big": {"$bigint": "5"}}
    assert out["seqs"] == [0, 1, 2] and out["events"] == ["a", "b", "c"]


def test_errors_reach_the_client_with_their_data(run_node, server):
    out = scenario(run_node, server, "errors")
    for key, prefix in (("mutation", "[CONVEX M(errors:convexMutation)]"), ("action", "[CONVEX A(errors:convexAction)]"),
                        ("query", "[CONVEX Q(errors:convexQuery)]")):
        assert out[key]["isConvexError"] is True, out[key]
        assert out[key]["data"] == {"code": "BAD", "n": {"$bigint": "1"}}
        assert out[key]["message"].startswith(prefix)
    for key, text in (("plainMutation", "plain mutation boom"), ("plainQuery", "plain query boom")):
        assert out[key]["isConvexError"] is False and text in out[key]["message"]
    first, last = out["subscription"][0], out["subscription"][-1]
    assert first["error"]["isConvexError"] and first["error"]["data"] == {"negative": -3}
    assert last == {"value": 2}


def test_set_auth_confirms_a_real_jwt_and_refuses_a_bad_one(run_node, server):
    token = auth_config.sign_token("linus", name="Linus")
    bad = auth_config.sign_token("linus", aud="not-this-app")
    out = scenario(run_node, server, "auth", env={"ENGINE_TOKEN": token, "ENGINE_BAD_TOKEN": bad})
    identity = {"tokenIdentifier": f"{auth_config.ISSUER}|linus", "subject": "linus",
                "issuer": auth_config.ISSUER, "name": "Linus"}
    assert out["changes"][0] is True and False not in out["changes"]
    assert out["who"] == identity and out["viaAction"] == identity
    assert out["badChanges"] == [False] and out["fetches"] >= 1
    assert out["afterRefusal"] is None


def test_base_client_with_the_ws_constructor(run_node, server):
    out = scenario(run_node, server, "base")
    assert out["initial"] is None and out["result"] == 2 and out["atResolve"] == 2
    assert out["action"] == 9 and out["connected"] is True and out["updates"] >= 3


def test_react_client_watch_query_follows_mutations(run_node, server):
    out = run_node("react_client", server.url, timeout=60)
    assert out["first"] == 1 and out["second"] == 2
    # The watch ends at the last value; every value it saw is one the counter really had, in order.
    values = [0 if v is None else v for v in out["seen"] if v != "loading"]
    assert values[-1] == 2 and values == sorted(values)
    assert set(values) <= {0, 1, 2}


def test_paginated_queries_stay_gapless_under_concurrent_writes(run_node, server):
    out = scenario(run_node, server, "paginated")
    assert out["problems"] == []
    assert [c["ok"] for c in out["comparisons"]] == [True] * len(out["comparisons"])
    assert out["comparisons"][-1]["status"] == "Exhausted"
    assert out["finalCount"] == out["comparisons"][-1]["total"]


# --- a client living through a restart and a crash ---------------------------------------------------


class NodeProcess:
    """A Node script spoken to line by line (JSON lines out, words in), with timeouts on every read."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(["node", *args], cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        threading.Thread(target=self._pump_err, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def expect(self, step: str, timeout: float = 60) -> dict:
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"node said nothing for {timeout}s (waiting for {step!r})\n{''.join(self.stderr)}")
        if line is None:
            pytest.fail(f"node exited (waiting for {step!r})\n{''.join(self.stderr)}")
        msg = json.loads(line)
        if msg.get("step") != step:
            pytest.fail(f"expected step {step!r}, got {msg}\n{''.join(self.stderr)}")
        return msg

    def tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def test_a_client_resumes_after_a_restart_and_a_crash_without_duplicating_mutations(server_factory):
    if shutil.which("node") is None or not (JS_DIR / "node_modules" / "convex").is_dir():
        pytest.fail("node and tests/js/node_modules are needed: run `tests/run` (or `npm ci --prefix tests/js`)")
    server = server_factory(APP)
    name = f"restart-{uuid.uuid4().hex[:8]}"
    node = NodeProcess("sync_restart.mjs", server.url, name)
    try:
        assert node.expect("ready")["values"] == [None, 1]
        node.tell("go")
        node.expect("inflight")
        server.restart()  # SIGTERM while a slow mutation may be running
        node.tell("restarted")
        assert node.expect("resumed")["values"][-1] == 3
        node.tell("go")
        node.expect("inflight")
        server.kill()  # a crash: whatever was in flight either committed or did not
        node.tell("killed")
        node.expect("queued")
        server.start()
        node.tell("started")
        done = node.expect("done")
        assert done["ok"], done.get("error")
        assert done["results"] == [1, 2, 3, 4, 5] and done["query"] == 5
        assert done["values"][-1] == 5 and done["connectionCount"] >= 3
    finally:
        node.stop()
    # Exactly five increments were applied, whatever was retried.
    response = httpx.post(f"{server.url}/api/query", timeout=10,
                          json={"path": "counters:get", "args": {"name": name}, "format": "json"})
    assert response.json() == {"status": "success", "value": 5}
