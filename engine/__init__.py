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
from .schema import define_schema, define_table
from .validators import v

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

__all__ = [
    "ConvexError",
    "EngineError",
    "UNDEFINED",
    "action",
    "api",
    "define_schema",
    "define_table",
    "internal",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "mutation",
    "pagination_opts_validator",
    "paginationOptsValidator",
    "query",
    "v",
]
