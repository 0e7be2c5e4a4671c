"""Function log lines: `print()` and `logging` inside a function become Convex `logLines`.

While a function runs, a context variable holds its log sink. `print` (patched once, process-wide,
to consult that variable and otherwise behave exactly as before) and a root logging handler append
lines formatted like Convex's console: "[LOG] 'text' 2" — strings single-quoted, numbers as
JavaScript prints them. Outside a function nothing changes. Lines are capped at Convex's 32 KiB.

Each line is also published as it is printed, tagged with the function (kind and path) and request id
of the innermost `capture` scope: to the server log (logger "engine.functions", INFO) and to `feed`,
the live feed behind `GET /api/logs/stream`. The feed never blocks a function: every subscriber has a
bounded queue, and a slow one loses its oldest lines (and is told how many) instead.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextvars
import logging
import math
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

__all__ = ["capture", "install", "format_arg", "current_sink", "current_request_id", "publish", "LogEntry", "LogFeed",
           "Subscriber", "feed", "configure_server_logging"]

MAX_LINE = 32768
_sink: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("convex_log_sink", default=None)
_original_print = builtins.print
_LEVELS = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR",
           logging.CRITICAL: "ERROR"}
server_log = logging.getLogger("engine.functions")
# Convex's one-letter function kinds, as `npx convex logs` shows them: "Q(tasks:list)".
_KIND_LETTERS = {"query": "Q", "mutation": "M", "action": "A", "http": "H"}


@dataclass(frozen=True, slots=True)
class _Scope:
    kind: str
    path: str
    request_id: str


_scope: contextvars.ContextVar[_Scope | None] = contextvars.ContextVar("convex_log_scope", default=None)


def current_sink() -> list[str] | None:
    return _sink.get()


def format_arg(value: Any, top: bool = True) -> str:
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # a Python int printed is just a number to whoever reads the log
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return str(int(value)) if value.is_integer() and abs(value) < 1e21 else repr(value)
    if isinstance(value, (bytes, bytearray)):
        return f"ArrayBuffer {{ byteLength: {len(value)} }}"
    if isinstance(value, list):
        return "[ " + ", ".join(format_arg(v, False) for v in value) + " ]" if value else "[]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k}: {format_arg(v, False)}" for k, v in value.items()) + " }"
    return str(value)


def _line(level: str, text: str) -> str:
    line = f"[{level}] {text}"
    if len(line) > MAX_LINE:
        line = line[:MAX_LINE] + " (truncated due to length)"
    return line


def _append(sink: list[str], level: str, text: str) -> None:
    line = _line(level, text)
    sink.append(line)
    publish(level, line)


def publish(level: str, line: str, *, exc_info: BaseException | None = None) -> None:
    """Send one formatted line of the current function to the server log and the live feed.
    With `exc_info` the server log line is an ERROR carrying the traceback (the feed gets the line)."""
    scope = _scope.get()
    kind, path, rid = (scope.kind, scope.path, scope.request_id) if scope is not None else ("", "", "")
    label = f"{_KIND_LETTERS.get(kind, '?')}({path})" if path else "?"
    server_log.log(logging.ERROR if exc_info else logging.INFO, "%s [Request ID: %s] %s", label, rid, line,
                   exc_info=exc_info)
    feed.publish(LogEntry(time.time(), kind, path, rid, level, line))


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    sink = _sink.get()
    if sink is None or file is not None:
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    _append(sink, "LOG", (sep if sep is not None else " ").join(format_arg(a) for a in args))


class _SinkHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = _sink.get()
        if sink is not None and record.name != server_log.name:
            _append(sink, _LEVELS.get(record.levelno, "INFO"), repr(record.getMessage()))


_installed = False


def install() -> None:
    """Route print/logging inside functions to their sinks. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    builtins.print = _print
    logging.getLogger().addHandler(_SinkHandler(level=logging.DEBUG))


class capture:
    """`with capture(path, kind=..., request_id=...) as lines:` collects the log lines of the code
    run inside into a fresh list (callers of nested functions merge them into their own on success).

    `path`/`kind` name the function for the server log and the feed; a nested scope without its own
    `request_id` keeps the enclosing one (a whole call tree shares one id, as in Convex). A class,
    not a generator: every function execution enters one."""

    __slots__ = ("_path", "_kind", "_request_id", "_tokens")

    def __init__(self, path: str = "", *, kind: str = "", request_id: str | None = None) -> None:
        self._path = path
        self._kind = kind
        self._request_id = request_id

    def __enter__(self) -> list[str]:
        lines: list[str] = []
        path, kind, request_id = self._path, self._kind, self._request_id
        outer = _scope.get()
        if request_id is None:
            request_id = outer.request_id if outer is not None else new_request_id()
        if not path and outer is not None:
            path, kind = outer.path, outer.kind
        self._tokens = (_sink.set(lines), _scope.set(_Scope(kind, path, request_id)))
        return lines

    def __exit__(self, *exc: Any) -> None:
        sink_token, scope_token = self._tokens
        _scope.reset(scope_token)
        _sink.reset(sink_token)


_rid_random = random.Random()


def new_request_id() -> str:
    """A request id: 16 hex characters. Identifies a call in logs and error texts; not a secret
    (so no system-entropy call per request)."""
    return "%016x" % _rid_random.getrandbits(64)


def current_request_id() -> str | None:
    scope = _scope.get()
    return scope.request_id if scope is not None else None


# --- the live feed -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogEntry:
    ts: float  # Unix seconds
    kind: str  # "query" | "mutation" | "action" | "http" | "" (unknown)
    path: str  # "tasks:list", or "POST /hooks/x" for an HTTP action
    request_id: str
    level: str  # "LOG" | "DEBUG" | "INFO" | "WARN" | "ERROR"
    line: str  # as in logLines: "[LOG] 'hello' 2"

    def to_json(self) -> dict[str, Any]:
        return {"ts": self.ts, "kind": self.kind, "path": self.path, "requestId": self.request_id,
                "level": self.level, "line": self.line}


class Subscriber:
    """One reader of the feed: a bounded queue that drops its oldest entries when the reader lags."""

    def __init__(self, feed: LogFeed, capacity: int) -> None:
        self._feed = feed
        self._queue: collections.deque[LogEntry] = collections.deque(maxlen=capacity)
        self._lock = threading.Lock()  # print() may run in a worker thread (asyncio.to_thread)
        self._dropped = 0
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self.closed = False

    def _put(self, entry: LogEntry) -> None:
        with self._lock:
            if len(self._queue) == self._queue.maxlen:
                self._dropped += 1
            self._queue.append(entry)
        self._wake()

    def _wake(self) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wakeup.set()
            return
        try:
            self._loop.call_soon_threadsafe(self._wakeup.set)
        except RuntimeError:  # its loop has closed: nobody is waiting any more
            pass

    async def get(self, timeout: float | None = None) -> tuple[list[LogEntry], int]:
        """Wait (at most `timeout` seconds) for entries; returns (entries, lines dropped since the
        last call). Both are empty on timeout and once the subscriber is closed."""
        if not self._queue and not self.closed:
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass
        self._wakeup.clear()
        with self._lock:
            entries = list(self._queue)
            self._queue.clear()
            dropped, self._dropped = self._dropped, 0
        return entries, dropped

    def close(self) -> None:
        """Stop receiving; a reader blocked in `get` returns at once."""
        self.closed = True
        self._feed._remove(self)
        self._wake()


class LogFeed:
    """Fan-out of function log lines to live readers. Publishing is O(readers) and never waits."""

    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._subscribers: tuple[Subscriber, ...] = ()  # replaced, never mutated: publish needs no lock
        self._lock = threading.Lock()

    def subscribe(self, capacity: int | None = None) -> Subscriber:
        """A new reader (call from the event loop that will read it); `close()` it when done."""
        sub = Subscriber(self, capacity or self.capacity)
        with self._lock:
            self._subscribers = (*self._subscribers, sub)
        return sub

    def _remove(self, sub: Subscriber) -> None:
        with self._lock:
            self._subscribers = tuple(s for s in self._subscribers if s is not sub)

    def publish(self, entry: LogEntry) -> None:
        for sub in self._subscribers:
            sub._put(entry)


feed = LogFeed()


def configure_server_logging(stream: Any = None) -> None:
    """Print the engine's log records (function lines at INFO, problems at WARNING and above) to
    stderr, for `python -m engine serve`. Idempotent."""
    logger = logging.getLogger("engine")
    if any(getattr(h, "_engine_server_log", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler._engine_server_log = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
