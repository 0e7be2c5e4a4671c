"""A default export: callable as "defaults" or "defaults:default"."""

from engine import query


@query
async def default(ctx, args):
    return "default export"
