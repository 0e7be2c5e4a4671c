"""First contact: what a newcomer does in the first minutes works as the README says.

The README's two client snippets run as written (only the port differs) against the server started
the way the README's set-up line starts it; `run` and `logs` find the admin key a server wrote
beside any `--db`; mistakes get one line, not a traceback; output piped into `head` ends quietly;
`run` prints numbers and emoji the way `npx convex run` does; `data` lists newest first.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import APPS_DIR, JS_DIR, REPO_ROOT, ServerProcess

README = (REPO_ROOT / "README.md").read_text()


def _engine(*argv: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "CONVEX_ADMIN_KEY"}
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO_ROOT, env={**environ, **(env or {})},
                          capture_output=True, text=True, timeout=120, **kw)


def _readme_setup() -> tuple[dict[str, str], str, str]:
    """(environment of the README's serve line, its JS snippet, its Python snippet)."""
    blocks = re.findall(r"```(\w+)\n(.*?)```", README, re.S)
    setup = blocks[0][1]
    serve_line = next(line for line in setup.splitlines() if "-m engine serve" in line)
    env = dict(re.findall(r"(?:^|&& )([A-Z_]+)=(\S+) [^&]*-m engine serve", serve_line))
    js = next(text for lang, text in blocks[1:] if lang == "js")
    py = next(text for lang, text in blocks[1:] if lang == "python")
    return env, js, py


def test_the_readme_setup_serves_the_snippets_that_follow_it(tmp_path):
    env, js, py = _readme_setup()
    assert env == {"NOVA_LOCAL_TENANT": "default"}
    server = ServerProcess(REPO_ROOT, tmp_path / "db.sqlite3", tmp_path / "server.log", extra_env=env)
    server.start()
    try:
        # The Python snippet, as written but for the port.
        done = subprocess.run([sys.executable, "-c", py.replace("http://127.0.0.1:3210", server.url)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "[]"  # a fresh deployment has no agents yet

        # The JS snippet: it subscribes forever; its first printed board is the answer.
        script = tmp_path / "snippet.mjs"
        script.write_text(js.replace("http://127.0.0.1:3210", server.url))
        (tmp_path / "node_modules").symlink_to(JS_DIR / "node_modules", target_is_directory=True)
        proc = subprocess.Popen(["node", str(script)], cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        printed = []
        try:
            for line in proc.stdout:  # console.log of the first board, one field per line
                printed.append(line.rstrip())
                if line.startswith("}"):
                    break
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        assert printed[0] == "{" and printed[-1] == "}", printed
        assert "  inbox: []," in printed and "  done: []," in printed, printed
    finally:
        server.stop()


@pytest.fixture
def keyless_server(tmp_path):
    """A server that generated its own admin key beside `--db DIR/x.sqlite3` (no $CONVEX_ADMIN_KEY)."""
    app = tmp_path / "app"
    shutil.copytree(APPS_DIR / "basic", app, ignore=shutil.ignore_patterns("__pycache__", "data"))
    server = ServerProcess(app, tmp_path / "elsewhere" / "x.sqlite3", tmp_path / "server.log", admin_key="")
    server.start()
    try:
        key_file = tmp_path / "elsewhere" / "admin_key"
        assert key_file.exists() and oct(key_file.stat().st_mode & 0o777) == "0o600"
        server.admin_key = key_file.read_text().strip()
        yield app, server
    finally:
        server.stop()


def test_run_and_logs_find_the_key_the_server_wrote_beside_its_database(keyless_server):
    app, server = keyless_server
    done = _engine("run", "counters:increment", '{"name": "a", "by": 4}', "--url", server.url, "--app", str(app))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "4"  # like `npx convex run`, not 4.0
    # Also with the database named explicitly, from anywhere.
    done = _engine("run", "counters:get", '{"name": "a"}', "--url", server.url,
                   "--db", str(server.db_path))
    assert (done.returncode, done.stdout.strip()) == (0, "4")
    proc = subprocess.Popen([sys.executable, "-m", "engine", "logs", "--url", server.url, "--app", str(app),
                             "--history", "10", "--success"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={k: v for k, v in os.environ.items() if k != "CONVEX_ADMIN_KEY"})
    try:
        line = proc.stdout.readline()
        assert "[CONVEX M(counters:increment)] success in" in line, line + proc.stderr.read()
        assert "[Request ID: " in line
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_run_prints_numbers_and_emoji_as_npx_does(keyless_server):
    app, server = keyless_server
    done = _engine("run", "echo:echo", '{"n": 4, "x": 2.5, "rocket": "🚀 launch", "list": [1, 2]}',
                   "--url", server.url, "--app", str(app))
    assert done.returncode == 0, done.stderr
    assert done.stdout == '{\n  "list": [\n    1,\n    2\n  ],\n  "n": 4,\n  "rocket": "🚀 launch",\n  "x": 2.5\n}\n'


def test_mistakes_are_one_line_errors(tmp_path):
    done = _engine("run", "tasks:list", "--url", "notaurl")
    assert done.returncode == 1
    assert done.stderr == "error: --url must be the server's address, such as http://127.0.0.1:3210; got 'notaurl'\n"
    done = _engine("function-spec", "--app", "/nonexistent")
    assert (done.returncode, done.stderr) == (1, "error: no app folder at /nonexistent\n")
    empty = tmp_path / "empty"
    empty.mkdir()
    done = _engine("serve", "--app", str(empty), "--db", str(tmp_path / "db.sqlite3"), "--port", "0",
                   "--site-port", "0")
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        "is not an app folder: it has none of schema.py, functions/, http_routes.py, crons.py")
    done = _engine("run", "tasks:list", "--url", "http://127.0.0.1:9", "--admin-key", "k")
    assert done.returncode == 1 and done.stderr.startswith("error: cannot reach http://127.0.0.1:9")
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1


def test_output_piped_into_head_ends_quietly():
    done = subprocess.run(f"{sys.executable} -m engine function-spec | head -n 2", shell=True, cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines() == ["[", "  {"]
    assert done.stderr == ""


def test_data_lists_a_table_newest_first_offline_and_from_a_server(keyless_server):
    app, server = keyless_server
    for i in range(3):
        r = httpx.post(f"{server.url}/api/mutation", json={"path": "messages:send",
                                                           "args": {"author": "a", "body": f"m{i}"}})
        assert r.json()["status"] == "success"
    online = _engine("data", "messages", "--url", server.url, "--app", str(app))
    offline = _engine("data", "messages", "--db", str(server.db_path))
    for done in (online, offline):
        assert done.returncode == 0, done.stderr
        assert [line.split('"body": ')[1][:4] for line in done.stdout.splitlines()] == ['"m2"', '"m1"', '"m0"']
    done = _engine("data", "messages", "--db", str(server.db_path), "--order", "asc", "--limit", "1")
    assert '"m0"' in done.stdout and done.stdout.count("\n") == 1

    # Numbers and emoji as `npx convex data` prints them: 4, not 4.0; 🚀, not \ud83d\ude80.
    r = httpx.post(f"{server.url}/api/mutation", json={"path": "counters:increment", "args": {"name": "🚀", "by": 4}})
    assert r.json()["status"] == "success"
    for where in (("--url", server.url, "--app", str(app)), ("--db", str(server.db_path))):
        done = _engine("data", "counters", *where)
        assert done.returncode == 0, done.stderr
        assert '"name": "🚀"' in done.stdout and '"value": 4}' in done.stdout, done.stdout
        done = _engine("data", "counters", "--format", "table", *where)
        header, _, row = done.stdout.splitlines()
        assert row.split(" | ")[header.split(" | ").index("name")].strip() == "🚀"
        assert row.split(" | ")[-1].strip() == "4", done.stdout


def test_a_missing_function_hint_names_our_commands(keyless_server):
    app, server = keyless_server
    done = _engine("run", "nope:nothing", "--url", server.url, "--app", str(app))
    assert done.returncode == 1
    assert "Could not find function for 'nope:nothing'." in done.stderr  # Convex's /api/function wording
    assert "python -m engine dev" in done.stderr and "npx convex dev" not in done.stderr
