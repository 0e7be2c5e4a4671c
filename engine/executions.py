"""The function execution log: one entry per function execution, for `logs`, `npx convex logs` and the dashboard.

    from engine.executions import executions
    entries, cursor = executions.since(0.0)            # what is buffered (oldest first)
    entries, cursor = await executions.wait_since(cursor, timeout=10.0)   # a long poll

Every query, mutation, action and HTTP action of the app that runs (a subscription's re-run, a
nested `ctx.run_query`, a scheduled job, a cron) ends with one `record(...)` call from the runner: the
function, its type, success or failure, the duration, the error text, the request id, the log lines
it printed and the OCC retries it took. Entries are kept in a bounded ring (the newest 10 000) and
served from it; nothing is written to disk.

Each entry carries a cursor: milliseconds since the epoch, strictly increasing (two entries in one
millisecond get cursors a microsecond apart), so "everything after cursor C" never repeats or skips
an entry. `GET /api/stream_function_logs?cursor=C` (Convex's long poll) answers the entries after C
or waits for the next one. Recording never blocks and never awaits: waiting readers are woken with
`call_soon_threadsafe`, so a function never waits for a reader.

The same call feeds the Prometheus counters and histograms (`engine.metrics`).
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from . import metrics

__all__ = ["Execution", "ExecutionLog", "executions", "error_text", "KIND_TYPES"]

# Convex's UdfType names, as the CLI and the dashboard show them.
KIND_TYPES = {"query": "Query", "mutation": "Mutation", "action": "Action", "http": "HttpAction"}
_LEVELS = ("LOG", "DEBUG", "INFO", "WARN", "ERROR")


@dataclass(frozen=True, slots=True)
class Execution:
    cursor: float  # ms since the epoch, strictly increasing across entries
    id: int
    kind: str  # "query" | "mutation" | "action" | "http"
    path: str  # "tasks:list", or "POST /hooks/x" for an HTTP action
    request_id: str
    success: bool
    duration: float  # seconds
    error: str | None
    log_lines: tuple[str, ...]
    occ_retries: int = 0
    caller: str = ""
    started: float = field(default=0.0)  # unix seconds

    @property
    def timestamp(self) -> float:
        """Unix seconds at completion."""
        return self.cursor / 1000.0

    def to_json(self) -> dict[str, Any]:
        """Our own shape (the dashboard, `python -m engine logs --jsonl`)."""
        return {
            "cursor": self.cursor, "id": self.id, "timestamp": self.timestamp, "type": KIND_TYPES.get(self.kind, ""),
            "kind": self.kind, "function": self.path, "requestId": self.request_id,
            "status": "success" if self.success else "failure", "durationMs": round(self.duration * 1000, 3),
            "error": self.error, "logLines": list(self.log_lines), "occRetries": self.occ_retries,
            "caller": self.caller,
        }

    def to_convex_json(self) -> dict[str, Any]:
        """Convex's FunctionExecutionJson (kind "Completion"), as `npx convex logs` reads it."""
        ms = int(self.cursor)
        lines = []
        for line in self.log_lines:
            level, text = _split_line(line)
            lines.append({"messages": [text], "isTruncated": line.endswith(" (truncated due to length)"),
                          "timestamp": ms, "level": level})
        return {
            "kind": "Completion",
            "udfType": KIND_TYPES.get(self.kind, "Query"),
            "componentPath": None,
            "identifier": self.path,
            "logLines": lines,
            "timestamp": self.timestamp,
            "cachedResult": False,
            "caller": self.caller,
            "parentExecutionId": None,
            "executionTime": self.duration,
            "userExecutionTime": self.duration,
            "success": None,
            "error": self.error,
            "requestId": self.request_id,
            "executionId": f"{self.id:016x}",
            "usageStats": {name: 0 for name in _USAGE_FIELDS},
            "returnBytes": None,
            "occInfo": {"retryCount": self.occ_retries} if self.occ_retries else None,
            "willRetry": False,
            "executionTimestamp": self.started or self.timestamp,
            "identityType": "",
            "environment": "server",
        }


_USAGE_FIELDS = ("databaseReadBytes", "databaseWriteBytes", "databaseIoReadBytes", "databaseIoWriteBytes",
                 "databaseReadDocuments", "databaseWriteDocuments", "databaseWriteIndexRows", "storageReadBytes",
                 "storageWriteBytes", "vectorIndexReadBytes", "vectorIndexWriteBytes", "textIndexQueryBytes",
                 "textIndexWriteQueryBytes", "vectorIndexReadQueryBytes", "vectorIndexWriteQueryBytes",
                 "networkEgressBytes", "memoryUsedMb")


def _split_line(line: str) -> tuple[str, str]:
    """"[LOG] 'hi' 2" -> ("LOG", "'hi' 2")."""
    if line.startswith("["):
        end = line.find("] ")
        if end > 0 and line[1:end] in _LEVELS:
            return line[1:end], line[end + 2:]
    return "LOG", line


def error_text(error: BaseException) -> str:
    """The error as the log shows it: the text clients get (engine.function_errors), without the
    request-id line and the final newline."""
    from .function_errors import error_text as function_error_text

    return function_error_text(error).rstrip("\n")
class ExecutionLog:
    """A bounded ring of executions with long-poll readers."""

    def __init__(self, capacity: int = 10_000) -> None:
        self._entries: collections.deque[Execution] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._last_cursor = 0.0
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def last_cursor(self) -> float:
        return self._last_cursor

    def record(self, kind: str, path: str, *, success: bool, duration: float, error: str | None = None,
               request_id: str = "", log_lines: Any = (), occ_retries: int = 0,
               caller: str = "") -> Execution | None:
        """One finished execution (called by the runner; never blocks). System functions (the CLI's
        and the dashboard's `_system/...`) are counted in the metrics but kept out of the log, as
        Convex keeps them out of its users' logs."""
        if path.startswith("_system/"):
            metrics.function_finished(kind, path, success, duration)
            return None
        now_ms = time.time() * 1000.0
        with self._lock:
            cursor = now_ms if now_ms > self._last_cursor else self._last_cursor + 0.001
            self._last_cursor = cursor
            entry = Execution(cursor, next(self._ids), kind, path, request_id, success, duration, error,
                              tuple(log_lines), occ_retries, caller, now_ms / 1000.0 - duration)
            self._entries.append(entry)
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            _wake(loop, future)
        metrics.function_finished(kind, path, success, duration)
        return entry

    def since(self, cursor: float, limit: int | None = None) -> tuple[list[Execution], float]:
        """(entries after `cursor`, oldest first; the cursor to ask with next)."""
        with self._lock:
            out = [e for e in self._entries if e.cursor > cursor] if self._entries and \
                self._entries[-1].cursor > cursor else []
            last = self._last_cursor
        if limit is not None and len(out) > limit:
            out = out[:limit]
            return out, out[-1].cursor
        return out, max(cursor, last)

    async def wait_since(self, cursor: float, timeout: float, limit: int | None = None
                         ) -> tuple[list[Execution], float]:
        """Entries after `cursor`, waiting up to `timeout` seconds for the first one."""
        entries, next_cursor = self.since(cursor, limit)
        if entries or timeout <= 0:
            return entries, next_cursor
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            if self._last_cursor > cursor:  # one arrived meanwhile
                future.set_result(None)
            else:
                self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            pass
        finally:
            with self._lock:
                self._waiters = [w for w in self._waiters if w[1] is not future]
        return self.since(cursor, limit)

    def wake_all(self) -> None:
        """End every waiting long poll now (the server is shutting down)."""
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            _wake(loop, future)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _wake(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> None:
    def done() -> None:
        if not future.done():
            future.set_result(None)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        done()
        return
    try:
        loop.call_soon_threadsafe(done)
    except RuntimeError:  # that loop has closed: nobody waits any more
        pass


executions = ExecutionLog()
