"""Errors: one engine error type with a stable short code, and the user-thrown ConvexError.

`EngineError.code` is a stable identifier clients and tests can rely on (`ArgumentValidationError`,
`FunctionNotFound`, `OptimisticConcurrencyControlFailure`, ...); `message` is one sentence for a
developer that names the table, field or path involved. `status` is the HTTP status the server edge
uses when the error is an infrastructure error rather than a function failure.

Errors are caught in three places only: the committer (retries OCC), the function runner (turns a
failure into a failed outcome), and the server edge (HTTP status / WebSocket close code).
"""

from __future__ import annotations

from typing import Any

__all__ = ["EngineError", "ConvexError", "CONVEX_MISSING_ADVICE"]

# How Convex ends a miss on /api/function and /api/run (application/src/lib.rs), after
# "Could not find function for '<path>'.".
CONVEX_MISSING_ADVICE = "Did you forget to run `npx convex dev`?"


class EngineError(Exception):
    """An error the engine raises, with a stable `code` and a developer `message`."""

    def __init__(self, code: str, message: str, *, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    def to_json(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


class ConvexError(Exception):
    """Raised by application code; `data` (any Convex value) reaches the client as `errorData`.

    Clients read `Uncaught <name>: <message>`: `name` is "ConvexError" or a subclass's own class
    name (a subclass may also set `name = "..."`, as a JavaScript subclass sets `name`); the message
    is the data itself when it is a string, else the data as JSON (engine.function_errors)."""

    def __init__(self, data: Any = None) -> None:
        super().__init__(data)
        self.data = data
        self._message: str | None = None

    @classmethod
    def _with_message(cls, data: Any, message: str) -> ConvexError:
        """A ConvexError with `data` whose message is given (a nested call's whole error text)."""
        error = ConvexError(data)
        error._message = message
        return error

    @property
    def name(self) -> str:
        return self.__dict__.get("_name") or type(self).__name__

    @name.setter
    def name(self, value: str) -> None:
        self.__dict__["_name"] = value

    @property
    def message(self) -> str:
        if self._message is not None:
            return self._message
        if isinstance(self.data, str):
            return self.data
        from .function_errors import stringify_value  # (a leaf module has no imports above it)

        return stringify_value(self.data)

    def __str__(self) -> str:
        return self.message
