"""The OpenClaw gateway client: one `POST {OPENCLAW_GATEWAY_URL}/hooks/agent` per call.

    answer = await post_agent_hook({"message": "HEARTBEAT", "sessionKey": "agent:main:main"},
                                   idempotency_key="nova-heartbeat-...")
    if answer.ok: ...answer.run_id...
    elif answer.retryable: ...try again after answer.retry_after_ms (or your back-off)...

Settings (deployment environment, `engine.env`, read on every call):
  OPENCLAW_GATEWAY_URL              the gateway's origin, e.g. http://127.0.0.1:18789
  OPENCLAW_HOOKS_TOKEN              the gateway's `hooks.token`, sent as `Authorization: Bearer`
  OPENCLAW_GATEWAY_TIMEOUT_SECONDS  per request (default 10)

HTTP is the standard library's urllib run in a worker thread (`asyncio.to_thread`), so actions add no
dependency and never block the event loop. This function never raises for network or HTTP failures:
they come back as a `GatewayAnswer` with `ok=False`, so a caller can always record the attempt.
The token never appears in an answer, a log line or an error.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from engine import env

GATEWAY_URL_ENV = "OPENCLAW_GATEWAY_URL"
HOOKS_TOKEN_ENV = "OPENCLAW_HOOKS_TOKEN"
TIMEOUT_ENV = "OPENCLAW_GATEWAY_TIMEOUT_SECONDS"
DEFAULT_TIMEOUT_S = 10.0
MAX_ERROR_BODY = 300


@dataclass(frozen=True, slots=True)
class GatewayAnswer:
    ok: bool                            # a 2xx answer: the gateway admitted the turn
    status: int | None                  # None: no HTTP answer (timeout, refused, reset)
    run_id: str | None = None           # the gateway's `runId`, when it gave one
    retry_after_ms: float | None = None  # from `Retry-After` (429/503)
    error: str | None = None            # a short, secret-free description of a failure

    @property
    def retryable(self) -> bool:
        """Worth retrying soon: throttled, restarting, or no answer at all. Other failures (a
        bad token, a bad body) also get retried by callers, but with their longest back-off."""
        return self.status is None or self.status in (408, 409, 425, 429, 500, 502, 503, 504)


def configured() -> bool:
    return bool(env.get(GATEWAY_URL_ENV)) and bool(env.get(HOOKS_TOKEN_ENV))


def missing_settings() -> list[str]:
    return [name for name in (GATEWAY_URL_ENV, HOOKS_TOKEN_ENV) if not env.get(name)]


def _timeout() -> float:
    try:
        value = float(env.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    except ValueError:
        return DEFAULT_TIMEOUT_S
    return value if value > 0 else DEFAULT_TIMEOUT_S


def parse_retry_after(value: str | None, now_s: float | None = None) -> float | None:
    """`Retry-After` in ms: delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value)) * 1000
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now_s is None else now_s)) * 1000


def _post(url: str, token: str, body: dict[str, Any], idempotency_key: str, timeout: float) -> GatewayAnswer:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="POST", headers={
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
        "Idempotency-Key": idempotency_key,
        "User-Agent": "nova-command",
    })
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as e:
        with e:
            detail = e.read(MAX_ERROR_BODY).decode("utf-8", errors="replace").strip()
            retry_after = parse_retry_after(e.headers.get("Retry-After"))
        return GatewayAnswer(False, e.code, retry_after_ms=retry_after,
                             error=f"HTTP {e.code}" + (f": {detail}" if detail else ""))
    except (TimeoutError, socket.timeout):
        return GatewayAnswer(False, None, error=f"no answer within {timeout:g}s")
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return GatewayAnswer(False, None, error=f"no answer within {timeout:g}s")
        return GatewayAnswer(False, None, error=f"unreachable: {reason}")
    except (OSError, ValueError) as e:  # reset connections, malformed URLs, broken answers
        return GatewayAnswer(False, None, error=f"{type(e).__name__}: {e}")
    run_id = None
    try:
        parsed = json.loads(raw) if raw else None
        if isinstance(parsed, dict) and isinstance(parsed.get("runId"), str):
            run_id = parsed["runId"]
    except ValueError:
        pass  # admitted is admitted, whatever the body says
    return GatewayAnswer(200 <= status < 300, status, run_id=run_id,
                         error=None if 200 <= status < 300 else f"HTTP {status}")


async def post_agent_hook(body: dict[str, Any], idempotency_key: str) -> GatewayAnswer:
    """POST /hooks/agent; `body` must hold `message`. Unconfigured -> ok=False, status None."""
    missing = missing_settings()
    if missing:
        return GatewayAnswer(False, None, error=f"not configured: set {', '.join(missing)}")
    url = env.get(GATEWAY_URL_ENV, "").rstrip("/") + "/hooks/agent"  # type: ignore[union-attr]
    token = env.get(HOOKS_TOKEN_ENV, "") or ""
    return await asyncio.to_thread(_post, url, token, body, idempotency_key, _timeout())


def agent_id_of(session_key: str) -> str | None:
    """The OpenClaw agent id in a session key `agent:<agentId>:<mainKey>`."""
    parts = session_key.split(":")
    if len(parts) >= 3 and parts[0] == "agent" and parts[1]:
        return parts[1]
    return None
