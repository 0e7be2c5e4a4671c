"""System functions: the `_system/...` queries and mutations the official CLI and our dashboard call.

    fn = system_function(dep, "_system/cli/tables:default")   # a RegisteredFunction, or None

They are ordinary registered functions run by the ordinary runner (so they are reactive over the
sync protocol and show up in the execution log), bound to one deployment, and reachable only with
the admin key: `Deployment.lookup` resolves a `_system/` path here and nowhere else, and refuses
every caller but the admin. App code cannot define them (app files starting with "_" are helpers).

The CLI (`npx convex data | env | import | export | function-spec`) subscribes to them over the
WebSocket and waits for the first result; a query that *fails* would leave it waiting forever (it
throws inside its message handler), except for one message it turns into a clean exit: a failure
text containing "You do not have permission to perform this operation". Every failure of a system
function therefore carries that sentence, followed by the real reason, and each function returns a
result the CLI can act on wherever one exists (an unknown table reads as empty, an unknown import
id as a failed import).

| path | args | returns |
|---|---|---|
| `_system/cli/tables` | `{paginationOpts}` | page of `{name}` (user tables, by name) |
| `_system/cli/tableData` | `{table, order, paginationOpts}` | page of documents |
| `_system/cli/tableSize` | `{tableName}` | document count |
| `_system/cli/modules:apiSpec` | `{}` | the function spec (queries, mutations, actions, HTTP routes) |
| `_system/cli/convexUrl:cloudUrl` | `{}` | the API URL the server listens on |
| `_system/cli/queryEnvironmentVariables` (`:get`) | `{}` (`{name}`) | `[{name, value}]` (`{name, value}` or null) |
| `_system/cli/exports:getLatest` | `{}` | the latest snapshot export's state, or null |
| `_system/cli/queryImport` (`:list`) | `{importId}` (`{}`) | an import's state document (all of them) |
| `_system/frontend/components:list`, `getSchemas` | `{}` | `[]` (no components), the schema JSON |
| `_system/dashboard/*` | | the dashboard's reads and edits (see the table in engine/dashboard) |
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .catalog import BY_CREATION_TIME
from .errors import EngineError
from .registration import RegisteredFunction
from .validators import v

if TYPE_CHECKING:
    from .deployment import Deployment

__all__ = ["system_function", "PERMISSION_PREFIX", "system_failure"]

PERMISSION_PREFIX = "You do not have permission to perform this operation"
_PAGINATION = v.object({
    "numItems": v.number(), "cursor": v.union(v.string(), v.null()),
    "endCursor": v.optional(v.union(v.string(), v.null())), "id": v.optional(v.number()),
    "maximumRowsRead": v.optional(v.number()), "maximumBytesRead": v.optional(v.number()),
})
_END_CURSOR = "_end"


def system_failure(path: str, reason: str) -> EngineError:
    """The error every failing system function raises (see the module docstring for why)."""
    return EngineError("SystemFunctionFailed", f"{PERMISSION_PREFIX}: {path} failed: {reason}", status=403)


def _whole_page(items: list[Any], opts: dict[str, Any]) -> dict[str, Any]:
    """A list served as one page (lists of tables, imports, ...): the first page has everything."""
    first = opts.get("cursor") is None
    return {"page": items if first else [], "isDone": True, "continueCursor": _END_CURSOR}


def _empty_page() -> dict[str, Any]:
    return {"page": [], "isDone": True, "continueCursor": _END_CURSOR}


Handler = Callable[[Any, dict[str, Any]], Awaitable[Any]]


class _Registry:
    def __init__(self) -> None:
        self.functions: dict[str, RegisteredFunction] = {}

    def add(self, path: str, kind: str, args: Any = None) -> Callable[[Handler], Handler]:
        def wrap(handler: Handler) -> Handler:
            async def guarded(ctx: Any, a: dict[str, Any]) -> Any:
                try:
                    return await handler(ctx, a)
                except EngineError as e:
                    if e.code == "SystemFunctionFailed":
                        raise
                    raise system_failure(path, f"{e.code}: {e.message}") from None

            validator = v.object(args) if isinstance(args, dict) else args
            fn = RegisteredFunction(kind, "internal", guarded, validator, None)  # type: ignore[arg-type]
            fn.path = path
            self.functions[path] = fn
            return handler

        return wrap


def _build(dep: Deployment) -> dict[str, RegisteredFunction]:
    from . import env as env_module

    reg = _Registry()
    add = reg.add

    def user_tables() -> list[str]:
        return sorted(name for name, info in dep.catalog.by_name.items() if not info.system)

    # -- data ------------------------------------------------------------------------------------
    @add("_system/cli/tables:default", "query", {"paginationOpts": _PAGINATION})
    async def tables(ctx: Any, args: dict[str, Any]) -> Any:
        return _whole_page([{"name": name} for name in user_tables()], args["paginationOpts"])

    @add("_system/cli/tableData:default", "query",
         {"table": v.string(), "order": v.union(v.literal("asc"), v.literal("desc")), "paginationOpts": _PAGINATION})
    async def table_data(ctx: Any, args: dict[str, Any]) -> Any:
        return await _table_page(dep, ctx, args["table"], args["order"], args["paginationOpts"])

    @add("_system/cli/tableSize:default", "query", {"tableName": v.string()})
    async def table_size(ctx: Any, args: dict[str, Any]) -> Any:
        return float(await _count(dep, ctx, args["tableName"]))

    # -- functions -------------------------------------------------------------------------------
    @add("_system/cli/modules:apiSpec", "query", {})
    async def api_spec(ctx: Any, args: dict[str, Any]) -> Any:
        return full_spec(dep)

    @add("_system/cli/convexUrl:cloudUrl", "query", {})
    async def cloud_url(ctx: Any, args: dict[str, Any]) -> Any:
        return getattr(dep, "cloud_url", "") or ""

    @add("_system/frontend/components:list", "query", {})
    async def components(ctx: Any, args: dict[str, Any]) -> Any:
        return []

    @add("_system/frontend/getSchemas", "query", {})
    async def get_schemas(ctx: Any, args: dict[str, Any]) -> Any:
        schema = dep.app.schema
        return {"active": json.dumps(schema.to_json()) if schema is not None else None, "inProgress": None}

    # -- environment variables ---------------------------------------------------------------------
    def env_values() -> dict[str, str]:
        return env_module.deployment_values()

    @add("_system/cli/queryEnvironmentVariables:default", "query", {})
    async def env_list(ctx: Any, args: dict[str, Any]) -> Any:
        return [{"name": name, "value": value} for name, value in sorted(env_values().items())]

    @add("_system/cli/queryEnvironmentVariables:get", "query", {"name": v.string()})
    async def env_get(ctx: Any, args: dict[str, Any]) -> Any:
        value = env_values().get(args["name"])
        return None if value is None else {"name": args["name"], "value": value}

    # -- export / import ---------------------------------------------------------------------------
    @add("_system/cli/exports:getLatest", "query", {})
    async def latest_export(ctx: Any, args: dict[str, Any]) -> Any:
        return dep.transfers.latest_export_state()

    @add("_system/cli/queryImport:default", "query", {"importId": v.string()})
    async def query_import(ctx: Any, args: dict[str, Any]) -> Any:
        return dep.transfers.import_document(args["importId"])

    @add("_system/cli/queryImport:list", "query", {})
    async def list_imports(ctx: Any, args: dict[str, Any]) -> Any:
        return dep.transfers.import_documents()

    # -- the dashboard -------------------------------------------------------------------------------
    from .dashboard.functions import register as register_dashboard

    register_dashboard(dep, add)
    return reg.functions


async def _table_page(dep: Deployment, ctx: Any, table: str, order: str, opts: dict[str, Any]) -> Any:
    info = dep.catalog.table(table)
    if info is None:
        return _empty_page()  # reading must not create the table (Convex reads it as empty)
    if opts.get("cursor") == _END_CURSOR:
        return _empty_page()
    db = ctx.db.system if info.system else ctx.db
    page = await db.query(table).order(order).paginate({k: val for k, val in opts.items()
                                                          if k in ("numItems", "cursor", "endCursor")})
    return page


async def _count(dep: Deployment, ctx: Any, table: str) -> int:
    info = dep.catalog.table(table)
    if info is None:
        return 0
    ix = info.indexes[BY_CREATION_TIME]
    txn = ctx.db._txn
    scan = txn.scan(info, ix, b"", b"\xff", False)
    count = 0
    async for page in scan.pages(first=1024):
        count += len(page)
    scan.finish()
    return count


def http_routes(dep: Deployment) -> list[dict[str, Any]]:
    """The app's HTTP actions as function-spec entries (`{functionType: "HttpAction", method, path}`)."""
    router = getattr(dep.app, "http", None)
    get_routes = getattr(router, "get_routes", None)
    if get_routes is None:
        return []
    return [{"functionType": "HttpAction", "method": r.method,
             "path": r.path if r.path is not None else f"{r.path_prefix}*"} for r in get_routes()]


def full_spec(dep: Deployment) -> list[dict[str, Any]]:
    """The function spec plus the HTTP routes, as Convex's `apiSpec` lists them."""
    return [*dep.function_spec(), *http_routes(dep)]


_CACHE_ATTR = "_system_functions"


def system_function(dep: Deployment, canonical_path: str) -> RegisteredFunction | None:
    """The system function at `canonical_path` ("module:export") for this deployment, or None."""
    functions = getattr(dep, _CACHE_ATTR, None)
    if functions is None:
        functions = _build(dep)
        setattr(dep, _CACHE_ATTR, functions)
    return functions.get(canonical_path)


def unknown_system_function(path: str) -> str:
    return (f"{PERMISSION_PREFIX}: this engine has no system function {path!r} (it serves the `npx convex` "
            "CLI's data, env, logs, export, import and function-spec, and its own dashboard)")
