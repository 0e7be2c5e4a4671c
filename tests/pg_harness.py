"""A real PostgreSQL server for the tests: initdb in a temporary folder, started on a free loopback
port, stopped at the end. No mocks: the Postgres store is tested against Postgres.

    with PostgresServer() as pg:
        url = pg.create_database("t1")     # postgresql://engine:...@127.0.0.1:PORT/t1, owned by a
                                           # plain (non-superuser) role
        pg.restart()                       # stop + start on the same port and data (fault tests)

Postgres refuses to run as root, so when the tests run as root the server runs as the `postgres`
OS user (Debian's package creates it); otherwise as the current user. The binaries come from the
PyPI package `pgserver` (PostgreSQL 16 with pgvector, a test dependency) when it is installed, else
from /usr/lib/postgresql/*/bin (Debian's `postgresql` package, no pgvector; tests/run installs it
when missing) or PATH; `PostgresServer(debian_bin_dir())` runs Debian's. The superuser connects over a Unix socket in the data folder (trust); the role the engine
uses connects over TCP with a password (scram-sha-256), as a deployment would.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["PostgresServer", "postgres_bin_dir", "pgserver_bin_dir", "debian_bin_dir", "ROLE", "PASSWORD"]

ROLE = "engine"
PASSWORD = "engine-test-pw"


def pgserver_bin_dir() -> Path | None:
    """The PostgreSQL 16 (with pgvector) that the PyPI package `pgserver` ships (a test dependency,
    pyproject.toml): found without importing it (its import pulls in things the tests do not need)."""
    spec = importlib.util.find_spec("pgserver")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        bin_dir = Path(root) / "pginstall" / "bin"
        if (bin_dir / "initdb").exists() and (bin_dir / "pg_ctl").exists():
            return bin_dir
    return None


def debian_bin_dir() -> Path | None:
    """Debian's postgresql package (no pgvector in bookworm), or whatever initdb is on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def postgres_bin_dir() -> Path | None:
    """pgserver's PostgreSQL (it has pgvector: vector indexes are tested) first, else Debian's."""
    return pgserver_bin_dir() or debian_bin_dir()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bin_dir: Path | None = None) -> None:
        bin_dir = bin_dir or postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (tests/run installs Debian's postgresql package)")
        self.bin = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="engine-pg-"))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        self._databases = 0

    # -- running commands as the server's user -------------------------------------------------
    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=60)

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = self._run("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.sock),
                        "-p", str(self.port), "-U", "postgres", "-d", db, "-c", sql)
        return out.stdout

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> "PostgresServer":
        self.sock.mkdir(parents=True, exist_ok=True)
        if self._as_postgres:
            shutil.chown(self.root, "postgres", "postgres")
            shutil.chown(self.sock, "postgres", "postgres")
        if not self.data.exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust",
                      "--auth-host=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")
        self._pg_ctl_start()
        self.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
        return self

    def _pg_ctl_start(self) -> None:
        opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.sock} "
                "-c max_connections=300 -c shared_buffers=64MB -c fsync=on -c log_min_messages=warning")
        self._run("pg_ctl", "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"), "-w",
                  "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self) -> None:
        """Stop (fast: connections are cut) and start again on the same port and data."""
        self.stop("fast")
        self._pg_ctl_start()

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- databases -----------------------------------------------------------------------------
    def url(self, db: str, *, password: str = PASSWORD) -> str:
        return f"postgresql://{ROLE}:{password}@127.0.0.1:{self.port}/{db}"

    @property
    def has_pgvector(self) -> bool:
        """Whether this server's installation has the pgvector extension."""
        return any(p.exists() for p in (
            self.bin.parent / "share" / "postgresql" / "extension" / "vector.control",  # pgserver's layout
            Path("/usr/share/postgresql") / self.bin.parent.name / "extension" / "vector.control"))  # Debian's

    def create_database(self, name: str | None = None, *, vector: bool = True) -> str:
        """A fresh database owned by the (non-superuser) engine role; its URL. With `vector` (and
        pgvector installed) the superuser creates the extension in it, as an operator would: a
        plain role cannot (pgvector is not a trusted extension)."""
        if name is None:
            self._databases += 1
            name = f"t{os.getpid()}_{self._databases}_{int(time.time() * 1000) % 100000}"
        self.psql(f"CREATE DATABASE {name} OWNER {ROLE}")
        if vector and self.has_pgvector:
            self.psql("CREATE EXTENSION vector", db=name)
        return self.url(name)
