"""The dashboard's system functions (`_system/dashboard/...`), registered by engine.system_udfs.

They run like any function (queries are reactive over the sync protocol, edits are mutations through
the committer) and only for the admin. Edits of app tables go through `ctx.db`, so the schema is
enforced exactly as for app code; system tables are read-only here, except that a scheduled
function can be canceled (`ctx.scheduler.cancel`, the same path app code takes).

| path | kind | args | returns |
|---|---|---|---|
| `overview` | query | `{}` | `{tables: [{name, number, system, inSchema, indexes: [{name, fields}]}], schema, functions, httpRoutes, crons}` |
| `documents:insert` | mutation | `{table, document}` | the new id |
| `documents:replace` | mutation | `{id, document}` | null |
| `documents:patch` | mutation | `{id, fields}` | null |
| `documents:remove` | mutation | `{ids}` | number removed |
| `scheduled:list` | query | `{limit?}` | newest `_scheduled_functions` documents first |
| `scheduled:cancel` | mutation | `{id}` | null |
| `crons:list` | query | `{}` | `_cron_jobs` documents, by name |
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import EngineError
from ..validators import v

if TYPE_CHECKING:
    from ..deployment import Deployment

__all__ = ["register"]

_PREFIX = "_system/dashboard/"


def _overview(dep: Deployment) -> dict[str, Any]:
    schema = dep.app.schema
    tables = []
    for name, info in sorted(dep.catalog.by_name.items(), key=lambda kv: (kv[1].system, kv[0])):
        indexes = [{"name": ix.name, "fields": [f for f in ix.fields if f not in ("_creationTime", "_id")]
                    if ix.name not in ("by_id", "by_creation_time") else list(ix.fields)}
                   for ix in info.indexes.values()]
        definition = schema.tables.get(name) if schema is not None else None
        tables.append({
            "name": name, "number": float(info.number), "system": info.system, "inSchema": definition is not None,
            "indexes": indexes,
            "documentType": definition.document.to_json() if definition is not None else None,
        })
    from ..system_udfs import http_routes

    routes = http_routes(dep)
    crons = []
    for job in getattr(dep.app.crons, "jobs", {}).values():
        try:
            path = job.path()
        except Exception:  # an invalid job is reported when the crons load, not here
            path = "?"
        crons.append({"name": job.name, "function": path})
    return {"tables": tables, "schema": schema.to_json() if schema is not None else None,
            "functions": float(len(dep.app.functions)), "httpRoutes": routes, "crons": crons}


def register(dep: Deployment, add: Callable[..., Any]) -> None:
    def user_table(table: str) -> None:
        info = dep.catalog.table(table)
        if info is not None and info.system:
            raise EngineError("SystemTableReadOnly", f'"{table}" is a system table; the dashboard only reads it.')

    def table_of(doc_id: Any) -> str:
        name = dep.catalog.table_of_id(doc_id) if isinstance(doc_id, str) else None
        if name is None:
            raise EngineError("InvalidId", f"{doc_id!r} is not a document id of this deployment.")
        user_table(name)
        return name

    @add(_PREFIX + "overview:default", "query", {})
    async def overview(ctx: Any, args: dict[str, Any]) -> Any:
        return _overview(dep)

    @add(_PREFIX + "documents:insert", "mutation", {"table": v.string(), "document": v.any()})
    async def insert(ctx: Any, args: dict[str, Any]) -> Any:
        user_table(args["table"])
        document = args["document"]
        if not isinstance(document, dict):
            raise EngineError("InvalidDocument", "A document is an object.")
        return await ctx.db.insert(args["table"], {k: x for k, x in document.items()
                                                   if k not in ("_id", "_creationTime")})

    @add(_PREFIX + "documents:replace", "mutation", {"id": v.string(), "document": v.any()})
    async def replace(ctx: Any, args: dict[str, Any]) -> Any:
        table_of(args["id"])
        if not isinstance(args["document"], dict):
            raise EngineError("InvalidDocument", "A document is an object.")
        await ctx.db.replace(args["id"], args["document"])
        return None

    @add(_PREFIX + "documents:patch", "mutation", {"id": v.string(), "fields": v.any()})
    async def patch(ctx: Any, args: dict[str, Any]) -> Any:
        table_of(args["id"])
        if not isinstance(args["fields"], dict):
            raise EngineError("InvalidDocument", "`fields` is an object.")
        await ctx.db.patch(args["id"], args["fields"])
        return None

    @add(_PREFIX + "documents:remove", "mutation", {"ids": v.array(v.string())})
    async def remove(ctx: Any, args: dict[str, Any]) -> Any:
        removed = 0
        for doc_id in args["ids"]:
            table_of(doc_id)
            if await ctx.db.get(doc_id) is not None:
                await ctx.db.delete(doc_id)
                removed += 1
        return float(removed)

    @add(_PREFIX + "scheduled:list", "query", {"limit": v.optional(v.number())})
    async def scheduled(ctx: Any, args: dict[str, Any]) -> Any:
        limit = int(min(max(args.get("limit") or 200, 1), 1000))
        return await ctx.db.system.query("_scheduled_functions").order("desc").take(limit)

    @add(_PREFIX + "scheduled:cancel", "mutation", {"id": v.string()})
    async def cancel(ctx: Any, args: dict[str, Any]) -> Any:
        await ctx.scheduler.cancel(args["id"])
        return None

    @add(_PREFIX + "crons:list", "query", {})
    async def crons(ctx: Any, args: dict[str, Any]) -> Any:
        docs = await ctx.db.system.query("_cron_jobs").collect()
        return sorted(docs, key=lambda d: str(d.get("name", "")))
