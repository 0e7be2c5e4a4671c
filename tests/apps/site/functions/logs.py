"""Functions that log, for the live log feed."""

import logging

from engine import mutation, query, v


@query(args={"tag": v.string()})
async def hello(ctx, args):
    print("hello from a function", args["tag"])
    return None


@mutation(args={"tag": v.string()})
async def warn(ctx, args):
    logging.getLogger("site.app").warning("careful %s", args["tag"])
    return None


@mutation
async def fail(ctx, args):
    print("about to fail")
    raise Exception("logs:fail failed on purpose")
