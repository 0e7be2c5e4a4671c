"""Per-load asyncio events: an in-process test waits on `started(tag)` until a hanging action runs."""

import asyncio

STARTED: dict[str, asyncio.Event] = {}


def started(name: str) -> asyncio.Event:
    return STARTED.setdefault(name, asyncio.Event())
