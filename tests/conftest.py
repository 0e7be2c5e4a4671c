"""Shared test fixtures: real engine server processes and the official Node clients.

A test that needs a running deployment asks for a factory and names the app folder:

    def test_x(server_factory):
        server = server_factory("basic")          # tests/apps/basic, fresh SQLite file
        httpx.post(f"{server.url}/api/query", ...)

`server_factory` is function-scoped (each server is stopped after the test); `shared_server_factory`
is session-scoped and hands every caller asking for the same app the same running server, for
conformance modules whose tests do not depend on each other's writes.

Invariants:
- Servers are real subprocesses (`python -m engine serve ...`) on free ports with their own SQLite
  file; nothing in the engine is mocked.
- Readiness is observed, never guessed: we poll `GET /version` with short connection attempts until
  it answers 200, within a bounded deadline, and fail with the server's log if it dies or times out.
- Each server's stdout+stderr goes to a log file; when a test fails, the log tail of every server
  still alive is attached to the report.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Generator, Iterator

import pytest

from hypothesis import settings as _hypothesis_settings

if TYPE_CHECKING:
    from pg_harness import PostgresServer

# Property tests check behaviour, not speed: on a shared 2-core CI box a slow example is not a
# failure, so no per-example deadline (the examples are bounded by max_examples instead).
_hypothesis_settings.register_profile("engine", deadline=None)
_hypothesis_settings.load_profile("engine")

REPO_ROOT = Path(__file__).resolve().parent.parent
APPS_DIR = REPO_ROOT / "tests" / "apps"
JS_DIR = REPO_ROOT / "tests" / "js"

# No ":" in the key: "Convex <key>:<identity>" is how an admin impersonates a user (protocol §6).
TEST_ADMIN_KEY = "nova-test|0a1b2c3d4e5f60718293a4b5c6d7e8f9"

STARTUP_DEADLINE_S = 30.0
STOP_DEADLINE_S = 10.0
LOG_TAIL_LINES = 200

_live_servers: list["ServerProcess"] = []


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_app(root: Path, files: dict[str, str]) -> Path:
    """An app folder at `root` from {relative path: source}; returns `root`."""
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def app_path(app: str | Path) -> Path:
    """`"basic"` -> tests/apps/basic; an existing path is used as it is."""
    path = Path(app)
    if not path.is_absolute() and not path.exists():
        path = APPS_DIR / app
    if not path.is_dir():
        raise FileNotFoundError(f"no app folder at {path}")
    return path.resolve()


class ServerProcess:
    """One `python -m engine serve` subprocess; restartable on the same ports and database."""

    def __init__(
        self,
        app_dir: Path,
        db_path: Path,
        log_path: Path,
        *,
        admin_key: str = TEST_ADMIN_KEY,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.app_dir = app_dir
        self.db_path = db_path
        self.log_path = log_path
        self.admin_key = admin_key
        self.port = free_port()
        self.site_port = free_port()
        while self.site_port == self.port:  # the OS may hand back the port it just freed
            self.site_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.site_url = f"http://127.0.0.1:{self.site_port}"
        self.extra_args = extra_args
        self.extra_env = dict(extra_env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file = None

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "engine", "serve",
            "--app", str(self.app_dir),
            "--db", str(self.db_path),
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--site-port", str(self.site_port),
            *self.extra_args,
        ]

    def start(self) -> "ServerProcess":
        assert self.proc is None or self.proc.poll() is not None, "server already running"
        env = {**os.environ, "CONVEX_ADMIN_KEY": self.admin_key, "PYTHONUNBUFFERED": "1", **self.extra_env}
        self._log_file = open(self.log_path, "ab")
        self._log_file.write(f"\n=== start: {' '.join(self.command())}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(
            self.command(), cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
            stdout=self._log_file, stderr=subprocess.STDOUT,
        )
        if self not in _live_servers:
            _live_servers.append(self)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + STARTUP_DEADLINE_S
        last_error = "no attempt made"
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/version", timeout=0.5) as resp:
                    if resp.status == 200:
                        return
                    last_error = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as exc:
                last_error = repr(exc)
            # Waiting on the process (not sleeping) paces the polls and notices an early exit.
            try:
                code = self.proc.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                continue
            self._close_log()
            raise RuntimeError(f"engine server exited with code {code} before it was ready\n{self.log_tail()}")
        self.kill()
        raise RuntimeError(
            f"engine server not ready after {STARTUP_DEADLINE_S}s (last: {last_error})\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """SIGTERM and wait for a clean exit (SIGKILL if it takes too long)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_DEADLINE_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def kill(self) -> None:
        """SIGKILL: a crash with no chance to flush or close anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close_log()

    def restart(self) -> "ServerProcess":
        """Stop (if running) and start again on the same ports and database file."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def __repr__(self) -> str:
        return f"<ServerProcess {self.app_dir.name} {self.url} running={self.running}>"


ServerFactory = Callable[..., ServerProcess]


def _make_factory(base_dir: Path, servers: list[ServerProcess]) -> ServerFactory:
    def factory(
        app: str | Path = "basic",
        *,
        admin_key: str = TEST_ADMIN_KEY,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> ServerProcess:
        n = len(servers)
        workdir = base_dir / f"server{n}"
        workdir.mkdir(parents=True, exist_ok=True)
        server = ServerProcess(
            app_path(app), workdir / "db.sqlite3", workdir / "server.log",
            admin_key=admin_key, extra_args=extra_args, extra_env=extra_env,
        )
        servers.append(server)
        return server.start()

    return factory


def _stop_all(servers: list[ServerProcess]) -> None:
    for server in servers:
        server.stop()
        if server in _live_servers:
            _live_servers.remove(server)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[ServerFactory]:
    """`server_factory(app="basic", admin_key=..., extra_args=(), extra_env=None)` -> a started
    ServerProcess (.url, .site_url, .admin_key, .db_path, .proc, .stop(), .kill(), .restart()),
    stopped when the test ends."""
    servers: list[ServerProcess] = []
    yield _make_factory(tmp_path, servers)
    _stop_all(servers)


@pytest.fixture(scope="session")
def shared_server_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerFactory]:
    """Like `server_factory`, but one server per (app, admin_key) for the whole session.

    Only for tests that tolerate other tests' writes; never stop/kill/restart a shared server."""
    servers: list[ServerProcess] = []
    started: dict[tuple[str, str], ServerProcess] = {}
    make = _make_factory(tmp_path_factory.mktemp("shared-servers"), servers)

    def factory(app: str | Path = "basic", *, admin_key: str = TEST_ADMIN_KEY) -> ServerProcess:
        key = (str(app_path(app)), admin_key)
        server = started.get(key)
        if server is None or not server.running:
            server = started[key] = make(app, admin_key=admin_key)
        return server

    yield factory
    _stop_all(servers)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed:
        for server in _live_servers:
            report.sections.append((f"engine server log {server.url} ({server.app_dir.name})", server.log_tail()))
    return report


# The livekit realtime SDK (a Rust library, loaded by the voice tests that drive it in-process)
# disposes its runtime in an atexit hook; once, after every test of a full run had passed, that
# aborted the interpreter on its way out ("panic in a function that cannot unwind" in a tokio
# worker, exit status 134), which would fail a green run. When the SDK was loaded, the test
# process leaves with pytest's own status once everything is reported, without the SDK's hook.
_exit_status: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _exit_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    ffi = sys.modules.get("livekit.rtc._ffi_client")
    if ffi is None or getattr(ffi.FfiClient, "_instance", None) is None or not _exit_status:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status[-1])


# ---------------------------------------------------------------------------------------------------
# Node clients

NODE_TIMEOUT_S = 60.0


def run_node(script: str, *args: str, env: dict[str, str] | None = None, timeout: float = NODE_TIMEOUT_S):
    """Run `node tests/js/<script>.mjs args...` and return the JSON object it prints on stdout.

    A non-zero exit, a timeout or non-JSON output fails the test with the script's stdout and stderr."""
    if not (JS_DIR / "node_modules" / "convex").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `tests/run` (or `npm ci --prefix tests/js`)")
    path = JS_DIR / f"{script}.mjs"
    cmd = ["node", str(path), *map(str, args)]
    try:
        done = subprocess.run(
            cmd, cwd=JS_DIR, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} timed out after {timeout}s\nstdout:\n{exc.stdout}\nstderr:\n{exc.stderr}")
    if done.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"{' '.join(cmd)} printed no JSON\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")


@pytest.fixture(name="run_node", scope="session")
def run_node_fixture() -> Callable[..., object]:
    """`run_node(script, *args, env=None, timeout=60)` -> parsed JSON from tests/js/<script>.mjs."""
    return run_node


# -- PostgreSQL ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_server() -> Iterator["PostgresServer"]:
    """One real PostgreSQL server for the session (tests/pg_harness.py); each test that needs a
    database creates its own (`pg_server.create_database()`)."""
    from pg_harness import PostgresServer

    server = PostgresServer().start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: "PostgresServer") -> str:
    """A fresh, empty database owned by a plain role: postgresql://engine:...@127.0.0.1:PORT/tN."""
    return pg_server.create_database()
