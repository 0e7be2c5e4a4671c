"""Command line: `python -m engine serve | run | data | function-spec`.

- `serve` opens the Deployment for an app folder and a SQLite file and runs `engine.server.serve`.
  The admin key comes from $CONVEX_ADMIN_KEY, else from `<db dir>/admin_key` (created with mode 0600
  on first start). The key itself is never printed, only where it is.
- `run` calls one function through `/api/function` with the admin key, like `npx convex run`.
- `data` reads the SQLite file read-only (`engine.storage.read_only_dump`), like `npx convex data`.
- `function-spec` prints the app's functions in Convex's function-spec JSON.
- `env list|get|set|remove` edits the env file functions read secrets from (`engine.env`), like
  `npx convex env`; `list` masks values unless `--show-values`.
- `logs` follows a running server's function log lines (`GET /api/logs/stream`), like `npx convex logs`.
- `dev` is `serve` plus a watcher: saved changes to the app's code are loaded into the running
  deployment (engine.dev), like `npx convex dev`.
- `export` / `import` write and restore a snapshot ZIP of every table (engine.snapshot_zip), like
  `npx convex export` / `npx convex import`; import writes the database file directly (stop the server).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import os
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "default_app_dir", "default_db_path", "load_or_create_admin_key"]

ADMIN_KEY_ENV = "CONVEX_ADMIN_KEY"
URL_ENV = "CONVEX_URL"
PING_INTERVAL_ENV = "CONVEX_SYNC_PING_INTERVAL"


def default_app_dir() -> Path:
    """The repository root: the folder that contains the `engine` package."""
    return Path(__file__).resolve().parent.parent


def default_db_path(app: Path) -> Path:
    return app / "data" / "convex.sqlite3"


def _key_file(app: Path, db: str) -> Path:
    folder = default_db_path(app).parent if db == ":memory:" else Path(db).resolve().parent
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


def _read_admin_key(app: Path) -> str | None:
    key = os.environ.get(ADMIN_KEY_ENV)
    if key:
        return key
    key_file = _key_file(app, str(default_db_path(app)))
    if key_file.exists():
        return key_file.read_text().strip() or None
    return None


# --- serve ---------------------------------------------------------------------------------------


async def _serve(args: argparse.Namespace) -> int:
    from engine.deployment import Deployment
    from engine.server import serve, tune_gc_for_serving

    app = Path(args.app).resolve()
    db = args.db or str(default_db_path(app))
    if db != ":memory:":
        Path(db).resolve().parent.mkdir(parents=True, exist_ok=True)
    admin_key = os.environ.get(ADMIN_KEY_ENV)
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
    print(f"Environment variables: the process environment, then {env_path}"
          f"{'' if env_path.exists() else ' (not created yet)'}", flush=True)
    if args.command == "dev":
        from engine.dev import fresh_imports

        fresh_imports()
    dep = await Deployment.open(app, db, admin_key=admin_key)
    ping_interval = os.environ.get(PING_INTERVAL_ENV)
    if ping_interval and dep.subscriptions is not None:
        # Seconds of outbound silence before an app-level Ping (tests shorten the 15 s default).
        dep.subscriptions.ping_interval = float(ping_interval)
    tune_gc_for_serving(freeze=args.command != "dev")
    if args.command == "dev":
        from engine.dev import serve_dev

        await serve_dev(dep, args.host, args.port, args.site_port)  # closes dep
        return 0
    await serve(dep, args.host, args.port, args.site_port)  # closes dep
    return 0


# --- run -----------------------------------------------------------------------------------------


def _http_error(e: urllib.error.HTTPError) -> int:
    """Report a non-2xx answer of the server ({code, message} when it sent one); exit status 1."""
    try:
        err = json.loads(e.read())
        print(f"error: {err.get('code')}: {err.get('message')}", file=sys.stderr)
    except ValueError:
        print(f"error: HTTP {e.code}", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace) -> int:
    try:
        fn_args = json.loads(args.args) if args.args else {}
    except json.JSONDecodeError as e:
        print(f"error: ARGS is not valid JSON: {e}", file=sys.stderr)
        return 1
    if not isinstance(fn_args, dict):
        print("error: ARGS must be a JSON object", file=sys.stderr)
        return 1
    admin_key = args.admin_key or _read_admin_key(Path(args.app).resolve())
    if not admin_key:
        print(f"error: no admin key; pass --admin-key or set ${ADMIN_KEY_ENV}", file=sys.stderr)
        return 1
    if args.push:
        # The server loads the app's functions when it starts; there is no separate push step.
        print("note: --push has no effect; restart `python -m engine serve` to load changed code", file=sys.stderr)
    body = json.dumps({"path": args.function, "args": fn_args, "format": "json"}).encode()
    request = urllib.request.Request(
        args.url.rstrip("/") + "/api/function",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Convex {admin_key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as resp:
            result = json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return _http_error(e)
    except (urllib.error.URLError, OSError) as e:
        print(f"error: cannot reach {args.url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    for line in result.get("logLines", []):
        print(line, file=sys.stderr)
    if result.get("status") != "success":
        print(result.get("errorMessage", "function failed"), file=sys.stderr)
        if "errorData" in result:
            print(json.dumps(result["errorData"], indent=2), file=sys.stderr)
        return 1
    print(json.dumps(result.get("value"), indent=2))
    return 0


# --- data ----------------------------------------------------------------------------------------


def _clean(doc: Any) -> Any:
    from engine.values import decode_json, to_clean_json

    if isinstance(doc, (bytes, str)):
        doc = decode_json(doc)
    return to_clean_json(doc)


def _cell(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


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


def _data(args: argparse.Namespace) -> int:
    from engine import storage

    db = Path(args.db) if args.db else default_db_path(Path(args.app).resolve())
    if not db.exists():
        print(f"error: no database at {db}", file=sys.stderr)
        return 1
    try:
        result = storage.read_only_dump(db, table=args.table, limit=args.limit)
        if inspect.isawaitable(result):
            result = asyncio.run(result)
    except KeyError:
        print(f"error: table {args.table!r} does not exist", file=sys.stderr)
        return 1
    if args.table is None:
        if not result:
            print("There are no tables.")
        width = max((len(name) for name in result), default=0)
        for name, count in result.items():
            print(f"{name.ljust(width)}  {count}")
        return 0
    docs = [_clean(d) for d in result]
    if args.format == "table":
        if docs:
            _print_table(docs)
        else:
            print(f"There are no documents in {args.table}.")
    else:
        for doc in docs:
            print(json.dumps(doc, ensure_ascii=False))
    return 0


# --- env -----------------------------------------------------------------------------------------


def _default_env_file(app: Path, db: str) -> Path:
    from engine.env import ENV_FILE_NAME

    return _key_file(app, db).parent / ENV_FILE_NAME


def _env(args: argparse.Namespace) -> int:
    from engine import env
    from engine.errors import EngineError

    app = Path(args.app).resolve()
    path = Path(args.env_file) if args.env_file else _default_env_file(app, args.db or str(default_db_path(app)))
    try:
        if args.env_command == "list":
            values = env.read_file(path)
            if not values:
                print(f"No environment variables in {path}.", file=sys.stderr)
            for name, value in sorted(values.items()):
                shown = value if args.show_values else "********"
                note = "  (overridden by the process environment)" if name in os.environ else ""
                print(f"{name}={shown}{note}")
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
            if args.name in os.environ:
                print(f"note: {args.name} is also set in this process environment, which takes precedence",
                      file=sys.stderr)
            return 0
        removed = env.remove_var(path, args.name)
        print(f"Removed {args.name} from {path}" if removed else f"{args.name} was not set in {path}")
        return 0
    except EngineError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1


# --- logs ----------------------------------------------------------------------------------------

_KIND_LETTERS = {"query": "Q", "mutation": "M", "action": "A", "http": "H"}


def _format_log_entry(entry: dict) -> str:
    import time

    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.get("ts", 0)))
    letter = _KIND_LETTERS.get(entry.get("kind", ""), "?")
    return f"{when} [CONVEX {letter}({entry.get('path', '')})] {entry.get('line', '')}"


def _logs(args: argparse.Namespace) -> int:
    admin_key = args.admin_key or _read_admin_key(Path(args.app).resolve())
    if not admin_key:
        print(f"error: no admin key; pass --admin-key or set ${ADMIN_KEY_ENV}", file=sys.stderr)
        return 1
    url = args.url.rstrip("/")
    request = urllib.request.Request(
        url + "/api/logs/stream", headers={"Authorization": f"Convex {admin_key}", "Accept": "text/event-stream"}
    )
    try:
        # The server sends a keep-alive comment every 15 s, so a much longer silence means it is gone.
        with urllib.request.urlopen(request, timeout=60) as resp:
            event = ""
            for raw in resp:
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                if line == ": connected":
                    print(f"Watching logs for {url}...", file=sys.stderr, flush=True)
                elif line.startswith("event:"):
                    event = line[len("event:"):].strip()
                elif line.startswith("data:"):
                    entry = json.loads(line[len("data:"):])
                    if event == "dropped":
                        print(f"({entry.get('dropped')} log lines dropped: this reader fell behind)",
                              file=sys.stderr, flush=True)
                    elif args.jsonl:
                        print(json.dumps(entry, ensure_ascii=False), flush=True)
                    else:
                        print(_format_log_entry(entry), flush=True)
                elif not line:
                    event = ""
    except KeyboardInterrupt:
        return 0
    except urllib.error.HTTPError as e:
        return _http_error(e)
    except (urllib.error.URLError, OSError) as e:
        print(f"error: cannot follow logs at {url}: {getattr(e, 'reason', e)}", file=sys.stderr)
        return 1
    print("The server closed the log stream.", file=sys.stderr)
    return 0


# --- export / import -----------------------------------------------------------------------------


async def _export(args: argparse.Namespace) -> int:
    from engine.errors import EngineError
    from engine.snapshot_zip import export_snapshot

    db = Path(args.db) if args.db else default_db_path(Path(args.app).resolve())
    try:
        counts = await export_snapshot(db, args.path)
    except EngineError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    total = sum(counts.values())
    print(f"Exported {total} documents from {len(counts)} tables to {args.path}")
    return 0


async def _import(args: argparse.Namespace) -> int:
    from engine.errors import EngineError
    from engine.snapshot_zip import import_snapshot

    app = Path(args.app).resolve()
    db = Path(args.db) if args.db else default_db_path(app)
    if not Path(args.path).is_file():
        print(f"error: no snapshot at {args.path}", file=sys.stderr)
        return 1
    db.resolve().parent.mkdir(parents=True, exist_ok=True)
    try:
        counts = await import_snapshot(app, db, args.path, replace=args.replace)
    except EngineError as e:
        print(f"error: import refused, nothing was written: {e.message}", file=sys.stderr)
        return 1
    total = sum(counts.values())
    print(f"Imported {total} documents into {len(counts)} tables from {args.path}")
    return 0


# --- function-spec -------------------------------------------------------------------------------


async def _function_spec(args: argparse.Namespace) -> int:
    from engine.deployment import Deployment

    dep = await Deployment.open(Path(args.app).resolve(), ":memory:")
    try:
        print(json.dumps(dep.function_spec(), indent=2))
    finally:
        await dep.close()
    return 0


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engine", description="A Convex-compatible backend.")
    sub = parser.add_subparsers(dest="command", required=True)
    app_help = "the app folder (schema.py, functions/); default: the repository root"

    p = sub.add_parser("serve", help="run the API (3210) and HTTP-actions (3211) servers")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file (or :memory:); default: <app>/data/convex.sqlite3")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3210)
    p.add_argument("--site-port", type=int, default=3211)
    p.add_argument("--env-file", help="JSON env file for functions' secrets; default: <db dir>/env.json "
                                      "(the process environment takes precedence)")

    p = sub.add_parser("dev", help="serve, and load saved code changes without dropping clients")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file (or :memory:); default: <app>/data/convex.sqlite3")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3210)
    p.add_argument("--site-port", type=int, default=3211)
    p.add_argument("--env-file", help="JSON env file for functions' secrets; default: <db dir>/env.json")

    p = sub.add_parser("export", help="write every table to a snapshot ZIP, like `npx convex export`")
    p.add_argument("--path", required=True, help="the ZIP file to write (must not exist)")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file; default: <app>/data/convex.sqlite3")

    p = sub.add_parser("import", help="restore a snapshot ZIP (same ids) into an empty deployment; "
                                      "stop the server first")
    p.add_argument("--path", required=True, help="the snapshot ZIP")
    p.add_argument("--replace", action="store_true", help="replace everything the deployment holds")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help + "; its schema is checked")
    p.add_argument("--db", help="SQLite file; default: <app>/data/convex.sqlite3")

    p = sub.add_parser("run", help="run a function with the admin key, like `npx convex run`")
    p.add_argument("function", metavar="FUNCTION", help='e.g. "tasks:list" or "dir/file:fn"')
    p.add_argument("args", metavar="ARGS_JSON", nargs="?", help="arguments as a JSON object")
    p.add_argument("--url", default=os.environ.get(URL_ENV, "http://127.0.0.1:3210"))
    p.add_argument("--admin-key", help=f"default: ${ADMIN_KEY_ENV}, else <app>/data/admin_key")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--push", action="store_true", help="accepted for npx compatibility (no effect)")
    p.add_argument("--timeout", type=float, default=60.0)

    p = sub.add_parser("data", help="list tables, or print a table's documents")
    p.add_argument("table", metavar="TABLE", nargs="?")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--db", help="SQLite file; default: <app>/data/convex.sqlite3")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--format", choices=["jsonl", "table"], default="jsonl")

    p = sub.add_parser("function-spec", help="print the app's functions as Convex function-spec JSON")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)

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
        q.add_argument("--app", default=str(default_app_dir()), help=app_help)
        q.add_argument("--db", help="SQLite file whose folder holds env.json; default: <app>/data/convex.sqlite3")
        q.add_argument("--env-file", help="the env file itself (overrides --db)")

    p = sub.add_parser("logs", help="follow function logs of a running server, like `npx convex logs`")
    p.add_argument("--url", default=os.environ.get(URL_ENV, "http://127.0.0.1:3210"))
    p.add_argument("--admin-key", help=f"default: ${ADMIN_KEY_ENV}, else <app>/data/admin_key")
    p.add_argument("--app", default=str(default_app_dir()), help=app_help)
    p.add_argument("--jsonl", action="store_true", help="print each entry as a JSON line")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("serve", "dev"):
        return asyncio.run(_serve(args))
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
    return asyncio.run(_function_spec(args))
