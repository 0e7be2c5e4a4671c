"""Nova Command through real servers: the documented seed command, and a live kanban subscription
driven by the official npm `convex` ConvexClient over the WebSocket sync protocol."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parent.parent
# Admin callers act in $NOVA_AGENT_TENANT; fix it so the runner's environment cannot leak in.
SERVER_ENV = {"NOVA_AGENT_TENANT": "default", "NOVA_LOCAL_TENANT": ""}


def engine_run(server, *argv: str) -> object:
    """`python -m engine run ...` against `server`, as the README documents it."""
    done = subprocess.run(
        [sys.executable, "-m", "engine", "run", *argv, "--url", server.url, "--admin-key", server.admin_key],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, f"engine run {argv} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_seed_command_gives_a_living_system(server_factory):
    server = server_factory(REPO_ROOT, extra_env=SERVER_ENV)
    assert engine_run(server, "seed:run") == {"tenantId": "default", "agentsCreated": 4, "channelsCreated": 4}
    assert engine_run(server, "seed:run") == {"tenantId": "default", "agentsCreated": 0, "channelsCreated": 0}
    squad = engine_run(server, "agents:list")
    assert [(a["name"], a["sessionKey"]) for a in squad] == [
        ("Nova", "agent:main:main"), ("Friday", "agent:developer:main"),
        ("Shuri", "agent:product:main"), ("Loki", "agent:content:main")]
    board = engine_run(server, "tasks:board")
    assert [t["title"] for t in board["inbox"]] == ["Welcome the squad"]


def test_live_kanban_through_the_official_client(server_factory, run_node):
    server = server_factory(REPO_ROOT, extra_env=SERVER_ENV)
    engine_run(server, "seed:run")
    result = run_node("app_kanban", server.url, server.admin_key, timeout=90)
    assert result["initialInbox"] == ["Welcome the squad"]
    assert result["columns"] == ["inbox", "assigned", "in_progress", "done"]
    assert result["lastBoard"]["inbox"] == ["Welcome the squad"]
