"""Command line: `python -m engine serve | dev | run | data | logs | env | export | import | function-spec | codegen`.

- `serve` opens the Deployment for an app folder and a SQLite file and runs `engine.server.serve`.
  The admin key comes from $CONVEX_ADMIN_KEY, else from `<db dir>/admin_key` (created with mode 0600
  on first start). The key itself is never printed, only where it is. `serve` also notes, in
  `<app>/data/.servers.json`, which key file belongs to the URL it serves (a path, never the key),
  so `run` / `logs` / `data --url` find the key of a server started with any `--db`.
- `run` calls one function through `/api/function` with the admin key, like `npx convex run`.
- `data` lists tables / prints a table's documents, newest first (like `npx convex data`): from a
  running server with `--url` (the CLI's `_system/cli/tableData`), else from the SQLite file, read-only.
- `function-spec` prints the app's functions in Convex's function-spec JSON.
- `codegen` writes `_generated/api.d.ts`, `api.js` and `dataModel.d.ts` for a TypeScript frontend
  (engine.codegen), as `npx convex codegen` would; `dev` regenerates them on every save (into the app
  folder, or `--codegen DIR`; `--no-codegen` turns it off).
- `env list|get|set|remove` edits the env file functions read secrets from (`engine.env`), like
  `npx convex env`: through a running server with `--url` (the same endpoints); for a PostgreSQL
  deployment (`--db postgresql://...` or $DATABASE_URL) the variables in its database, which every
  node reads; else the file itself. `list` masks values unless `--show-values`.
- `logs` follows a running server's executions (`GET /api/stream_function_logs`), like `npx convex logs`:
  one line per execution (function, type, status, duration, error, request id) after its log lines.
- `dev` is `serve` plus a watcher: saved changes to the app's code are loaded into the running
  deployment (engine.dev), like `npx convex dev`.
- `export` / `import` write and restore a snapshot ZIP of every table (engine.snapshot_zip), like
  `npx convex export` / `npx convex import`: through a running server with `--url` (live subscribers
  see an import at once), or offline on the database file with `--db` (stop the server first).

Errors are one line on stderr (`error: ...`) and exit status 1; output piped into `head` ends quietly.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from collections.abc import Coroutine
from typing import Any, Mapping, Sequence

__all__ = ["main", "default_app_dir", "default_db_path", "load_or_create_admin_key"]

ADMIN_KEY_ENV = "CONVEX_ADMIN_KEY"
DATABASE_URL_ENV = "DATABASE_URL"  # the database `serve` uses when --db is not given
URL_ENV = "CONVEX_URL"
PING_INTERVAL_ENV = "CONVEX_SYNC_PING_INTERVAL"


def default_app_dir() -> Path:
    """The repository root: the folder that contains the `engine` package."""
    return Path(__file__).resolve().parent.parent


def default_db_path(app: Path) -> Path:
    return app / "data" / "convex.sqlite3"


def _key_file(app: Path, db: str) -> Path:
    # A database URL (PostgreSQL) has no folder: the key lives where the default database would.
    folder = default_db_path(app).parent if db == ":memory:" or "://" in db else Path(db).resolve().parent
    return folder / "admin_key"


def load_or_create_admin_key(key_file: Path) -> tuple[str, bool]:
    """(key, created). Reuses the key in `key_file`, else writes a fresh one readable by the owner only."""
    if key_file.exists():
        key = key_file.read_text().strip()
        if key:
            return key, False
    key_file.parent.mkdir(parents=True, exist_ok=True)
    # Same shape as a self-hosted Convex key (`<name>|<hex>`); no ':' because `Convex <key>:<identity>`
    # is the impersonation syntax.
    key = f"engine-local|{secrets.token_hex(32)}"
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(key_file, 0o600)
    return key, True


SERVERS_FILE = ".servers.json"
# What `run` says in place of Convex's `npx convex dev` advice after a missing function.
MISSING_ADVICE = ("Did you forget to save it under functions/, or to restart `python -m engine serve` "
                  "(`python -m engine dev` loads every saved change)?")


def _servers_file(app: Path) -> Path:
    return default_db_path(app).parent / SERVERS_FILE


def _record_server(app: Path, url: str, key_file: Path | None) -> None:
    """Note which key file the server at `url` uses (for `run` / `logs` without --admin-key)."""
    path = _servers_file(app)
    if key_file is None and not path.exists():
        return  # nothing to forget
    try:
        known = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(known, dict):
            known = {}
        if key_file is None:
            known.pop(url, None)
        else:
            known[url] = str(key_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(known, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    except (OSError, ValueError):
        pass  # a read-only app folder: `run` then needs --admin-key or $CONVEX_ADMIN_KEY


def _read_key_file(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def _read_admin_key(app: Path, *, db: str | None = None, url: str | None = None) -> str | None:
    """$CONVEX_ADMIN_KEY, else the key beside `db`, else the key file `serve` noted for `url`,
    else the default database's key."""
    key = os.environ.get(ADMIN_KEY_ENV)
    if key:
        return key
    if db:
        return _read_key_file(_key_file(app, db))
    if url:
        try:
            known = json.loads(_servers_file(app).read_text())
        except (OSError, ValueError):
            known = {}
        noted = known.get(url.rstrip("/")) if isinstance(known, dict) else None
        if isinstance(noted, str):
            found = _read_key_file(Path(noted))
            if found:
                return found
    return _read_key_file(_key_file(app, str(default_db_path(app))))


def _check_url(url: str) -> str:
    """A server URL (`http://host:port`), or CliError naming what is wrong."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise CliError(f"--url must be the server's address, such as http://127.0.0.1:3210; got {url!r}")
    return url.rstrip("/")


class CliError(Exception):
    """A one-line error for the user (printed as `error: ...`, exit status 1)."""


def _admin_key_for(args: argparse.Namespace) -> str:
    key = getattr(args, "admin_key", None) or _read_admin_key(
        Path(args.app).resolve(), db=getattr(args, "db", None), url=getattr(args, "url", None))
    if not key:
        raise CliError(f"no admin key; pass --admin-key or set ${ADMIN_KEY_ENV} (or --db of the server's database)")
    return key


def _request(url: str, path: str, admin_key: str, *, body: Any = None, data: bytes | None = None,
             method: str | None = None, timeout: float = 60.0, content_type: str = "application/json") -> Any:
    """One admin request to a running server; its JSON answer (CliError on any failure)."""
    if body is not None:
        data = json.dumps(body).encode()
    request = urllib.request.Request(url + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": content_type, "Authorization": f"Convex {admin_key}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        raise CliError(_http_error_text(e)) from None
    except (urllib.error.URLError, OSError) as e:
        raise CliError(f"cannot reach {url}: {getattr(e, 'reason', e)}") from None
    return json.loads(raw) if raw else None


def _http_error_text(e: urllib.error.HTTPError) -> str:
    try:
        err = json.loads(e.read())
        return f"{err.get('code')}: {err.get('message')}"
    except ValueError:
        return f"HTTP {e.code}"


def _system_query(url: str, admin_key: str, path: str, args: dict[str, Any]) -> Any:
    result = _request(url, "/api/query", admin_key, body={"path": path, "args": args, "format": "convex_encoded_json"})
    if result.get("status") != "success":
        raise CliError(result.get("errorMessage", f"{path} failed"))
    from engine.values import from_wire

    return from_wire(result.get("value"))


# --- serve ---------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    from engine.deployment import Deployment
    from engine.server import serve, tune_gc_for_serving

    app = Path(args.app).resolve()
    _check_app_folder(app)
    db = args.db or os.environ.get(DATABASE_URL_ENV) or str(default_db_path(app))
    from engine.storage import is_url, open_persistence

    if is_url(db):
        open_persistence(db)  # a URL it cannot use is refused here, with the reason
    elif db != ":memory:":
        Path(db).resolve().parent.mkdir(parents=True, exist_ok=True)
    admin_key = os.environ.get(ADMIN_KEY_ENV)
    key_file: Path | None = None
    if admin_key:
        print(f"Using the admin key from ${ADMIN_KEY_ENV}", flush=True)
    else:
        key_file = _key_file(app, db)
        admin_key, created = load_or_create_admin_key(key_file)
        print(f"Admin key {'written to' if created else 'read from'} {key_file}", flush=True)
    from engine import env, logs

    logs.configure_server_logging()
    env_path = Path(args.env_file) if args.env_file else _default_env_file(app, db)
    env.use_file(env_path)
    if is_url(db):
        print("Environment variables: the process environment, then the database's (shared by every node)",
              flush=True)
        if env_path.exists() and env.read_file(env_path):
            print(f"note: {env_path} is not read on PostgreSQL; set its variables with `python -m engine env set "
                  "--db <the database URL> NAME VALUE` (or `npx convex env set`)", flush=True)
    else:
        print(f"Environment variables: the process environment, then {env_path}"
              f"{'' if env_path.exists() else ' (not created yet)'}", flush=True)
    if args.command == "dev":
        from engine.dev import fresh_imports

        fresh_imports()
    env.set_deployment_urls(*deployment_urls(args.host, args.port, args.site_port))
    loop_kind = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
    print(f"Event loop: {loop_kind}", flush=True)
    dep = await Deployment.open(app, db, admin_key=admin_key, node_timeout=args.node_timeout)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    dep.cloud_url = f"http://{shown_host}:{args.port}"
    dep.site_url = f"http://{shown_host}:{args.site_port}"
    _record_server(app, dep.cloud_url, key_file)
    print(f"Dashboard: {dep.cloud_url}/dashboard (log in with the admin key)", flush=True)
    ping_interval = os.environ.get(PING_INTERVAL_ENV)
    if ping_interval and dep.subscriptions is not None:
        # Seconds of outbound silence before an app-level Ping (tests shorten the 15 s default).
        dep.subscriptions.ping_interval = float(ping_interval)
    tune_gc_for_serving(freeze=args.command != "dev")
    if args.command == "dev":
        from engine.dev import serve_dev

        # Like `npx convex dev` (which always rewrites convex/_generated): DIR/_generated/ at start and
        # after every reload; DIR is --codegen, else the app folder (as `codegen` writes by default).
        codegen_dir = None if args.no_codegen else (Path(args.codegen) if args.codegen else Path(args.app)).resolve()
        await serve_dev(dep, args.host, args.port, args.site_port, codegen_dir=codegen_dir)  # closes dep
        return 0
    await serve(dep, args.host, args.port, args.site_port)  # closes dep
    return 0


def _check_app_folder(app: Path) -> None:
    if not app.is_dir():
        raise CliError(f"no app folder at {app}")
    markers = ("schema.py", "functions", "http_routes.py", "crons.py")
    if not any((app / m).exists() for m in markers):
        raise CliError(f"{app} is not an app folder: it has none of schema.py, functions/, http_routes.py, crons.py")


def deployment_urls(host: str, port: int, site_port: int) -> tuple[str, str]:
    """CONVEX_CLOUD_URL / CONVEX_SITE_URL: $CONVEX_CLOUD_ORIGIN / $CONVEX_SITE_ORIGIN when set (a
    deployment behind a proxy), else where `serve` listens (a wildcard host reads as loopback)."""
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    if ":" in shown:
        shown = f"[{shown}]"
    cloud = os.environ.get("CONVEX_CLOUD_ORIGIN") or f"http://{shown}:{port}"
    site = os.environ.get("CONVEX_SITE_ORIGIN") or f"http://{shown}:{site_port}"
    return cloud, site


# --- run -----------------------------------------------------------------------------------------


def _shown(value: Any) -> Any:
    """A value as `npx convex run` shows it: integral numbers without ".0" (float64 4.0 -> 4; int64
    4 -> 4), bytes as base64, NaN / Infinity as strings."""
    import base64

    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value).replace("inf", "Infinity").replace("nan", "NaN")
        return int(value) if value.is_integer() and abs(value) < 2**63 else value
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, list):
        return [_shown(v) for v in value]
    if isinstance(value, dict):
        return {k: _shown(v) for k, v in value.items()}
    return value


def _run(args: argparse.Namespace) -> int:
    try:
        fn_args = json.loads(args.args) if args.args else {}
    except json.JSONDecodeError as e:
        raise CliError(f"ARGS is not valid JSON: {e}") from None
    if not isinstance(fn_args, dict):
        raise CliError("ARGS must be a JSON object")
    url = _check_url(args.url)
    admin_key = _admin_key_for(args)
    if args.push:
        # The server loads the app's functions when it starts; there is no separate push step.
        print("note: --push has no effect; `python -m engine dev` loads saved changes, `serve` loads them at start",
              file=sys.stderr)
    from engine.errors import CONVEX_MISSING_ADVICE
    from engine.values import from_wire, to_wire

    result = _request(url, "/api/function", admin_key, timeout=args.timeout,
                      body={"path": args.function, "args": to_wire(_as_floats(fn_args)),
                            "format": "convex_encoded_json"})
    for line in result.get("logLines", []):
        print(line, file=sys.stderr)
    if result.get("status") != "success":
        # The server words a miss as Convex does; its advice (`npx convex dev`) does not apply here.
        message = str(result.get("errorMessage", "function failed")).replace(CONVEX_MISSING_ADVICE, MISSING_ADVICE)
        print(message, file=sys.stderr)
        if "errorData" in result:
            print(json.dumps(_shown(from_wire(result["errorData"])), indent=2, ensure_ascii=False), file=sys.stderr)
        return 1
    print(json.dumps(_shown(from_wire(result.get("value"))), indent=2, ensure_ascii=False))
    return 0


def _as_floats(value: Any) -> Any:
    """JSON numbers are float64 in Convex (`{"n": 4}` means 4.0), as `npx convex run` sends them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, list):
        return [_as_floats(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and next(iter(value)) in ("$integer", "$bytes", "$float"):
            from engine.values import from_wire

            return from_wire(value)
        return {k: _as_floats(v) for k, v in value.items()}
    return value


# --- data ----------------------------------------------------------------------------------------


def _clean(doc: Any) -> Any:
    from engine.values import decode_json, to_clean_json

    if isinstance(doc, (bytes, str)):
        doc = decode_json(doc)
    return to_clean_json(doc)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _print_table(rows: list[dict]) -> None:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    # System fields first, like the dashboard.
    columns.sort(key=lambda c: (0 if c == "_id" else 1 if c == "_creationTime" else 2))
    cells = [[_cell(row[c]) if c in row else "" for c in columns] for row in rows]
    widths = [min(40, max([len(c)] + [len(r[i]) for r in cells])) for i, c in enumerate(columns)]

    def fmt(values: Sequence[str]) -> str:
        return " | ".join(v[:w].ljust(w) for v, w in zip(values, widths)).rstrip()

    print(fmt(columns))
    print("-+-".join("-" * w for w in widths))
    for r in cells:
        print(fmt(r))


def _offline_sqlite_db(args: argparse.Namespace, verb: str) -> Path:
    """The SQLite file an offline verb works on. A PostgreSQL database is shared by running nodes,
    so the offline form refuses it: the running server's URL does the same through the cluster."""
    from engine.storage import is_url

    if args.db and is_url(args.db):
        raise CliError(f"`{verb} --db` works on a SQLite file; for a PostgreSQL deployment pass --url of one "
                       "of its running servers")
    return Path(args.db) if args.db else default_db_path(Path(args.app).resolve())


def _data(args: argparse.Namespace) -> int:
    if args.url:
        return _data_from_server(args)
    from engine import storage

    db = _offline_sqlite_db(args, "data")
    if not db.exists():
        raise CliError(f"no database at {db} (pass --db FILE, or --url of a running server)")
    try:
        result = storage.read_only_dump(db, table=args.table, limit=args.limit, order=args.order)
    except KeyError:
        raise CliError(f"table {args.table!r} does not exist") from None
    if args.table is None:
        assert isinstance(result, dict)
        _print_tables(result)
        return 0
    _print_documents(args, [_clean(d) for d in result])
    return 0


def _print_tables(counts: Mapping[str, int | None]) -> None:
    if not counts:
        print("There are no tables.")
    width = max((len(name) for name in counts), default=0)
    for name, count in counts.items():
        print(name if count is None else f"{name.ljust(width)}  {count}")


def _print_documents(args: argparse.Namespace, docs: list[Any]) -> None:
    docs = [_shown(doc) for doc in docs]  # numbers as `npx convex data` prints them: 0, not 0.0
    if args.format == "table":
        if docs:
            _print_table(docs)
        else:
            print(f"There are no documents in {args.table}.")
    else:
        for doc in docs:
            print(json.dumps(doc, ensure_ascii=False))


def _data_from_server(args: argparse.Namespace) -> int:
    from engine.values import to_clean_json

    url = _check_url(args.url)
    key = _admin_key_for(args)
    if args.table is None:
        tables = _system_query(url, key, "_system/cli/tables", {"paginationOpts": {"numItems": 1000.0, "cursor": None}})
        _print_tables({t["name"]: None for t in tables["page"]})
        return 0
    docs: list[Any] = []
    cursor = None
    while len(docs) < args.limit:
        page = _system_query(url, key, "_system/cli/tableData", {
            "table": args.table, "order": args.order,
            "paginationOpts": {"numItems": float(args.limit - len(docs)), "cursor": cursor}})
        docs.extend(page["page"])
        if page["isDone"]:
            break
        cursor = page["continueCursor"]
    _print_documents(args, [to_clean_json(d) for d in docs[:args.limit]])
    return 0


# --- env -----------------------------------------------------------------------------------------


def _default_env_file(app: Path, db: str) -> Path:
    from engine.env import ENV_FILE_NAME

    return _key_file(app, db).parent / ENV_FILE_NAME


def _env(args: argparse.Namespace) -> int:
    from engine import env
    from engine.errors import EngineError
    from engine.storage import is_url

    if args.url:
        return _env_on_server(args)
    app = Path(args.app).resolve()
    db = args.db or os.environ.get(DATABASE_URL_ENV) or str(default_db_path(app))
    try:
        if is_url(db) and not args.env_file:  # PostgreSQL: the database's variables, for every node
            return _env_in_database(args, db)
        path = Path(args.env_file) if args.env_file else _default_env_file(app, db)
        if args.env_command == "list":
            values = env.read_file(path)
            if not values:
                print(f"No environment variables in {path}.", file=sys.stderr)
            _print_env(args, values)
            return 0
        if args.env_command == "get":
            value = os.environ.get(args.name)
            if value is not None:
                print("(from the process environment)", file=sys.stderr)
            else:
                value = env.read_file(path).get(args.name)
            if value is None:
                print(f"error: environment variable {args.name} is not set in {path} or the environment",
                      file=sys.stderr)
                return 1
            print(value)
            return 0
        if args.env_command == "set":
            value = args.value if args.value is not None else sys.stdin.read().rstrip("\r\n")
            created = env.set_var(path, args.name, value)
            print(f"{'Added' if created else 'Updated'} {args.name} in {path}")
            _note_process_env(args.name)
            return 0
        removed = env.remove_var(path, args.name)
        print(f"Removed {args.name} from {path}" if removed else f"{args.name} was not set in {path}")
        return 0
    except EngineError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1


def _env_on_server(args: argparse.Namespace) -> int:
    """`env` through a running server (`--url`): what `npx convex env` calls, so it also reaches a
    server whose env file is somewhere this machine cannot see."""
    if args.env_file:
        raise CliError("--env-file and --url exclude each other: --url edits the running server's env file")
    url = _check_url(args.url)
    key = _admin_key_for(args)
    if args.env_command == "list":
        values = _system_query(url, key, "_system/cli/queryEnvironmentVariables", {})
        if not values:
            print(f"No environment variables on {url}.", file=sys.stderr)
        for item in values:
            print(f"{item['name']}={item['value'] if args.show_values else '********'}")
        return 0
    if args.env_command == "get":
        found = _system_query(url, key, "_system/cli/queryEnvironmentVariables:get", {"name": args.name})
        if found is None:
            print(f"error: environment variable {args.name} is not set on {url}", file=sys.stderr)
            return 1
        print(found["value"])
        return 0
    if args.env_command == "set":
        value = args.value if args.value is not None else sys.stdin.read().rstrip("\r\n")
        _request(url, "/api/update_environment_variables", key, body={"changes": [{"name": args.name, "value": value}]})
        print(f"Set {args.name} on {url}")
        return 0
    was = _system_query(url, key, "_system/cli/queryEnvironmentVariables:get", {"name": args.name})
    _request(url, "/api/update_environment_variables", key, body={"changes": [{"name": args.name, "value": None}]})
    print(f"Removed {args.name} from {url}" if was is not None else f"{args.name} was not set on {url}")
    return 0


def _print_env(args: argparse.Namespace, values: Mapping[str, str]) -> None:
    for name, value in sorted(values.items()):
        shown = value if args.show_values else "********"
        note = "  (overridden by the process environment)" if name in os.environ else ""
        print(f"{name}={shown}{note}")


def _note_process_env(name: str) -> None:
    if name in os.environ:
        print(f"note: {name} is also set in this process environment, which takes precedence", file=sys.stderr)


def _env_in_database(args: argparse.Namespace, url: str) -> int:
    """`env` on a PostgreSQL deployment: the variables in its database (running nodes see a change
    at once)."""
    from engine import env
    from engine.storage.postgres import describe_url, env_vars_at, update_env_at

    where = f"the database {describe_url(url)}"
    if args.env_command in ("list", "get"):
        values = asyncio.run(env_vars_at(url))
        if args.env_command == "list":
            if not values:
                print(f"No environment variables in {where}.", file=sys.stderr)
            _print_env(args, values)
            return 0
        value = os.environ.get(args.name)
        if value is not None:
            print("(from the process environment)", file=sys.stderr)
        else:
            value = values.get(args.name)
        if value is None:
            print(f"error: environment variable {args.name} is not set in {where} or the environment", file=sys.stderr)
            return 1
        print(value)
        return 0
    if args.env_command == "set":
        value = args.value if args.value is not None else sys.stdin.read().rstrip("\r\n")
        (change,) = env.check_changes([{"name": args.name, "value": value}])
        created = args.name not in asyncio.run(env_vars_at(url))
        asyncio.run(update_env_at(url, [change]))
        print(f"{'Added' if created else 'Updated'} {args.name} in {where}")
        _note_process_env(args.name)
        return 0
    env.check_name(args.name)
    present = args.name in asyncio.run(env_vars_at(url))
    if present:
        asyncio.run(update_env_at(url, [(args.name, None)]))
    print(f"Removed {args.name} from {where}" if present else f"{args.name} was not set in {where}")
    return 0


# --- logs ----------------------------------------------------------------------------------------

_KIND_LETTERS = {"query": "Q", "mutation": "M", "action": "A", "http": "H"}


def _format_execution(entry: dict[str, Any]) -> list[str]:
    """An execution's log lines, then one line with its outcome, as `npx convex logs` prints them
    (plus the status, duration and request id on the last line)."""
    import time

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("timestamp", 0)))
    prefix = f"{when} [CONVEX {_KIND_LETTERS.get(entry.get('kind', ''), '?')}({entry.get('function', '')})]"
    lines = [f"{prefix} {line}" for line in entry.get("logLines", [])]
    outcome = f"{entry.get('status')} in {entry.get('durationMs', 0):.1f} ms [Request ID: {entry.get('requestId')}]"
    if entry.get("occRetries"):
        outcome += f" after {entry['occRetries']} OCC retries"
    if entry.get("error"):
        outcome += f" {entry['error']}"
    lines.append(f"{prefix} {outcome}")
    return lines


def _logs(args: argparse.Namespace) -> int:
    import time

    url = _check_url(args.url)
    admin_key = _admin_key_for(args)
    cursor = 0.0
    first = True
    failures = 0
    try:
        while True:
            try:
                answer = _request(url, f"/api/stream_function_logs?cursor={cursor!r}&format=engine", admin_key,
                                  timeout=60)
            except CliError:
                if first:
                    raise
                failures += 1
                if failures > 5:
                    raise
                time.sleep(min(2.0 ** failures * 0.1, 5.0))
                continue
            failures = 0
            entries = answer.get("entries", [])
            cursor = float(answer.get("newCursor", cursor))
            if first:
                first = False
                print(f"Watching logs for {url}...", file=sys.stderr, flush=True)
                entries = entries[-args.history:] if args.history else []
            for entry in entries:
                if args.jsonl:
                    print(json.dumps(entry, ensure_ascii=False), flush=True)
                    continue
                if entry.get("status") == "success" and not entry.get("logLines") and not args.success:
                    continue  # like `npx convex logs`: quiet successes unless --success
                for line in _format_execution(entry):
                    print(line, flush=True)
    except KeyboardInterrupt:
        return 0


# --- export / import -----------------------------------------------------------------------------


def _progress(total: int | None, desc: str, unit: str = "B") -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, unit_divisor=1024 if unit == "B" else 1000,
                disable=None, file=sys.stderr, leave=False)


async def _export(args: argparse.Namespace) -> int:
    from engine.errors import EngineError
    from engine.snapshot_zip import export_snapshot

    if args.url:
        return _export_from_server(args)
    db = _offline_sqlite_db(args, "export")
    try:
        counts = await export_snapshot(db, args.path, include_file_storage=args.include_file_storage)
    except EngineError as e:
        raise CliError(e.message) from None
    total = sum(counts.values())
    print(f"Exported {total} documents from {len(counts)} tables to {args.path}")
    return 0


def _export_from_server(args: argparse.Namespace) -> int:
    url = _check_url(args.url)
    key = _admin_key_for(args)
    target = Path(args.path)
    if target.exists():
        raise CliError(f"{target} already exists; choose an unoccupied path")
    storage = "?includeStorage=true" if args.include_file_storage else ""
    answer = _request(url, f"/api/export/request/zip{storage}", key, data=b"", timeout=3600)
    state = _system_query(url, key, "_system/cli/exports:getLatest", {})
    if not state or state.get("state") != "completed":
        raise CliError(f"the export did not complete: {state!r}")
    ts = state["start_ts"]
    request = urllib.request.Request(f"{url}/api/export/zip/{ts}", headers={"Authorization": f"Convex {key}"})
    tmp = target.with_name(f".{target.name}.part")
    try:
        with urllib.request.urlopen(request, timeout=3600) as resp, open(tmp, "wb") as out:
            size = int(resp.headers.get("content-length") or 0) or None
            with _progress(size, f"Downloading {target.name}") as bar:
                while chunk := resp.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, target)
    except urllib.error.HTTPError as e:
        raise CliError(_http_error_text(e)) from None
    except (urllib.error.URLError, OSError) as e:
        raise CliError(f"cannot download the export from {url}: {getattr(e, 'reason', e)}") from None
    finally:
        tmp.unlink(missing_ok=True)
    del answer
    print(f"Exported {int(state.get('documents', 0))} documents from {int(state.get('tables', 0))} tables "
          f"at timestamp {ts} to {target}")
    return 0


async def _import(args: argparse.Namespace) -> int:
    from engine.errors import EngineError
    from engine.snapshot_zip import import_snapshot

    if not Path(args.path).is_file():
        raise CliError(f"no snapshot at {args.path}")
    if args.url:
        return _import_into_server(args)
    app = Path(args.app).resolve()
    db = _offline_sqlite_db(args, "import")
    db.resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        counts = await import_snapshot(app, db, args.path, replace=args.replace)
    except EngineError as e:
        raise CliError(f"import refused, nothing was written: {e.message}") from None
    total = sum(counts.values())
    print(f"Imported {total} documents into {len(counts)} tables from {args.path}")
    return 0


def _import_into_server(args: argparse.Namespace) -> int:
    url = _check_url(args.url)
    key = _admin_key_for(args)
    path = Path(args.path)
    fmt = args.format or {".zip": "zip", ".jsonl": "jsonLines", ".json": "jsonArray", ".csv": "csv"}.get(
        path.suffix.lower(), "zip")
    mode = "replace" if args.replace else "append" if args.append else "requireEmpty"
    token = _request(url, "/api/import/start_upload", key, data=b"")["uploadToken"]
    parts = []
    chunk_size = 8 << 20
    with open(path, "rb") as f, _progress(path.stat().st_size, f"Uploading {path.name}") as bar:
        number = 1
        while chunk := f.read(chunk_size):
            parts.append(_request(url, f"/api/import/upload_part?uploadToken={urllib.parse.quote(token)}"
                                       f"&partNumber={number}", key, data=chunk,
                                  content_type="application/octet-stream", timeout=600))
            bar.update(len(chunk))
            number += 1
    import_args: dict[str, Any] = {"format": fmt, "mode": mode}
    if args.table:
        import_args["tableName"] = args.table
    import_id = _request(url, "/api/import/finish_upload", key, timeout=3600,
                         body={"import": import_args, "uploadToken": token, "partTokens": parts})["importId"]
    state = _system_query(url, key, "_system/cli/queryImport", {"importId": import_id})["state"]
    if state.get("state") == "waiting_for_confirmation":
        _request(url, "/api/perform_import", key, body={"importId": import_id}, timeout=3600)
        state = _system_query(url, key, "_system/cli/queryImport", {"importId": import_id})["state"]
    if state.get("state") != "completed":
        raise CliError(f"import refused, nothing was written: {state.get('error_message', state)}")
    print(f"Imported {state.get('num_rows_written', 0)} documents into {url} from {path}")
    return 0


# --- function-spec / codegen -----------------------------------------------------------------------


async def _function_spec(args: argparse.Namespace) -> int:
    from engine.deployment import Deployment

    app = Path(args.app).resolve()
    _check_app_folder(app)
    dep = await Deployment.open(app, ":memory:")
    try:
        from engine.system_udfs import full_spec

        print(json.dumps(full_spec(dep), indent=2, ensure_ascii=False))
    finally:
        await dep.close()
    return 0


def _codegen(args: argparse.Namespace) -> int:
    from engine.codegen import write_generated
    from engine.loader import load_app

    app_dir = Path(args.app).resolve()
    _check_app_folder(app_dir)
    out = Path(args.out).resolve() if args.out else app_dir
    written = write_generated(load_app(app_dir), out)
    print(f"Wrote {', '.join(str(p.relative_to(out)) for p in written)} in {out}")
    return 0


# --- parser --------------------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="A Convex-compatible backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    app_help = "the app folder (schema.py, functions/); default: the repository root"

    p = sub.add_parser("serve", help="run the API (3210) and HTTP-actions (3211) servers")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file (or :memory:), or postgresql://USER:PASSWORD@HOST:PORT/DB (several "
                                f"nodes may serve one); default: ${DATABASE_URL_ENV}, else <app>/data/convex.sqlite3")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3210)
    p.add_argument("--site-port", type=int, default=3211)
    p.add_argument("--env-file", help="JSON env file for functions' secrets; default: <db dir>/env.json "
                                      "(the process environment takes precedence)")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop: uvloop when installed (auto, the default) or the standard asyncio loop")
    p.add_argument("--node-timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                   help="PostgreSQL with several nodes: a node not heard from for this long (default 10) has "
                        "stopped, and another node records its actions in progress failed (within about twice this)")

    p = sub.add_parser("dev", help="serve, and load saved code changes without dropping clients")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file (or :memory:), or a postgresql:// URL; default: "
                                f"${DATABASE_URL_ENV}, else <app>/data/convex.sqlite3")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3210)
    p.add_argument("--site-port", type=int, default=3211)
    p.add_argument("--env-file", help="JSON env file for functions' secrets; default: <db dir>/env.json")
    p.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                   help="event loop: uvloop when installed (auto, the default) or the standard asyncio loop")
    p.add_argument("--node-timeout", type=_positive_seconds, default=None, metavar="SECONDS",
                   help="PostgreSQL with several nodes: a node not heard from for this long (default 10) has "
                        "stopped, and another node records its actions in progress failed (within about twice this)")
    p.add_argument("--codegen", metavar="DIR", help="the folder whose _generated/ (the TypeScript api) is "
                                                    "written at start and after every reload, like `npx convex dev` "
                                                    "(default: the app folder)")
    p.add_argument("--no-codegen", action="store_true", help="do not write _generated/")

    key_help = f"default: ${ADMIN_KEY_ENV}, else the key the server at --url wrote beside its database"
    p = sub.add_parser("export", help="write every table to a snapshot ZIP, like `npx convex export`")
    p.add_argument("--path", required=True, help="the ZIP file to write (must not exist)")
    p.add_argument("--url", help="a running server to export from (else the database file, offline)")
    p.add_argument("--admin-key", help=key_help)
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file; default: <app>/data/convex.sqlite3")
    p.add_argument("--include-file-storage", action="store_true",
                   help="also write stored files (_storage), as `npx convex export --include-file-storage`")

    p = sub.add_parser("import", help="restore a snapshot ZIP (same ids), through a running server (--url) "
                                      "or offline into a stopped one's database")
    p.add_argument("--path", required=True, help="the snapshot ZIP (or, with --table, a .jsonl / .json file)")
    p.add_argument("--url", help="a running server to import into: live subscribers see the import at once")
    p.add_argument("--admin-key", help=key_help)
    p.add_argument("--replace", action="store_true", help="replace the imported tables (offline: everything)")
    p.add_argument("--append", action="store_true", help="with --url: add to the tables' documents")
    p.add_argument("--table", help="with --url: the table a .jsonl / .json file goes into")
    p.add_argument("--format", choices=["zip", "jsonLines", "jsonArray"], help="default: from the file name")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help + "; its schema is checked")
    p.add_argument("--db", help="SQLite file; default: <app>/data/convex.sqlite3")

    p = sub.add_parser("run", help="run a function with the admin key, like `npx convex run`")
    p.add_argument("function", metavar="FUNCTION", help='e.g. "tasks:list" or "dir/file:fn"')
    p.add_argument("args", metavar="ARGS_JSON", nargs="?", help="arguments as a JSON object")
    p.add_argument("--url", default=os.environ.get(URL_ENV, "http://127.0.0.1:3210"))
    p.add_argument("--admin-key", help=key_help)
    p.add_argument("--db", help="the server's SQLite file: its admin key is read from beside it")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--push", action="store_true", help="accepted for npx compatibility (no effect)")
    p.add_argument("--timeout", type=float, default=60.0)

    p = sub.add_parser("data", help="list tables, or print a table's documents (newest first)")
    p.add_argument("table", metavar="TABLE", nargs="?")
    p.add_argument("--url", help="read from a running server (else the database file, read-only)")
    p.add_argument("--admin-key", help=key_help)
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file; default: <app>/data/convex.sqlite3")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--order", choices=["desc", "asc"], default="desc", help="by creation time; default: newest first")
    p.add_argument("--format", choices=["jsonl", "table"], default="jsonl")

    p = sub.add_parser("function-spec", help="print the app's functions as Convex function-spec JSON")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)

    p = sub.add_parser("codegen", help="write _generated/ (api.d.ts, api.js, dataModel.d.ts) for a TypeScript "
                                       "frontend, like `npx convex codegen`")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--out", metavar="DIR", help="the folder that receives _generated/ (your frontend's convex/); "
                                                "default: the app folder")

    p = sub.add_parser("env", help="list, get, set or remove environment variables, like `npx convex env`")
    env_sub = p.add_subparsers(dest="env_command", required=True)
    for name, text in [("list", "list variable names (values masked unless --show-values)"),
                       ("get", "print one variable's value"), ("set", "set a variable (VALUE or stdin)"),
                       ("remove", "remove a variable")]:
        q = env_sub.add_parser(name, help=text)
        if name != "list":
            q.add_argument("name", metavar="NAME")
        if name == "set":
            q.add_argument("value", metavar="VALUE", nargs="?", help="default: read from stdin")
        if name == "list":
            q.add_argument("--show-values", action="store_true", help="print the values too")
        q.add_argument("--url", help="a running server (its env file, through `POST /api/update_environment_"
                                     "variables`, as `npx convex env`); else the env file, offline")
        q.add_argument("--admin-key", help=key_help)
        q.add_argument("--app", default=str(default_app_dir()), help=app_help)
        q.add_argument("--db", help="SQLite file whose folder holds env.json, or the postgresql:// URL of a "
                                    f"deployment (its variables are in the database); default: ${DATABASE_URL_ENV}, "
                                    "else <app>/data/convex.sqlite3")
        q.add_argument("--env-file", help="the env file itself (overrides --db)")

    p = sub.add_parser("logs", help="follow function executions of a running server, like `npx convex logs`")
    p.add_argument("--url", default=os.environ.get(URL_ENV, "http://127.0.0.1:3210"))
    p.add_argument("--admin-key", help=key_help)
    p.add_argument("--db", help="the server's SQLite file: its admin key is read from beside it")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--history", type=int, default=0, metavar="N", help="first show the N latest executions")
    p.add_argument("--success", action="store_true", help="also print successful executions without log lines")
    p.add_argument("--jsonl", action="store_true", help="print each execution as a JSON line")
    return parser


def _run_loop(main: Coroutine[Any, Any, int], choice: str) -> int:
    """Run the server on the chosen event loop. uvloop (libuv) does the same work as asyncio's
    selector loop with less Python per socket event; `auto` uses it when it is installed."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise CliError("--loop uvloop: the uvloop package is not installed") from None
        else:
            return uvloop.run(main)
    return asyncio.run(main)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command in ("serve", "dev"):
        return _run_loop(_serve(args), args.loop)
    if args.command == "run":
        return _run(args)
    if args.command == "data":
        return _data(args)
    if args.command == "env":
        return _env(args)
    if args.command == "logs":
        return _logs(args)
    if args.command == "export":
        return asyncio.run(_export(args))
    if args.command == "import":
        return asyncio.run(_import(args))
    if args.command == "codegen":
        return _codegen(args)
    return asyncio.run(_function_spec(args))


def main(argv: Sequence[str] | None = None) -> int:
    from engine.errors import EngineError

    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "dev") and hasattr(signal, "SIGPIPE"):
        # Output piped into `head` ends quietly, like any Unix tool (the server keeps Python's default).
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        return _dispatch(args)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
    except EngineError as e:
        print(f"error: {e.message}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return 1
