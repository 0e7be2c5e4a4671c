"""The dashboard at /dashboard, driven in headless Chromium (Debian's, through playwright-core).

The Nova Command app serves; another client (the npm ConvexHttpClient) inserts a task while the
dashboard shows the table, and the row appears through the engine's sync; the test then edits and
deletes it, runs a function and finds its execution in the logs, and visits every page, taking a
screenshot of each (the README's pictures: `DASHBOARD_SCREENSHOTS=docs/dashboard` writes them there;
the Schedules one is taken where a scheduled function is canceled, beside cron jobs).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import JS_DIR, REPO_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
PAGES = ["login", "data", "document", "functions", "logs", "schedules", "environment", "schema"]


def _browser(script: str, *args: str) -> dict:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: tests/run installs Debian's chromium (apt-get install chromium)")
    done = subprocess.run(["node", str(JS_DIR / script), *args], cwd=JS_DIR, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, f"{script} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_dashboard_end_to_end(server_factory, tmp_path):
    server = server_factory(REPO_ROOT, extra_env={"NOVA_LOCAL_TENANT": "default", "NOVA_AGENT_TENANT": "default"})
    seeded = subprocess.run([sys.executable, "-m", "engine", "run", "seed:run", "--url", server.url,
                             "--admin-key", server.admin_key], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60)
    assert seeded.returncode == 0, seeded.stderr
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)

    seen = _browser("dashboard.mjs", server.url, server.admin_key, str(shots))

    assert seen["consoleErrors"] == []
    assert seen["wrongKey"] == "That admin key is not valid for this deployment."
    assert seen["loggedIn"] is True
    # The row another client inserted appeared while the table was open, newest first.
    assert seen["rowsAfter"] == seen["rowsBefore"] + 1
    assert "Inserted by another client" in seen["liveRow"]
    assert seen["firstRowId"] is not None and seen["liveRow"].startswith(seen["firstRowId"])
    # The edit went through the committer (the app reads it back), and a refused one did not.
    assert seen["editedTitle"] == "Edited in the dashboard"
    assert "SchemaValidationError" in seen["refusedEdit"] and "priority" in seen["refusedEdit"]
    assert seen["titleAfterRefusal"] == "Edited in the dashboard"
    assert seen["deleted"] is True
    # The function runner ran tasks:board, and its execution is in the log (system functions are not).
    assert seen["signature"].startswith('args: {}\nreturns: { assigned: { _creationTime: number; _id: Id<"tasks">;')
    assert sorted(seen["runResult"]) == ["assigned", "blocked", "done", "in_progress", "inbox", "review"]
    assert sorted(t["title"] for t in seen["runResult"]["inbox"]) == ["Edited in the dashboard", "Welcome the squad"]
    when, kind, function, status, duration, request_id, lines = seen["logRow"].split("\t")
    assert (kind, function, status, lines) == ("Query", "tasks:board", "success", "")
    assert duration.endswith(" ms") and len(request_id) == 16
    assert seen["logHasSystemFunctions"] == 0
    printed = "days: deleted 0 agent streams (0 chunks) and 0 read notifications"  # maintenance:cleanup's print
    assert printed in seen["runnerLogLines"]
    when, kind, function, status, duration, request_id, lines = seen["printingLogRow"].split("\t")
    assert (kind, function, status) == ("Action", "maintenance:cleanup", "success") and printed in lines
    assert sorted(seen["crons"]) == sorted(["agent heartbeats", "deliver agent notifications",
                                            "nightly standup", "weekly cleanup"])
    assert seen["envRow"] == "DASHBOARD_SETTING\tset from the dashboard\tRemove"
    env_file = server.db_path.parent / "env.json"
    assert json.loads(env_file.read_text())["DASHBOARD_SETTING"] == "set from the dashboard"
    assert "by_status" in seen["schemaTasks"]
    assert seen["afterLogout"] == 0
    for name in PAGES:
        if name != "schedules":  # taken by the next test, with scheduled functions to cancel
            assert (shots / f"{name}.png").stat().st_size > 10_000, name


CRONS = """
from engine import cron_jobs

crons = cron_jobs()
crons.hourly("hourly tick", {"minuteUTC": 0}, "ticks:tick", {"tag": "hourly"})
crons.daily("nightly report", {"hourUTC": 2, "minuteUTC": 30}, "ticks:tick", {"tag": "nightly"})
"""


def test_the_dashboard_cancels_a_scheduled_function(server_factory, tmp_path):
    # The scheduling test app, with two cron jobs: the Schedules page's picture shows both lists.
    app = tmp_path / "sched"
    shutil.copytree(REPO_ROOT / "tests" / "apps" / "sched", app, ignore=shutil.ignore_patterns("__pycache__", "data"))
    (app / "crons.py").write_text(CRONS)
    server = server_factory(app)

    def schedule(delay: int, tag: str) -> str:
        r = httpx.post(f"{server.url}/api/mutation", json={"path": "jobs:schedule", "args": {"delay": delay, "tag": tag}})
        assert r.json()["status"] == "success", r.json()
        return r.json()["value"]

    done_id = schedule(0, "now")
    kept_id = schedule(7_200_000, "in two hours")
    job_id = schedule(3_600_000, "in an hour")
    shots = Path(os.environ.get("DASHBOARD_SCREENSHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    seen = _browser("dashboard_cancel.mjs", server.url, server.admin_key, job_id, done_id, str(shots))
    assert seen == {"before": "pending", "after": "canceled", "cancelButtons": 0, "ran": "success",
                    "crons": ["hourly tick", "nightly report"]}
    r = httpx.post(f"{server.url}/api/query", json={"path": "jobs:job", "args": {"id": job_id}})
    assert r.json()["value"]["state"]["kind"] == "canceled"
    r = httpx.post(f"{server.url}/api/query", json={"path": "jobs:job", "args": {"id": kept_id}})
    assert r.json()["value"]["state"]["kind"] == "pending"  # only the one canceled
    assert (shots / "schedules.png").stat().st_size > 10_000


def test_the_dashboard_page_is_served_and_its_data_needs_the_key(server_factory):
    server = server_factory("basic")
    page = httpx.get(f"{server.url}/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="login-form"' in page.text
    for asset, kind in (("app.js", "text/javascript"), ("sync.js", "text/javascript"), ("style.css", "text/css")):
        r = httpx.get(f"{server.url}/dashboard/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind), asset
    assert httpx.get(f"{server.url}/dashboard/../engine/cli.py").status_code == 404
    assert httpx.get(f"{server.url}/dashboard/nothing.js").status_code == 404
    # Without the admin key the system functions behind the page do not exist for the caller.
    r = httpx.post(f"{server.url}/api/query", json={"path": "_system/dashboard/overview", "args": {}})
    assert r.json()["status"] == "error" and "needs the admin key" in r.json()["errorMessage"]
    r = httpx.post(f"{server.url}/api/mutation", json={"path": "_system/dashboard/documents:remove",
                                                       "args": {"ids": []}})
    assert r.json()["status"] == "error"


def test_screenshots_in_the_readme_exist():
    readme = (REPO_ROOT / "README.md").read_text()
    for name in PAGES:
        assert f"docs/dashboard/{name}.png" in readme, name
        assert (REPO_ROOT / "docs" / "dashboard" / f"{name}.png").exists(), name
    assert shutil.which("node")
