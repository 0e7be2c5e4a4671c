"""`python -m engine serve` as an operator runs it: failures at start are reported and end the process."""

from __future__ import annotations

import socket
import subprocess
import sys

from conftest import REPO_ROOT


def test_serve_on_a_taken_port_exits_with_the_reason(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Before the fix the storage threads kept the process alive: the timeout would fire.
        done = subprocess.run(
            [sys.executable, "-m", "engine", "serve", "--app", str(REPO_ROOT / "tests/apps/basic"),
             "--db", str(tmp_path / "db.sqlite3"), "--host", "127.0.0.1", "--port", str(port), "--site-port", "0"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "CONVEX_ADMIN_KEY": "k"})
    assert done.returncode == 1, done.stderr
    assert f"error: cannot listen on 127.0.0.1:{port}: Address already in use" in done.stderr
    assert "Traceback" not in done.stderr
