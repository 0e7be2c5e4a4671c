"""A Convex-compatible reactive backend: Convex's server model, in Python, on SQLite.

Application code (an app folder's `schema.py` and `functions/`) imports everything from here:

    from engine import query, mutation, v

    @query(args={"channelId": v.id("channels")})
    async def list(ctx, args):
        return await (ctx.db.query("messages")
                      .with_index("by_channel", lambda q: q.eq("channelId", args["channelId"]))
                      .order("desc").take(50))
"""

from .errors import ConvexError, EngineError
from .function_errors import NestedFunctionError
from .index_keys import UNDEFINED
from .registration import (
    action,
    api,
    internal,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
)
from .cron import cronJobs, cron_jobs
from .model import Doc, Id
from .runner import ActionCtx, MutationCtx, QueryCtx
from .schema import define_schema, define_table
from .validators import ObjectValidator, Validator, v
from . import env
from .http_router import HttpRouter, Request, Response, http_action, json_response

httpRouter = HttpRouter
"""Convex's spelling: `http = httpRouter()`."""

pagination_opts_validator = v.object({
    "numItems": v.number(),
    "cursor": v.union(v.string(), v.null()),
    "endCursor": v.optional(v.union(v.string(), v.null())),
    "id": v.optional(v.number()),
    "maximumRowsRead": v.optional(v.number()),
    "maximumBytesRead": v.optional(v.number()),
})
"""Convex's `paginationOptsValidator`: the `paginationOpts` argument of a paginated query."""

paginationOptsValidator = pagination_opts_validator


def pagination_result_validator(item: Validator) -> ObjectValidator:
    """Convex's `paginationResultValidator(item)`: what `.paginate()` returns, exactly as Convex's
    `PaginationResult<T>` (so a generated `api` type-checks with `usePaginatedQuery`)."""
    return v.object({
        "page": v.array(item),
        "continueCursor": v.string(),
        "isDone": v.boolean(),
        "splitCursor": v.optional(v.union(v.string(), v.null())),
        "pageStatus": v.optional(v.union(v.literal("SplitRecommended"), v.literal("SplitRequired"), v.null())),
    })


paginationResultValidator = pagination_result_validator

__all__ = [
    "ActionCtx",
    "ConvexError",
    "Doc",
    "EngineError",
    "NestedFunctionError",
    "HttpRouter",
    "Id",
    "MutationCtx",
    "QueryCtx",
    "Request",
    "Response",
    "UNDEFINED",
    "action",
    "api",
    "cronJobs",
    "cron_jobs",
    "define_schema",
    "define_table",
    "env",
    "http_action",
    "httpRouter",
    "internal",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "json_response",
    "mutation",
    "pagination_opts_validator",
    "pagination_result_validator",
    "paginationOptsValidator",
    "paginationResultValidator",
    "query",
    "v",
]
