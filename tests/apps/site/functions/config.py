"""Secrets read the way Convex functions read process.env. Values are never returned, only facts about
them (the tests compare a hash), as an app should treat secrets."""

import hashlib

from engine import action, env, query, v


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@query(args={"name": v.string()})
async def required_digest(ctx, args):
    return _digest(env.require(args["name"]))


@query(args={"name": v.string()})
async def optional_value(ctx, args):
    return env.get(args["name"], "fallback-default")


@action(args={"name": v.string()})
async def required_in_action(ctx, args):
    return _digest(env.require(args["name"]))
