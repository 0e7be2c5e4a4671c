"""Per-load asyncio events a test sets to let a held function finish (`hold` names one)."""

import asyncio

GATES: dict[str, asyncio.Event] = {}
STARTED: dict[str, asyncio.Event] = {}


def gate(name: str) -> asyncio.Event:
    return GATES.setdefault(name, asyncio.Event())


def started(name: str) -> asyncio.Event:
    return STARTED.setdefault(name, asyncio.Event())
