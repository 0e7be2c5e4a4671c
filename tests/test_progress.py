"""Progress bars (tqdm) on long operations: snapshot export and import (offline and through a running
server) and index backfills at start-up, drawn on stderr when it is a terminal, and never when it is
piped.

Each command runs as a real process whose stderr is a pseudo-terminal. The bars normally wait a
second before they show (short work stays quiet) and redraw at most every 0.1 s; tqdm's own
settings `TQDM_DELAY=0` and `TQDM_MININTERVAL=0` show them at once and draw every step, so the test
needs no long work and no clock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from engine.deployment import Auth, Deployment

from conftest import APPS_DIR, REPO_ROOT, TEST_ADMIN_KEY, ServerProcess

pytestmark = pytest.mark.slow

DOCS = 30
BAR_ENV = {"TQDM_DELAY": "0", "TQDM_MININTERVAL": "0"}  # every bar at once, every step drawn


def _env(extra: dict[str, str]) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TQDM_") and k != "CONVEX_ADMIN_KEY"}
    return {**environ, **extra}


def _pty() -> tuple[int, int]:
    """(master, slave) of a pseudo-terminal 160 columns wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    return master, slave


def _on_a_terminal(argv: list[str], *, extra_env: dict[str, str] = BAR_ENV,
                   until: str | None = None) -> tuple[int, str, str]:
    """Run `python -m engine ARGV` with stderr on a pseudo-terminal: (exit status, stdout, what the
    terminal showed). With `until`, the process (a server) is stopped once stdout prints that."""
    master, slave = _pty()
    proc = subprocess.Popen([sys.executable, "-m", "engine", *argv], cwd=REPO_ROOT, env=_env(extra_env),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    try:
        out = ""
        if until is not None:
            assert proc.stdout is not None
            for line in proc.stdout:
                out += line
                if until in line:
                    break
            proc.terminate()
        rest, _ = proc.communicate(timeout=120)
        out += rest or ""
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, out, shown.decode(errors="replace")


def _piped(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "engine", *argv], cwd=REPO_ROOT, env=_env(BAR_ENV),
                          capture_output=True, text=True, timeout=120)


def _bar(shown: str, desc: str) -> str:
    """The last state of the bar named `desc` the terminal drew ("" if none)."""
    states = [s for s in re.split(r"[\r\n]", shown) if s.strip().startswith(desc)]
    return states[-1] if states else ""


@pytest.fixture
def seeded(tmp_path: Path) -> tuple[Path, Path]:
    """(a copy of the basic app, its database with DOCS messages)."""
    app = tmp_path / "app"
    shutil.copytree(APPS_DIR / "basic", app, ignore=shutil.ignore_patterns("__pycache__", "data"))
    db = tmp_path / "db" / "db.sqlite3"

    async def seed() -> None:
        dep = await Deployment.open(app, db, admin_key=TEST_ADMIN_KEY)
        try:
            for i in range(DOCS):
                result = await dep.call("messages:send", {"author": "p", "body": f"m{i}"}, kind="mutation",
                                        auth=Auth())
                assert result.success, result.error_message
        finally:
            await dep.close()

    asyncio.run(seed())
    return app, db


def test_offline_export_and_import_draw_bars_on_a_terminal_only(seeded, tmp_path):
    app, db = seeded
    snapshot = tmp_path / "snap.zip"
    status, out, shown = _on_a_terminal(["export", "--app", str(app), "--db", str(db), "--path", str(snapshot)])
    assert status == 0, shown
    assert f"Exported {DOCS} documents" in out
    assert f"{DOCS} docs" in _bar(shown, f"Exporting to {snapshot.name}"), shown

    target = tmp_path / "fresh" / "db.sqlite3"
    status, out, shown = _on_a_terminal(["import", "--app", str(app), "--db", str(target), "--path", str(snapshot)])
    assert status == 0, shown
    bar = _bar(shown, f"Importing {snapshot.name}")
    assert "100%" in bar and f"{DOCS}/{DOCS}" in bar, shown

    # Piped, the same commands print their result and no bar.
    done = _piped(["export", "--app", str(app), "--db", str(db), "--path", str(tmp_path / "again.zip")])
    assert (done.returncode, done.stderr) == (0, "")


def test_export_and_import_through_a_server_draw_transfer_bars(seeded, tmp_path):
    app, db = seeded
    server = ServerProcess(app, db, tmp_path / "server.log")
    server.start()
    try:
        snapshot = tmp_path / "snap.zip"
        status, out, shown = _on_a_terminal(["export", "--url", server.url, "--admin-key", server.admin_key,
                                             "--path", str(snapshot)])
        assert status == 0, shown
        assert f"Exported {DOCS} documents" in out
        assert "100%" in _bar(shown, f"Downloading {snapshot.name}"), shown

        fresh = ServerProcess(app, tmp_path / "fresh" / "db.sqlite3", tmp_path / "fresh.log")
        fresh.start()
        try:
            status, out, shown = _on_a_terminal(["import", "--url", fresh.url, "--admin-key", fresh.admin_key,
                                                 "--path", str(snapshot)])
            assert status == 0, shown
            assert f"Imported {DOCS} documents" in out
            assert "100%" in _bar(shown, f"Uploading {snapshot.name}"), shown
        finally:
            fresh.stop()
    finally:
        server.stop()


def _index_messages(app: Path, index: str) -> None:
    """Add `index` (an `.index(...)` / `.search_index(...)` call) to the app's messages table, whose
    documents are already stored: the next start backfills it."""
    schema = app / "schema.py"
    text = schema.read_text()
    assert '.index("by_author", ["author"])' in text
    schema.write_text(text.replace('.index("by_author", ["author"])', '.index("by_author", ["author"])' + index))


def test_an_index_backfill_at_start_draws_a_bar(seeded, tmp_path):
    app, db = seeded
    _index_messages(app, '.index("by_body", ["body"])')
    status, out, shown = _on_a_terminal(
        ["serve", "--app", str(app), "--db", str(db), "--port", "0", "--site-port", "0"],
        extra_env={**BAR_ENV, "CONVEX_ADMIN_KEY": TEST_ADMIN_KEY}, until="listening on")
    assert "listening on" in out, shown
    assert f"{DOCS} docs" in _bar(shown, 'Index "messages.by_body"'), shown


def _serve_on_a_terminal_until(argv: list[str], marker: str, extra_env: dict[str, str]) -> str:
    """Run `python -m engine ARGV` (a server) with stdout and stderr on one pseudo-terminal until
    the terminal shows `marker`; what it showed."""
    import select
    import time

    master, slave = _pty()
    proc = subprocess.Popen([sys.executable, "-m", "engine", *argv], cwd=REPO_ROOT, env=_env(extra_env),
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 120
    try:
        while marker.encode() not in shown and time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    shown += os.read(master, 65536)
                except OSError:
                    break
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        os.close(master)
    return shown.decode(errors="replace")


def test_a_search_index_backfill_while_serving_draws_a_bar(seeded, tmp_path):
    """Search and vector indexes fill in the background while the server serves: on a terminal the
    backfill draws its bar too (besides its log lines)."""
    app, db = seeded
    _index_messages(app, '.search_index("search_body", search_field="body")')
    shown = _serve_on_a_terminal_until(
        ["serve", "--app", str(app), "--db", str(db), "--port", "0", "--site-port", "0"],
        'index "messages.search_body" is ready', {**BAR_ENV, "CONVEX_ADMIN_KEY": TEST_ADMIN_KEY})
    assert 'index "messages.search_body" is ready' in shown, shown
    assert f"{DOCS}/{DOCS}" in _bar(shown, 'Search index "messages.search_body"'), shown
