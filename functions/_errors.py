"""App errors: every refusal is a `ConvexError` whose data carries a stable `code` clients can switch on.

    raise app_error("NOT_FOUND", "No task with this id.", id=task_id)

Codes: UNAUTHENTICATED, NO_TENANT, FORBIDDEN, NOT_FOUND (also for another tenant's documents, so
their existence does not leak), NOT_AN_AGENT, INVALID_STATUS, INVALID_PROGRESS, INVALID_THREAD,
INVALID_DATE, INVALID_VOICE_CHANNEL, DUPLICATE, EMPTY_CONTENT, CONFIG_MISSING. A function raises
before its first write or the whole mutation is rolled back, so a refusal never leaves a partial write.
"""

from typing import Any

from engine import ConvexError


def app_error(code: str, message: str, **details: Any) -> ConvexError:
    return ConvexError({"code": code, "message": message, **details})
