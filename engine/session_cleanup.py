"""Expiring stored mutation results, the sync protocol's idempotency records.

A mutation sent over the sync socket stores its result under (sessionId, requestId) in its own
commit (engine.runner), so a client that re-sends it after a reconnect gets that result instead of
a second run. Those records would otherwise pile up forever, one per mutation. As in Convex
(`MAX_SESSION_CLEANUP_DURATION_HOURS`, two weeks by default, 0 keeps them forever; a pass every 30
minutes, `SYSTEM_TABLE_CLEANUP_FREQUENCY_SECONDS`), records older than the window are deleted in
the background: a client re-sending a mutation that old runs it again, as it would in Convex. A
pass deletes in chunks, each a short write of its own, so commits keep flowing meanwhile.

Time is the commits' clock (wall-clock nanoseconds); `run_once(now_ns=...)` takes it injected."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from typing import Any

from .aio import cancel_and_wait

log = logging.getLogger("engine.session_cleanup")

RETENTION_ENV = "MAX_SESSION_CLEANUP_DURATION_HOURS"
FREQUENCY_ENV = "SYSTEM_TABLE_CLEANUP_FREQUENCY_SECONDS"
DEFAULT_RETENTION_HOURS = 2 * 7 * 24
DEFAULT_FREQUENCY_S = 30 * 60
CHUNK = 1000  # rows per write: ~1-2 ms of the SQLite writer


def retention_from_env(environ: Any = None) -> float | None:
    """The retention window in seconds from `MAX_SESSION_CLEANUP_DURATION_HOURS` (None: 0, keep
    them); the default when unset or not a number (said in the log)."""
    environ = os.environ if environ is None else environ
    text = environ.get(RETENTION_ENV)
    hours: float = DEFAULT_RETENTION_HOURS
    if text not in (None, ""):
        try:
            hours = float(text)
            if not (math.isfinite(hours) and hours >= 0):
                raise ValueError
        except ValueError:
            log.warning("%s=%r is not a number of hours >= 0; keeping mutation results for %d hours",
                        RETENTION_ENV, text, DEFAULT_RETENTION_HOURS)
            hours = DEFAULT_RETENTION_HOURS
    return None if hours == 0 else hours * 3600.0


def frequency_from_env(environ: Any = None) -> float:
    environ = os.environ if environ is None else environ
    try:
        every = float(environ.get(FREQUENCY_ENV) or DEFAULT_FREQUENCY_S)
    except ValueError:
        every = DEFAULT_FREQUENCY_S
    return every if math.isfinite(every) and every > 0 else DEFAULT_FREQUENCY_S


class SessionCleanup:
    """Deletes the deployment's mutation results older than `retention_s` (None: never), one pass
    every `every_s` seconds, the first at a random point of the first period (nodes of a cluster,
    or servers restarted often, do not all start at once)."""

    def __init__(self, persistence: Any, retention_s: float | None, every_s: float = DEFAULT_FREQUENCY_S) -> None:
        self.persistence = persistence
        self.retention_s = retention_s
        self.every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.retention_s is not None:
            self._task = asyncio.create_task(self._run(), name="session-cleanup")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    async def run_once(self, now_ns: int | None = None) -> int:
        """One pass: delete every record committed before now minus the window; how many."""
        if self.retention_s is None:
            return 0
        now = time.time_ns() if now_ns is None else now_ns
        before = now - int(self.retention_s * 1e9)
        deleted = 0
        while True:
            n = await self.persistence.expire_mutation_results(before, CHUNK)
            deleted += n
            if n < CHUNK:
                break
            await asyncio.sleep(0)  # let waiting commits have the writer between chunks
        if deleted:
            log.info("deleted %d stored mutation results older than %.0f hours", deleted, self.retention_s / 3600)
        return deleted

    async def _run(self) -> None:
        delay = random.uniform(0, self.every_s)
        while True:
            await asyncio.sleep(delay)
            delay = self.every_s
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # the database is away: the next pass tries again
                log.warning("expiring stored mutation results failed (%s); retrying in %.0f s", e, self.every_s)
