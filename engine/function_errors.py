"""How a failed function reads to its caller: Convex's error text, with Python frames for JS ones.

    [Request ID: 0123456789abcdef] Server Error
    Uncaught ConvexError: {"message":"Boom boom bop","code":"123n"}
        at handler (functions/customErrors.py:12:9)

Convex builds that text from the thrown error (crates/isolate/src/error.rs, common/src/errors.rs
`JsError`, application/src/redaction.rs `RedactedJsError`); the rules carried over here:

- The first line is `Uncaught <name>: <message>`. `name` is the error's name: "ConvexError" (or a
  subclass's own name), "Error" for a plain `Exception` and for engine errors raised inside the
  function, the class name for other exceptions ("ValueError"). A ConvexError's message is its data:
  a string as it is, anything else as JavaScript's `JSON.stringify` prints it with int64 as
  `"123n"` (`stringifyValueForError` in convex-js), cut at 16 384 UTF-16 units.
- Then one `    at <function> (<file>:<line>:<column>)` line per frame, innermost first, each
  ending in a newline (so the whole text ends with one). Engine frames at either end are left out,
  as Convex leaves out its own runtime's; a caller awaiting is marked `async`.
- An error a nested `ctx.run_query` / `run_mutation` / `run_action` raised reaches the calling
  action as a new error whose *message* is the inner function's whole text: a ConvexError keeps the
  inner data (`Uncaught ConvexError: Uncaught ConvexError: Boom`), anything else becomes an Error.
- Errors raised by the engine before or after the handler (argument and return validation,
  conflicts) have no frames and read `<Code>: <message>`, without "Uncaught".
- Clients get `[Request ID: <16 hex>] Server Error` + newline + that text.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import traceback
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import ConvexError, EngineError
from .index_keys import UNDEFINED

__all__ = [
    "NestedFunctionError",
    "client_message",
    "error_name",
    "error_text",
    "format_uncaught",
    "js_number",
    "nested_error",
    "stringify_value",
]

MAX_VALUE_FOR_ERROR_LEN = 16384  # convex-js values/value.ts
_TRUNCATED = "[...truncated]"
_ENGINE_DIR = Path(__file__).resolve().parent


class NestedFunctionError(Exception):
    """What `ctx.run_query` / `run_mutation` / `run_action` raise in the calling action when the
    called function failed with anything but a ConvexError (Convex rethrows `new Error(message)`).
    `str(e)` is the called function's whole error text."""

    name = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- values as JSON.stringify prints them ----------------------------------------------------------
def js_number(x: float) -> str:
    """A finite float as JavaScript's Number.prototype.toString prints it (1 -> "1", 1e21 ->
    "1e+21", 1e-7 -> "1e-7", 123456789012345680000 -> "123456789012345680000")."""
    if x == 0:
        return "0"
    sign = "-" if x < 0 else ""
    _, digits_t, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digits_t)).rstrip("0") or "0"
    # value = 0.DIGITS x 10^n
    n = len("".join(map(str, digits_t))) + int(exponent)
    k = len(digits)
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * (-n) + digits
    e = n - 1
    mantissa = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def _stringify(value: Any) -> str:
    if value is UNDEFINED:
        return '"undefined"'
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    t = type(value)
    if t is str:
        return json.dumps(value, ensure_ascii=False)
    if t is int:
        return f'"{value}n"'
    if t is float:
        return js_number(value) if math.isfinite(value) else "null"
    if t is list or t is tuple:
        return "[" + ",".join(_stringify(v) for v in value) + "]"
    if t is dict:
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{_stringify(v)}" for k, v in value.items()) + "}"
    if t is bytes or t is bytearray or t is memoryview:
        return "{}"  # an ArrayBuffer has no enumerable properties
    return json.dumps(str(value), ensure_ascii=False)


def _utf16_len(text: str) -> int:
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def stringify_value(value: Any) -> str:
    """convex-js `stringifyValueForError`: JSON.stringify with bigints as "123n" and undefined as
    "undefined", insertion order kept, cut to 16 384 UTF-16 units with "[...truncated]"."""
    text = _stringify(value)
    if _utf16_len(text) <= MAX_VALUE_FOR_ERROR_LEN:
        return text
    budget = MAX_VALUE_FOR_ERROR_LEN - len(_TRUNCATED)
    out: list[str] = []
    used = 0
    for ch in text:
        width = 2 if ord(ch) > 0xFFFF else 1
        if used + width > budget:
            break  # never splits a surrogate pair
        out.append(ch)
        used += width
    return "".join(out) + _TRUNCATED


# -- names and messages ------------------------------------------------------------------------------
def error_name(error: BaseException) -> str:
    if isinstance(error, ConvexError):
        return error.name
    if isinstance(error, (EngineError, NestedFunctionError)) or type(error) is Exception:
        return "Error"
    return type(error).__name__


def error_message(error: BaseException) -> str:
    if isinstance(error, (ConvexError, EngineError, NestedFunctionError)):
        return error.message
    return str(error)


def format_uncaught(name: str, message: str) -> str:
    """crates/isolate helpers.rs `format_uncaught_error`."""
    if name and message:
        return f"Uncaught {name}: {message}"
    if name:
        return f"Uncaught {name}"
    if message:
        return f"Uncaught {message}"
    return "Uncaught"


# -- frames -----------------------------------------------------------------------------------------
def _within(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
        return True
    except ValueError:
        return False


_PREFIXES = tuple({Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()})


def _is_engine(path: Path) -> bool:
    return _within(path, _ENGINE_DIR)


def _is_app(path: Path, app_root: Path | None) -> bool:
    """A file of the app: under its folder, and neither the engine nor installed packages (the repo
    root is an app whose folder also holds engine/ and .venv/)."""
    if app_root is None or not _within(path, app_root) or _is_engine(path):
        return False
    return not any(_within(path, prefix) for prefix in _PREFIXES)


def _shown_path(path: Path, app_root: Path | None) -> str:
    if _is_app(path, app_root):
        return path.relative_to(app_root).as_posix()  # type: ignore[arg-type]
    if _within(path, _ENGINE_DIR.parent):
        return path.relative_to(_ENGINE_DIR.parent).as_posix()
    best: Path | None = None
    for entry in sys.path:
        if not entry:
            continue
        root = Path(entry).resolve()
        if _within(path, root) and (best is None or len(root.parts) > len(best.parts)):
            best = root
    return path.relative_to(best).as_posix() if best is not None else path.name


def _frames(tb: TracebackType | None, app_root: Path | None) -> list[str]:
    found = []  # outermost first: (path, line, column, name, is a coroutine, is engine code)
    entry = tb
    while entry is not None:
        code = entry.tb_frame.f_code
        filename = code.co_filename or "<unknown>"
        path = Path(filename).resolve() if not filename.startswith("<") else Path(filename)
        column = None
        positions = list(code.co_positions())  # where the frame stopped (Python 3.11+)
        index = entry.tb_lasti // 2
        start_column = positions[index][2] if 0 <= index < len(positions) else None
        if start_column is not None:
            column = start_column + 1  # 1-based, as V8 reports columns
        engine = _is_engine(path)
        found.append((path, entry.tb_lineno, column, code.co_name,
                      bool(code.co_flags & inspect.CO_COROUTINE), engine))
        entry = entry.tb_next
    frames = list(enumerate(reversed(found)))  # innermost first, as JS stacks are
    while frames and frames[0][1][5]:
        frames.pop(0)
    while frames and frames[-1][1][5]:
        frames.pop()
    lines = []
    for depth, (path, line, column, name, coroutine, _) in frames:
        # A coroutine that was running something else when the error came was awaiting it.
        awaiting = coroutine and depth > 0
        where = f"{_shown_path(path, app_root)}:{line}" + (f":{column}" if column is not None else "")
        lines.append(f"    at {'async ' if awaiting else ''}{name} ({where})")
    return lines


def _has_app_frame(tb: TracebackType | None, app_root: Path | None) -> bool:
    for frame, _ in traceback.walk_tb(tb):
        filename = frame.f_code.co_filename
        if not filename or filename.startswith("<"):
            continue
        path = Path(filename).resolve()
        if _is_app(path, app_root) or (app_root is None and not _is_engine(path)):
            return True
    return False


# -- the whole text --------------------------------------------------------------------------------
def error_text(error: BaseException, app_root: Path | str | None = None) -> str:
    """The error as Convex's `JsError` prints it: the message line(s), then one line per frame;
    always ends with a newline. Engine errors raised outside the function's own code (argument
    validation, conflicts) read `<Code>: <message>`."""
    root = Path(app_root).resolve() if app_root is not None else None
    tb = error.__traceback__
    if isinstance(error, EngineError) and getattr(error, "bare", False):
        # The function was stopped (a time limit), not thrown out of: Convex prints the message alone.
        return f"{error.message}\n"
    if isinstance(error, EngineError) and not _has_app_frame(tb, root):
        return f"{error.code}: {error.message}\n"
    message = format_uncaught(error_name(error), error_message(error))
    return message + "\n" + "".join(line + "\n" for line in _frames(tb, root))


def client_message(request_id: str, text: str) -> str:
    """What clients get: `[Request ID: <id>] Server Error` then the error text (redaction.rs)."""
    return f"[Request ID: {request_id}] Server Error\n{text}"


def nested_error(error: BaseException, app_root: Path | str | None) -> Exception:
    """The error a nested call raises in the calling action (convex-js syscall.ts): a ConvexError
    with the inner data, or an Error, whose message is the inner function's whole text."""
    text = error_text(error, app_root)
    if isinstance(error, ConvexError):
        return ConvexError._with_message(error.data, text)
    return NestedFunctionError(text)
