"""Environment variables and secrets: `engine.env`, the `env` command, and a real server reading them."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from engine import cli, env
from engine.errors import EngineError

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env_file(tmp_path: Path):
    path = tmp_path / "env.json"
    env.use_file(path)
    yield path
    env.use_file(None)


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


# --- engine.env ----------------------------------------------------------------------------------


def test_require_names_the_missing_variable(env_file, monkeypatch):
    monkeypatch.delenv("LIVEKIT_API_KEY", raising=False)
    with pytest.raises(EngineError) as e:
        env.require("LIVEKIT_API_KEY")
    assert e.value.code == "MissingEnvironmentVariable"
    assert e.value.message == ("Environment variable LIVEKIT_API_KEY is not set; set it with "
                               "`python -m engine env set LIVEKIT_API_KEY ...` or in the environment")
    monkeypatch.setenv("LIVEKIT_API_KEY", "")
    with pytest.raises(EngineError, match="Environment variable LIVEKIT_API_KEY is empty"):
        env.require("LIVEKIT_API_KEY")


def test_the_process_environment_wins_over_the_file(env_file, monkeypatch):
    monkeypatch.delenv("TELEGRAM_BOT_TOKEN", raising=False)
    monkeypatch.delenv("OPENCLAW_HOOK_TOKEN", raising=False)
    assert env.get("TELEGRAM_BOT_TOKEN") is None
    assert env.get("TELEGRAM_BOT_TOKEN", "dflt") == "dflt"
    env.set_var(env_file, "TELEGRAM_BOT_TOKEN", "from-file")
    env.set_var(env_file, "OPENCLAW_HOOK_TOKEN", "hook-from-file")
    assert env.get("TELEGRAM_BOT_TOKEN") == "from-file"  # re-read after the change, no restart
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "from-process")
    assert env.require("TELEGRAM_BOT_TOKEN") == "from-process"
    assert env.require("OPENCLAW_HOOK_TOKEN") == "hook-from-file"
    assert env.remove_var(env_file, "OPENCLAW_HOOK_TOKEN") is True
    assert env.remove_var(env_file, "OPENCLAW_HOOK_TOKEN") is False
    assert env.get("OPENCLAW_HOOK_TOKEN") is None
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert json.loads(env_file.read_text()) == {"TELEGRAM_BOT_TOKEN": "from-file"}


def test_a_broken_env_file_is_reported_with_its_path(env_file):
    env_file.write_text('["not", "an", "object"]')
    with pytest.raises(EngineError, match="must be a JSON object of string values") as e:
        env.get("ANYTHING_UNSET_123")
    assert str(env_file) in e.value.message
    env_file.write_text("{oops")
    with pytest.raises(EngineError, match="is not valid JSON"):
        env.get("ANYTHING_UNSET_123")


@pytest.mark.parametrize("name", ["1ABC", "A-B", "", "A" * 41, "with space"])
def test_set_refuses_bad_names(tmp_path, name):
    with pytest.raises(EngineError, match="Invalid environment variable name"):
        env.set_var(tmp_path / "env.json", name, "x")


# --- the `env` command ---------------------------------------------------------------------------


def test_env_command_list_get_set_remove(tmp_path, capsys, monkeypatch):
    path = tmp_path / "secrets" / "env.json"
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("LIVEKIT_URL", raising=False)

    def run(*argv: str) -> tuple[int, str, str]:
        code = cli.main(["env", *argv, "--env-file", str(path)])
        out, err = capsys.readouterr()
        return code, out, err

    assert run("list") == (0, "", f"No environment variables in {path}.\n")
    assert run("set", "ANTHROPIC_API_KEY", "sk-ant-secret") == (0, f"Added ANTHROPIC_API_KEY in {path}\n", "")
    assert run("set", "ANTHROPIC_API_KEY", "sk-ant-rotated") == (0, f"Updated ANTHROPIC_API_KEY in {path}\n", "")
    monkeypatch.setattr(sys, "stdin", io.StringIO("wss://livekit.example\n"))
    assert run("set", "LIVEKIT_URL")[0] == 0  # value from stdin keeps it out of shell history
    code, out, _ = run("list")
    assert (code, out) == (0, "ANTHROPIC_API_KEY=********\nLIVEKIT_URL=********\n")
    assert "sk-ant" not in out
    code, out, _ = run("list", "--show-values")
    assert out == "ANTHROPIC_API_KEY=sk-ant-rotated\nLIVEKIT_URL=wss://livekit.example\n"
    assert run("get", "LIVEKIT_URL") == (0, "wss://livekit.example\n", "")
    code, _, err = run("get", "NOPE_NOT_SET")
    assert code == 1 and "NOPE_NOT_SET is not set" in err
    code, _, err = run("set", "9BAD", "x")
    assert code == 1 and "Invalid environment variable name '9BAD'" in err
    assert run("remove", "LIVEKIT_URL") == (0, f"Removed LIVEKIT_URL from {path}\n", "")
    assert run("remove", "LIVEKIT_URL") == (0, f"LIVEKIT_URL was not set in {path}\n", "")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-process")
    code, out, _ = run("list")
    assert out == "ANTHROPIC_API_KEY=********  (overridden by the process environment)\n"
    assert run("get", "ANTHROPIC_API_KEY") == (0, "from-process\n", "(from the process environment)\n")


def test_env_command_defaults_to_the_folder_of_the_database(tmp_path):
    db = tmp_path / "data" / "convex.sqlite3"
    environ = {k: v for k, v in os.environ.items() if k != "SITE_DB_DEFAULT"}
    done = subprocess.run([sys.executable, "-m", "engine", "env", "set", "SITE_DB_DEFAULT", "v1", "--db", str(db)],
                          cwd=REPO_ROOT, env=environ, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "data" / "env.json").read_text()) == {"SITE_DB_DEFAULT": "v1"}


# --- a real server -------------------------------------------------------------------------------


def _query(server, path: str, args: dict) -> dict:
    r = httpx.post(f"{server.url}/api/query", json={"path": path, "args": args, "format": "json"})
    assert r.status_code == 200
    return r.json()


def test_functions_read_secrets_set_while_the_server_runs(server_factory):
    server = server_factory("site", extra_env={"SITE_BOTH": "from-process"})
    missing = _query(server, "config:required_digest", {"name": "SITE_SECRET"})
    assert missing["status"] == "error"
    assert ("Uncaught Error: Environment variable SITE_SECRET is not set; set it with "
            "`python -m engine env set SITE_SECRET ...` or in the environment") in missing["errorMessage"]
    r = httpx.post(f"{server.url}/api/action", json={"path": "config:required_in_action",
                                                     "args": {"name": "SITE_SECRET"}})
    assert r.json()["status"] == "error" and "SITE_SECRET is not set" in r.json()["errorMessage"]
    assert _query(server, "config:optional_value", {"name": "SITE_UNSET"})["value"] == "fallback-default"

    # `env set` against the server's database folder; the running server sees it at the next read.
    for name, value in [("SITE_SECRET", "s3cret-value"), ("SITE_BOTH", "from-file")]:
        done = subprocess.run(
            [sys.executable, "-m", "engine", "env", "set", name, value, "--db", str(server.db_path)],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    assert _query(server, "config:required_digest", {"name": "SITE_SECRET"})["value"] == _digest("s3cret-value")
    assert _query(server, "config:optional_value", {"name": "SITE_BOTH"})["value"] == "from-process"
    assert "s3cret-value" not in server.log_tail(1000)


def test_serve_env_file_option(server_factory, tmp_path):
    path = tmp_path / "elsewhere.json"
    path.write_text(json.dumps({"SITE_FROM_FILE": "file-value"}))
    server = server_factory("site", extra_args=("--env-file", str(path)))
    assert _query(server, "config:required_digest", {"name": "SITE_FROM_FILE"})["value"] == _digest("file-value")
    assert f"then {path}" in server.log_tail()


def test_env_command_through_a_running_server(server_factory, tmp_path):
    # The server's env file is not beside its database: `--url` reaches it anyway.
    path = tmp_path / "elsewhere" / "vars.json"
    path.parent.mkdir()
    server = server_factory("site", extra_args=("--env-file", str(path)))

    def env_cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "engine", "env", *argv, "--url", server.url,
                               "--admin-key", server.admin_key], cwd=REPO_ROOT, input=stdin, capture_output=True,
                              text=True, timeout=60)

    done = env_cli("set", "SITE_GREETING", "hello there")
    assert (done.returncode, done.stdout) == (0, f"Set SITE_GREETING on {server.url}\n"), done.stderr
    assert env_cli("set", "SITE_TOKEN", stdin="t0ken\n").returncode == 0
    assert json.loads(path.read_text()) == {"SITE_GREETING": "hello there", "SITE_TOKEN": "t0ken"}
    assert _query(server, "config:optional_value", {"name": "SITE_GREETING"})["value"] == "hello there"
    assert env_cli("get", "SITE_GREETING").stdout == "hello there\n"
    assert env_cli("list").stdout.splitlines() == ["SITE_GREETING=********", "SITE_TOKEN=********"]
    assert env_cli("list", "--show-values").stdout.splitlines() == ["SITE_GREETING=hello there", "SITE_TOKEN=t0ken"]
    done = env_cli("remove", "SITE_GREETING")
    assert done.stdout == f"Removed SITE_GREETING from {server.url}\n"
    assert env_cli("remove", "SITE_GREETING").stdout == f"SITE_GREETING was not set on {server.url}\n"
    done = env_cli("get", "SITE_GREETING")
    assert done.returncode == 1 and "SITE_GREETING is not set" in done.stderr
    done = env_cli("set", "9bad", "x")
    assert done.returncode == 1 and done.stderr.startswith("error: InvalidEnvironmentVariableName: ")
    assert json.loads(path.read_text()) == {"SITE_TOKEN": "t0ken"}
    done = subprocess.run([sys.executable, "-m", "engine", "env", "list", "--url", server.url, "--admin-key", "wrong"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_the_deployment_urls_are_system_variables(monkeypatch):
    from engine import env

    monkeypatch.setenv("CONVEX_CLOUD_URL", "http://from-the-environment")
    env.set_deployment_urls("http://127.0.0.1:3210/", "http://127.0.0.1:3211")
    try:
        # The deployment's own origins win over anything of the same name, without a trailing slash.
        assert env.get("CONVEX_CLOUD_URL") == "http://127.0.0.1:3210"
        assert env.get("CONVEX_SITE_URL") == "http://127.0.0.1:3211"
        assert env.deployment_urls() == ("http://127.0.0.1:3210", "http://127.0.0.1:3211")
    finally:
        env.set_deployment_urls(None, None)
    assert env.get("CONVEX_CLOUD_URL") == "http://from-the-environment"
