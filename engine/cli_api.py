"""The HTTP endpoints of the official `npx convex` CLI (besides `/api/function` and sync), framework-free.

Every handler is `async (dep, HttpRequest) -> HttpResponse`, registered in `engine.http_api.ROUTES`
/ `PREFIX_ROUTES`, and needs the admin key (`Authorization: Convex <key>`) like Convex's.

| endpoint | CLI verb | what it does |
|---|---|---|
| `POST /api/update_environment_variables` | `env set / remove` | `{changes: [{name, value \\| null}]}` into the env file (PostgreSQL: the database) |
| `GET /api/stream_function_logs?cursor=MS` | `logs` | long poll: `{entries: [FunctionExecution], newCursor}` |
| `POST /api/export/request/zip` | `export` | writes a snapshot ZIP (engine.transfers), then `exports:getLatest` says completed |
| `GET /api/export/zip/<ts>` | `export` | the ZIP |
| `POST /api/import/start_upload`, `upload_part`, `finish_upload` | `import` | upload; the import then waits for confirmation |
| `POST /api/perform_import` | `import` | runs the import through the committer |
| `POST /api/get_config_hashes`, `/api/deploy2/*`, ... | `codegen`, `dev`, `deploy` | 403 `PushNotSupported`, naming our commands |

`codegen`, `dev` and `deploy` bundle JavaScript and push it; this engine runs Python functions from
the app folder, so those requests are refused at once with a message naming `python -m engine
codegen | dev | serve` (the CLI prints `code: message` and exits 1, instead of retrying).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from . import env as env_module
from .errors import EngineError
from .executions import executions
from .http_api import BODY_LIMITS, PREFIX_ROUTES, ROUTES, SHUTDOWN_HOOKS, HttpRequest, HttpResponse, json_response, resolve_auth

__all__ = ["LOG_POLL_SECONDS", "register_routes"]

LOG_POLL_SECONDS = 10.0  # a long poll answers at once when an execution happens, else after this
MAX_LOG_ENTRIES = 1000  # per answer; the next poll continues from the last one sent
_decode = msgspec.json.Decoder()


async def _admin(dep: Any, req: HttpRequest, what: str) -> None:
    """Only the admin. A missing or wrong key is 403, not 401: the CLI retries `logs` forever after a
    401 and appends "Authenticate with `npx convex dev`" to other verbs' errors, while a 403 ends
    every verb at once with our message."""
    try:
        auth = await resolve_auth(dep, req.headers, req.query)
    except EngineError as e:
        raise EngineError(e.code, e.message, status=403) from None
    if not auth.admin:
        raise EngineError("Unauthenticated", f"{what} requires the admin key (`Authorization: Convex <key>`).",
                          status=403)


def _body(req: HttpRequest) -> dict[str, Any]:
    try:
        obj = _decode.decode(req.body) if req.body.strip() else {}
    except msgspec.DecodeError as e:
        raise EngineError("BadJsonBody", f"Failed to parse the request body as JSON: {e}") from None
    if not isinstance(obj, dict):
        raise EngineError("BadJsonBody", "The request body must be a JSON object.")
    return obj


# --- env ---------------------------------------------------------------------------------------


async def _update_env(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/update_environment_variables")
    changes = env_module.check_changes(_body(req).get("changes"))  # all checked before anything is written
    if dep.persistence.shared:  # the database's, for every node (engine.env)
        await dep.persistence.update_env(changes)
        env_module.use_shared(await dep.persistence.env_vars())  # this node at once; others when notified
        return json_response(200, {})
    path = env_module.env_file()
    if path is None:
        raise EngineError("NoEnvironmentFile", "This deployment reads its variables from the process environment "
                                               "only (it was started without an env file).")
    for name, value in changes:
        if value is None:
            env_module.remove_var(path, name)
        else:
            env_module.set_var(path, name, value)
    return json_response(200, {})


# --- logs --------------------------------------------------------------------------------------


async def _stream_function_logs(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/stream_function_logs")
    raw = req.query.get("cursor", "0")
    try:
        cursor = float(raw)
    except ValueError:
        raise EngineError("InvalidCursor", f"`cursor` must be a number of milliseconds, got {raw!r}.") from None
    # The first poll (cursor 0) answers at once: the CLI reads it as history, to learn where "now" is.
    wait = 0.0 if cursor <= 0 or getattr(dep, "log_polls_closed", False) else LOG_POLL_SECONDS
    entries, new_cursor = await executions.wait_since(cursor, wait, limit=MAX_LOG_ENTRIES)
    fmt = req.query.get("format")
    body = [e.to_json() if fmt == "engine" else e.to_convex_json() for e in entries]
    return json_response(200, {"entries": body, "newCursor": new_cursor})


def shutting_down(dep: Any) -> None:
    """The server is stopping: open long polls answer now, new ones at once."""
    dep.log_polls_closed = True
    executions.wake_all()


# --- export --------------------------------------------------------------------------------------


async def _request_export(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/export/request/zip")
    # `npx convex export --include-file-storage` asks with ?includeStorage=true.
    state = await dep.export_snapshot(include_file_storage=req.query.get("includeStorage") == "true")
    return json_response(200, {"startTs": str(state["start_ts"])})


async def _download_export(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/export/zip")
    raw = req.path[len("/api/export/zip/"):].strip("/")
    try:
        ts = int(raw)
    except ValueError:
        raise EngineError("InvalidExportTs", f"{raw!r} is not an export timestamp.") from None
    path = dep.transfers.export_file(ts)
    if path is None:
        raise EngineError("ExportNotFound", f"There is no snapshot export at timestamp {ts}.", status=404)
    data = await asyncio.to_thread(path.read_bytes)
    return HttpResponse(200, data, [("content-type", "application/zip"),
                                    ("content-disposition", f"attachment; filename={path.name}")])


# --- import --------------------------------------------------------------------------------------


async def _start_upload(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/import/start_upload")
    return json_response(200, {"uploadToken": dep.transfers.start_upload()})


async def _upload_part(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/import/upload_part")
    token = req.query.get("uploadToken")
    try:
        part = int(req.query.get("partNumber", ""))
    except ValueError:
        raise EngineError("InvalidUploadPart", "`partNumber` must be an integer.") from None
    if not token:
        raise EngineError("InvalidUploadToken", "`uploadToken` is required.")
    part_token = await asyncio.to_thread(dep.transfers.upload_part, token, part, req.body)
    return json_response(200, part_token)


async def _finish_upload(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/import/finish_upload")
    body = _body(req)
    args = body.get("import") or {}
    token, parts = body.get("uploadToken"), body.get("partTokens")
    if not isinstance(args, dict) or not isinstance(token, str) or not isinstance(parts, list):
        raise EngineError("BadJsonBody", "Expected {import: {format, mode, tableName?}, uploadToken, partTokens}.")
    import_id = await dep.transfers.finish_upload(token, parts, args)
    return json_response(200, {"importId": import_id})


async def _perform_import(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/perform_import")
    import_id = _body(req).get("importId")
    if not isinstance(import_id, str):
        raise EngineError("BadJsonBody", "Expected {importId}.")
    await dep.transfers.perform(import_id)
    return json_response(200, {})


# --- pushing code: not here -------------------------------------------------------------------------

PUSH_REFUSAL = (
    "This is a Python engine: it runs the Python functions of its app folder and does not accept pushed "
    "JavaScript, so `npx convex dev`, `npx convex deploy` and `npx convex codegen` cannot apply. Use "
    "`python -m engine codegen --out <your frontend's convex folder>` for the typed `api`, "
    "`python -m engine dev` to serve and reload on every save, and `python -m engine serve` to run it. "
    "`npx convex run / data / env / logs / import / export / function-spec` work against this server."
)


async def _refuse_push(dep: Any, req: HttpRequest) -> HttpResponse:
    # 403: the one status the CLI treats as fatal in every mode (`dev` waits for file changes after a
    # 400, and retries a 404), printing just our message.
    raise EngineError("PushNotSupported", PUSH_REFUSAL, status=403)


async def _canonical_urls(dep: Any, req: HttpRequest) -> HttpResponse:
    await _admin(dep, req, "/api/v1/get_canonical_urls")
    host = req.headers.get("host")
    cloud = getattr(dep, "cloud_url", "") or (f"http://{host}" if host else "")
    return json_response(200, {"convexCloudUrl": cloud, "convexSiteUrl": getattr(dep, "site_url", "") or ""})


def register_routes() -> None:
    SHUTDOWN_HOOKS.append(shutting_down)
    ROUTES["/api/v1/get_canonical_urls"] = {"GET": _canonical_urls}
    ROUTES["/api/update_environment_variables"] = {"POST": _update_env}
    ROUTES["/api/stream_function_logs"] = {"GET": _stream_function_logs}
    ROUTES["/api/export/request/zip"] = {"POST": _request_export}
    PREFIX_ROUTES["/api/export/zip/"] = {"GET": _download_export}
    ROUTES["/api/import/start_upload"] = {"POST": _start_upload}
    ROUTES["/api/import/upload_part"] = {"POST": _upload_part}
    ROUTES["/api/import/finish_upload"] = {"POST": _finish_upload}
    ROUTES["/api/perform_import"] = {"POST": _perform_import}
    BODY_LIMITS["/api/import/upload_part"] = 64 * 1024 * 1024
    for path in ("/api/get_config_hashes", "/api/push_config", "/api/run_test_function", "/api/prepare_schema",
                 "/api/deploy2/start_push", "/api/deploy2/evaluate_push", "/api/deploy2/evaluate_schema",
                 "/api/deploy2/wait_for_schema", "/api/deploy2/finish_push", "/api/deploy2/report_push_completed"):
        ROUTES[path] = {"POST": _refuse_push, "GET": _refuse_push}
