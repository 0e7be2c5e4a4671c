"""A function in a sub-folder: its path is "nested/deep:fn" (api.nested.deep.fn)."""

from engine import query


@query
async def fn(ctx, args):
    return "nested/deep:fn"
