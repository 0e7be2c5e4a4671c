"""The official `npx convex` CLI (the pinned npm `convex` 1.48.0) against real server processes.

Every verb runs as a user runs it: `convex <verb>` in a project folder, pointed at the server by
CONVEX_SELF_HOSTED_URL / CONVEX_SELF_HOSTED_ADMIN_KEY (Convex's self-hosted convention), with a
clean environment (CI=1 keeps the CLI's error reporting off the network). Each call has a deadline,
so a verb that hangs fails the test instead of the suite.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
import zipfile
from pathlib import Path

import httpx
import pytest

from conftest import JS_DIR

pytestmark = pytest.mark.slow

CLI = JS_DIR / "node_modules" / "convex" / "bin" / "main.js"
DEADLINE_S = 60.0


def _project(tmp_path: Path, *, with_functions: bool = False) -> Path:
    """A frontend project folder as `npm create convex` leaves it (package.json naming convex)."""
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    (project / "package.json").write_text(json.dumps(
        {"name": "cli-test", "private": True, "dependencies": {"convex": "1.48.0"}}))
    if with_functions:
        (project / "node_modules").symlink_to(JS_DIR / "node_modules", target_is_directory=True)
        (project / "convex").mkdir()
        (project / "convex" / "tasks.ts").write_text(
            'import { query } from "./_generated/server";\n'
            "export const list = query({ args: {}, handler: async () => [] });\n")
    return project


def _env(server, admin_key: str | None = None) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "HOME": str(Path.home()), "CI": "1", "NO_COLOR": "1",
            "CONVEX_SELF_HOSTED_URL": server.url,
            "CONVEX_SELF_HOSTED_ADMIN_KEY": admin_key or server.admin_key}


def npx(server, project: Path, *args: str, admin_key: str | None = None, input: str | None = None,
        timeout: float = DEADLINE_S) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(["node", str(CLI), *args], cwd=project, env=_env(server, admin_key),
                              input=input, capture_output=True, text=True, timeout=timeout,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"`convex {' '.join(args)}` did not finish within {timeout}s\n"
                    f"stdout:\n{e.stdout}\nstderr:\n{e.stderr}")


def _call(server, kind: str, path: str, args: dict) -> object:
    r = httpx.post(f"{server.url}/api/{kind}", json={"path": path, "args": args, "format": "json"},
                   headers={"Authorization": f"Convex {server.admin_key}"}, timeout=30)
    body = r.json()
    assert body["status"] == "success", body
    return body["value"]


def test_data_lists_tables_and_a_tables_documents_newest_first(server_factory, tmp_path):
    server = server_factory("basic")
    project = _project(tmp_path)
    for i in range(3):
        _call(server, "mutation", "messages:send", {"author": "cli", "body": f"m{i}"})
    done = npx(server, project, "data")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["counters", "messages"]

    done = npx(server, project, "data", "messages", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    docs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [d["body"] for d in docs] == ["m2", "m1", "m0"]  # newest first, like Convex
    assert all(d["_id"] and d["author"] == "cli" for d in docs)

    done = npx(server, project, "data", "messages", "--limit", "2")
    assert done.returncode == 0, done.stderr
    header, rule, *rows = done.stdout.splitlines()
    assert header.split(" | ")[:2] == ["_id                               ", "_creationTime     "] or \
        header.startswith("_id")
    assert len(rows) == 2 and '"m2"' in rows[0] and '"m1"' in rows[1]
    assert "Showing the 2 most recently created documents" in done.stderr

    done = npx(server, project, "data", "nothere")
    assert done.returncode == 0
    assert "There are no documents in this table." in done.stderr


def test_env_set_list_get_remove(server_factory, tmp_path):
    server = server_factory("basic")
    project = _project(tmp_path)
    done = npx(server, project, "env", "set", "GREETING", "hello world")
    assert done.returncode == 0, done.stderr
    assert "Successfully set GREETING" in done.stderr
    done = npx(server, project, "env", "set", "TOKEN", input="s3cret\n")  # the value from stdin
    assert done.returncode == 0, done.stderr
    done = npx(server, project, "env", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["GREETING=hello world", "TOKEN=s3cret"]
    done = npx(server, project, "env", "get", "GREETING")
    assert (done.returncode, done.stdout.strip()) == (0, "hello world")
    # What `env set` wrote is what functions read (the env file beside the database).
    env_file = server.db_path.parent / "env.json"
    assert json.loads(env_file.read_text()) == {"GREETING": "hello world", "TOKEN": "s3cret"}
    done = npx(server, project, "env", "remove", "GREETING")
    assert done.returncode == 0 and "Successfully unset GREETING" in done.stderr
    done = npx(server, project, "env", "get", "GREETING")
    assert 'Environment variable "GREETING" not found' in done.stderr
    done = npx(server, project, "env", "list")
    assert done.stdout.splitlines() == ["TOKEN=s3cret"]
    done = npx(server, project, "env", "set", "9bad", "x")
    assert done.returncode == 1 and "Invalid environment variable name" in done.stderr


def _read_until(proc: subprocess.Popen, needle: str) -> str:
    deadline = time.monotonic() + DEADLINE_S
    seen = b""
    fd = proc.stdout.fileno()
    while needle.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {seen!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"{needle!r} not seen before EOF; got {seen!r}\n{proc.stderr.read()!r}")
            seen += chunk
    return seen.decode()


def test_logs_follows_executions(server_factory, tmp_path):
    server = server_factory("site")
    project = _project(tmp_path)
    proc = subprocess.Popen(["node", str(CLI), "logs", "--success"], cwd=project, env=_env(server),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # The CLI's first poll only learns where the log ends (it prints nothing of it): call until
        # an execution after that poll shows up, waiting on the CLI's output, never sleeping.
        deadline = time.monotonic() + DEADLINE_S
        attempt = 0
        while True:
            attempt += 1
            tag = f"npx-tag-{attempt}"
            r = httpx.post(f"{server.url}/api/query", json={"path": "logs:hello", "args": {"tag": tag}})
            assert r.json()["status"] == "success"
            try:
                out = _read_until_short(proc, tag, 2.0)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "npx convex logs never showed the execution"
        assert f"[CONVEX Q(logs:hello)] [LOG] 'hello from a function' '{tag}'" in out
        if "Function executed in" not in out:
            out += _read_until(proc, "Function executed in")
        assert "[CONVEX Q(logs:hello)] Function executed in" in out
        r = httpx.post(f"{server.url}/api/mutation", json={"path": "logs:fail", "args": {}})
        assert r.json()["status"] == "error"
        out = _read_until(proc, "failed on purpose")
        assert "[CONVEX M(logs:fail)] [LOG] 'about to fail'" in out
        assert "[CONVEX M(logs:fail)] Uncaught Error: logs:fail failed on purpose" in out
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(timeout=DEADLINE_S)
    proc.stdout.close()
    proc.stderr.close()


def _read_until_short(proc: subprocess.Popen, needle: str, seconds: float) -> str:
    seen = b""
    fd = proc.stdout.fileno()
    end = time.monotonic() + seconds
    while needle.encode() not in seen:
        left = end - time.monotonic()
        if left <= 0:
            raise TimeoutError
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                raise AssertionError(f"the CLI exited: {proc.stderr.read()!r}")
            seen += chunk
    return seen.decode()


def test_export_then_import_into_a_fresh_server_gives_identical_data(server_factory, tmp_path):
    source = server_factory("basic")
    project = _project(tmp_path)
    for i in range(4):
        _call(source, "mutation", "messages:send", {"author": "exp", "body": f"b{i}"})
    _call(source, "mutation", "counters:increment", {"name": "hits"})
    snapshot = tmp_path / "snapshot.zip"
    done = npx(source, project, "export", "--path", str(snapshot))
    assert done.returncode == 0, done.stderr
    assert "Downloaded snapshot export to" in done.stderr
    with zipfile.ZipFile(snapshot) as zf:
        assert "messages/documents.jsonl" in zf.namelist()

    target = server_factory("basic")
    done = npx(target, project, "import", "--yes", str(snapshot))
    assert done.returncode == 0, done.stderr + done.stdout
    assert "Added 5 documents." in done.stderr

    def dump(server) -> dict:
        out = {}
        for table in ("messages", "counters"):
            done = npx(server, project, "data", table, "--format", "jsonl", "--limit", "100")
            assert done.returncode == 0, done.stderr
            out[table] = sorted(done.stdout.splitlines())
        return out

    assert dump(target) == dump(source)
    # The imported documents are live in the new server: its functions read them.
    assert _call(target, "query", "counters:get", {"name": "hits"}) == 1.0
    assert [m["body"] for m in _call(target, "query", "messages:list", {"author": "exp"})] == \
        [m["body"] for m in _call(source, "query", "messages:list", {"author": "exp"})]

    # A second import into the now non-empty tables is refused, and nothing changes.
    done = npx(target, project, "import", "--yes", str(snapshot))
    assert done.returncode == 1
    assert "ImportTableNotEmpty" in done.stderr
    assert dump(target) == dump(source)


def test_function_spec(server_factory, tmp_path):
    server = server_factory("basic")
    project = _project(tmp_path)
    done = npx(server, project, "function-spec")
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)
    assert spec["url"] == server.url
    by_id = {f["identifier"]: f for f in spec["functions"] if "identifier" in f}
    assert by_id["counters.js:get"]["functionType"] == "Query"
    assert by_id["counters.js:get"]["args"]["value"]["name"]["fieldType"] == {"type": "string"}
    assert by_id["counters.js:increment"]["functionType"] == "Mutation"


def test_run_and_missing_functions(server_factory, tmp_path):
    server = server_factory("basic")
    project = _project(tmp_path)
    done = npx(server, project, "run", "counters:increment", '{"name": "runs"}')
    assert done.returncode == 0, done.stderr
    done = npx(server, project, "run", "nope:nothing")
    assert done.returncode == 1
    # The CLI lists the deployment's functions from `_system/cli/modules:apiSpec`.
    # Convex's /api/function wording, exactly (`python -m engine run` words the advice for this engine).
    assert "Could not find function for 'nope:nothing'. Did you forget to run `npx convex dev`?" in done.stderr


def test_run_identity_and_watch(server_factory, tmp_path):
    server = server_factory("basic")
    project = _project(tmp_path)
    done = npx(server, project, "run", "--identity", '{"subject": "user-1", "name": "Ada"}', "whoami:whoami")
    assert done.returncode == 0, done.stderr
    who = json.loads(done.stdout)
    assert (who["subject"], who["name"]) == ("user-1", "Ada")
    done = npx(server, project, "run", "whoami:whoami")
    assert (done.returncode, done.stdout) == (0, "")  # no identity: null, which the CLI does not print

    # --watch subscribes over the sync socket: a write by another client reaches it.
    _call(server, "mutation", "counters:increment", {"name": "watched", "by": 17.0})
    proc = subprocess.Popen(["node", str(CLI), "run", "--watch", "counters:get", '{"name": "watched"}'], cwd=project,
                            env=_env(server), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        _read_until(proc, "17\n")
        _call(server, "mutation", "counters:increment", {"name": "watched", "by": 25.0})
        _read_until(proc, "42\n")
    finally:
        _stop(proc)


def test_importing_a_file_that_is_not_a_snapshot_ends_with_the_reason(server_factory, tmp_path):
    server = server_factory("basic")
    project = _project(tmp_path)
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    done = npx(server, project, "import", "--yes", str(bad))
    assert done.returncode == 1
    assert "InvalidSnapshot: The uploaded file is not a readable ZIP file" in done.stderr, done.stderr
    assert "convex-transfers" not in done.stderr  # the server's own temporary path is not shown
    csv = tmp_path / "rows.csv"
    csv.write_text("name,value\na,1\n")
    done = npx(server, project, "import", "--yes", "--table", "counters", str(csv))
    assert done.returncode == 1 and "convert the file to JSONL" in done.stderr
    assert npx(server, project, "data", "counters").stderr.count("There are no documents") == 1


@pytest.mark.parametrize("verb", [["codegen"], ["deploy", "--yes"], ["dev", "--once"], ["dev"]])
def test_push_verbs_fail_fast_naming_our_commands(server_factory, tmp_path, verb):
    server = server_factory("basic")
    project = _project(tmp_path, with_functions=True)
    started = time.monotonic()
    done = npx(server, project, *verb, timeout=45)
    assert time.monotonic() - started < 45
    assert "does not accept pushed JavaScript" in done.stderr
    assert "python -m engine codegen" in done.stderr and "python -m engine dev" in done.stderr
    if verb[0] != "dev":
        assert done.returncode == 1


def test_a_wrong_admin_key_ends_every_verb(server_factory, tmp_path):
    server = server_factory("basic")
    project = _project(tmp_path)
    for verb in (["data"], ["env", "list"], ["logs"], ["function-spec"]):
        done = npx(server, project, *verb, admin_key="not-the-key", timeout=45)
        assert done.returncode == 1, (verb, done.stderr)
        assert "You do not have permission" in done.stderr or "admin key was invalid" in done.stderr, done.stderr
