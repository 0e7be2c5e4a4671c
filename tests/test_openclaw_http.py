"""The OpenClaw endpoints through a real server process (`python -m engine serve`, site port): exact
status codes for /openclaw/event (401 / 400 / 413 / 422 / 200) and /notifications/deliver (401 /
200, delivering to the fake gateway on loopback), and that a refused request writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from fakes.openclaw_gateway import FakeGateway

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec-3f9a1c7e"
HOOKS_TOKEN = "gw-token-http-test"


@pytest.fixture
def gateway():
    with FakeGateway(token=HOOKS_TOKEN) as gw:
        yield gw


@pytest.fixture
def server(server_factory, gateway):
    return server_factory(REPO_ROOT, extra_env={
        "NOVA_AGENT_TENANT": "default", "NOVA_LOCAL_TENANT": "",
        "OPENCLAW_WEBHOOK_SECRET": SECRET, "OPENCLAW_EVENT_MAX_BYTES": "4096",
        "OPENCLAW_GATEWAY_URL": gateway.url, "OPENCLAW_HOOKS_TOKEN": HOOKS_TOKEN,
        "OPENCLAW_GATEWAY_TIMEOUT_SECONDS": "2",
    })


def admin_call(server, kind: str, path: str, args: dict | None = None):
    response = httpx.post(f"{server.url}/api/{kind}", json={"path": path, "args": args or {}, "format": "json"},
                          headers={"Authorization": f"Convex {server.admin_key}"}, timeout=10)
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    return body["value"]


def event(server, body: object | None = None, *, token: str | None = SECRET, raw: bytes | None = None,
          headers: dict[str, str] | None = None) -> httpx.Response:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    data = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(f"{server.site_url}/openclaw/event", content=data, headers=hdrs, timeout=10)


START = {"runId": "srv-1", "action": "start", "sessionKey": "agent:developer:main", "prompt": "Ship the hook",
         "timestamp": "2026-03-02T08:00:00.000Z", "eventType": "lifecycle:start", "source": "webchat"}


def test_event_status_codes_and_nothing_written_on_refusal(server):
    admin_call(server, "mutation", "seed:run")
    board_before = admin_call(server, "query", "tasks:board")

    cases = [
        (dict(body=START, token=None), 401, "UNAUTHORIZED"),
        (dict(body=START, token="nope"), 401, "UNAUTHORIZED"),
        (dict(raw=b'{"runId": "srv-1", "action": '), 400, "INVALID_JSON"),
        (dict(body={**START, "action": "explode"}), 400, "UNKNOWN_ACTION"),
        (dict(body={k: val for k, val in START.items() if k != "runId"}), 400, "MISSING_RUN_ID"),
        (dict(body={**START, "prompt": "x" * 5000}), 413, "PAYLOAD_TOO_LARGE"),
        (dict(body={"runId": "nobody", "action": "end"}), 422, "UNKNOWN_RUN"),
    ]
    for kwargs, status, code in cases:
        response = event(server, **kwargs)
        assert response.status_code == status, (kwargs, response.text)
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["code"] == code and response.json()["ok"] is False
    assert event(server, START, token=None).headers["www-authenticate"].startswith("Bearer")
    assert admin_call(server, "query", "tasks:board") == board_before
    assert admin_call(server, "query", "activities:list", {"paginationOpts": {"numItems": 50, "cursor": None},
                                                            "type": "agent_started"})["page"] == []

    ok = event(server, START)
    assert ok.status_code == 200 and ok.json()["ok"] is True and ok.json()["duplicate"] is False
    assert event(server, START).json()["duplicate"] is True
    progress = {"runId": "srv-1", "action": "progress", "sessionKey": "agent:developer:main",
                "timestamp": "2026-03-02T08:00:05.000Z", "eventType": "tool:start", "message": "🔧 Using tool: write"}
    assert event(server, progress).status_code == 200
    end = {"runId": "srv-1", "action": "end", "sessionKey": "agent:developer:main",
           "timestamp": "2026-03-02T08:01:00.000Z", "eventType": "lifecycle:end", "response": "Shipped"}
    assert event(server, end).status_code == 200
    stream = admin_call(server, "query", "agentStream:getRun", {"runId": "srv-1"})
    assert stream["status"] == "completed" and stream["durationMs"] == 60_000
    assert [c["content"] for c in stream["chunks"]] == ["🔧 Using tool: write", "Shipped"]
    board = admin_call(server, "query", "tasks:board")
    assert [t["title"] for t in board["review"]] == ["Ship the hook"]
    # The API port serves the same route under /http.
    again = httpx.post(f"{server.url}/http/openclaw/event", json=end,
                       headers={"Authorization": f"Bearer {SECRET}"}, timeout=10)
    assert again.status_code == 200 and again.json()["duplicate"] is True


def test_notifications_deliver_needs_the_admin_key_and_delivers(server, gateway):
    squad = {a["name"]: a["_id"] for a in (admin_call(server, "mutation", "seed:run") and
                                           admin_call(server, "query", "agents:list"))}
    task_id = admin_call(server, "mutation", "tasks:create", {"title": "Deliver me", "assigneeIds": [squad["Shuri"]]})
    url = f"{server.site_url}/notifications/deliver"
    assert httpx.post(url, timeout=10).status_code == 401
    assert httpx.post(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    response = httpx.post(url, headers={"Authorization": f"Bearer {server.admin_key}"}, timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ok"] is True and body["configured"] is True and body["failed"] == 0
    sent = [c for c in gateway.agent_calls() if (c.idempotency_key or "").startswith("nova-notification-")]
    # The minute cron may have delivered it first; either way exactly once, with the hook token.
    assert len(sent) == 1 and sent[0].bearer == HOOKS_TOKEN
    assert sent[0].body["sessionKey"] == "agent:product:main" and task_id in sent[0].body["message"]
    notes = admin_call(server, "query", "notifications:list", {"recipientId": squad["Shuri"], "recipientType": "agent"})
    assert [(n["sourceId"], n["delivered"]) for n in notes] == [(task_id, True)]
