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

__all__ = ["EngineError", "ConvexError"]


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
    """Raised by application code; `data` (any Convex value) reaches the client as `errorData`."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.data = data
