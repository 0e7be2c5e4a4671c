"""Function log lines: `print()` and `logging` inside a function become Convex `logLines`.

While a function runs, a context variable holds its log sink. `print` (patched once, process-wide,
to consult that variable and otherwise behave exactly as before) and a root logging handler append
lines formatted like Convex's console: "[LOG] 'text' 2" — strings single-quoted, numbers as
JavaScript prints them. Outside a function nothing changes. Lines are capped at Convex's 32 KiB.
"""

from __future__ import annotations

import builtins
import contextvars
import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["capture", "install", "format_arg", "current_sink"]

MAX_LINE = 32768
_sink: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("convex_log_sink", default=None)
_original_print = builtins.print
_LEVELS = {logging.DEBUG: "DEBUG", logging.INFO: "INFO", logging.WARNING: "WARN", logging.ERROR: "ERROR",
           logging.CRITICAL: "ERROR"}
server_log = logging.getLogger("engine.functions")


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


def _print(*args: Any, sep: str | None = " ", end: str | None = "\n", file: Any = None, flush: bool = False) -> None:
    sink = _sink.get()
    if sink is None or file is not None:
        _original_print(*args, sep=sep, end=end, file=file, flush=flush)
        return
    sink.append(_line("LOG", (sep if sep is not None else " ").join(format_arg(a) for a in args)))


class _SinkHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink = _sink.get()
        if sink is not None and record.name != server_log.name:
            sink.append(_line(_LEVELS.get(record.levelno, "INFO"), repr(record.getMessage())))


_installed = False


def install() -> None:
    """Route print/logging inside functions to their sinks. Idempotent."""
    global _installed
    if _installed:
        return
    _installed = True
    builtins.print = _print
    logging.getLogger().addHandler(_SinkHandler(level=logging.DEBUG))


@contextmanager
def capture() -> Iterator[list[str]]:
    """Collect the log lines of the code run inside into a fresh list (callers of nested
    functions merge them into their own on success)."""
    lines: list[str] = []
    token = _sink.set(lines)
    try:
        yield lines
    finally:
        _sink.reset(token)
