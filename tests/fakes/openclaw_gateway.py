"""A faithful local fake of the OpenClaw gateway's inbound webhooks, on loopback (reference:
shared/reference/integrations.md §2).

    with FakeGateway(token="hooks-secret") as gw:        # http://127.0.0.1:<free port>
        gw.answer_next(429, retry_after=120)             # the next admitted call is throttled
        gw.hang_next()                                   # the next one gets no answer at all
        ...
        gw.calls                                         # every request, in arrival order
        gw.admitted                                      # the turns it started (one per Idempotency-Key)

What it does like the real gateway:
- `POST /hooks/agent` and `POST /hooks/wake`, JSON bodies only; auth by `Authorization: Bearer
  <token>` or `x-openclaw-token`; a token in the query string is rejected (400); a wrong or
  missing token is 401 — checked before anything else;
- /hooks/agent needs a non-empty string `message` (400 otherwise); a caller-chosen `sessionKey`
  must start with an allowed prefix (400 otherwise); answers `200 {"ok": true, "runId": ...}`;
- an `Idempotency-Key` seen before answers the same runId and starts no new turn;
- other paths 404, other methods 405.
Scripted failures (`answer_next`, `hang_next`, `reset_next`) apply, in order, to requests that
passed authentication and validation — as a restarting or throttling gateway would answer them.
`hang_next` holds the request without answering until the client gives up (its timeout) or the
fake closes; `reset_next` closes the connection without a response.

The server runs in a thread (ThreadingHTTPServer), so it serves the engine's actions, which call
it from worker threads, while the test's event loop waits for them.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

HANG_LIMIT_S = 30.0  # a hung request is dropped after this even if nobody closes the fake


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]           # lower-case names
    body: Any                         # parsed JSON, or the raw text if it was not JSON
    status: int | None = None         # what the fake answered (None: no answer)
    run_id: str | None = None

    @property
    def bearer(self) -> str | None:
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")


@dataclass
class Turn:
    """An agent turn the gateway admitted."""

    run_id: str
    session_key: str | None
    agent_id: str | None
    message: str
    idempotency_key: str | None
    body: dict[str, Any] = field(default_factory=dict)


class FakeGateway:
    def __init__(self, token: str = "hooks-token", *, session_key_prefixes: tuple[str, ...] = ("agent:",),
                 enabled: bool = True) -> None:
        self.token = token
        self.session_key_prefixes = session_key_prefixes
        self.enabled = enabled
        self.calls: list[Call] = []
        self.admitted: list[Turn] = []
        self.wakes: list[dict[str, Any]] = []
        self._script: deque[tuple[str, int, float | None, Callable[[Call], bool] | None]] = deque()
        self._by_key: dict[str, str] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> FakeGateway:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                gateway._handle(self)

            def do_GET(self) -> None:
                gateway._respond(self, 405, {"ok": False, "error": "method not allowed"})

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name="fake-openclaw", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- scripting -------------------------------------------------------------------------------
    def answer_next(self, status: int, *, retry_after: float | None = None, times: int = 1,
                    key_prefix: str | None = None) -> None:
        """The next `times` valid requests get `status` (with `Retry-After: retry_after` seconds).
        `key_prefix`: only requests whose Idempotency-Key starts with it (others pass through)."""
        self._plan("status", status, retry_after, times, key_prefix)

    def hang_next(self, times: int = 1, *, key_prefix: str | None = None) -> None:
        self._plan("hang", 0, None, times, key_prefix)

    def reset_next(self, times: int = 1, *, key_prefix: str | None = None) -> None:
        self._plan("reset", 0, None, times, key_prefix)

    def _plan(self, kind: str, status: int, retry_after: float | None, times: int, key_prefix: str | None) -> None:
        match = None if key_prefix is None else (lambda call: (call.idempotency_key or "").startswith(key_prefix))
        with self._lock:
            self._script.extend([(kind, status, retry_after, match)] * times)

    def _take_planned(self, call: Call) -> tuple[str, int, float | None] | None:
        with self._lock:
            for i, (kind, status, retry_after, match) in enumerate(self._script):
                if match is None or match(call):
                    del self._script[i]
                    return kind, status, retry_after
        return None

    def agent_calls(self) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.path == "/hooks/agent"]

    # -- serving ---------------------------------------------------------------------------------
    def _respond(self, handler: BaseHTTPRequestHandler, status: int, body: dict[str, Any],
                 headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, val in (headers or {}).items():
            handler.send_header(k, val)
        handler.end_headers()
        handler.wfile.write(data)

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        headers = {k.lower(): val for k, val in handler.headers.items()}
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        call = Call("POST", url.path, headers, body)
        with self._lock:
            self.calls.append(call)

        def answer(status: int, payload: dict[str, Any], extra: dict[str, str] | None = None) -> None:
            call.status = status
            self._respond(handler, status, payload, extra)

        if url.path not in ("/hooks/agent", "/hooks/wake"):
            return answer(404, {"ok": False, "error": "not found"})
        if not self.enabled:
            return answer(404, {"ok": False, "error": "hooks are disabled"})
        query = parse_qs(url.query)
        if "token" in query:
            return answer(400, {"ok": False, "error": "a token in the query string is not accepted"})
        token = call.bearer or headers.get("x-openclaw-token")
        if token != self.token:
            return answer(401, {"ok": False, "error": "unauthorized"})
        if not headers.get("content-type", "").startswith("application/json") or not isinstance(body, dict):
            return answer(400, {"ok": False, "error": "a JSON object body is required"})

        if url.path == "/hooks/wake":
            if not isinstance(body.get("text"), str) or not body["text"]:
                return answer(400, {"ok": False, "error": "text is required"})
            with self._lock:
                self.wakes.append(body)
            return answer(200, {"ok": True})

        message = body.get("message")
        if not isinstance(message, str) or not message.strip():
            return answer(400, {"ok": False, "error": "message is required"})
        session_key = body.get("sessionKey")
        if session_key is not None and (not isinstance(session_key, str)
                                        or not session_key.startswith(self.session_key_prefixes)):
            return answer(400, {"ok": False, "error": "sessionKey is not allowed"})

        planned = self._take_planned(call)
        if planned is not None:
            kind, status, retry_after = planned
            if kind == "hang":
                self._release.wait(HANG_LIMIT_S)
                handler.close_connection = True
                return None
            if kind == "reset":
                handler.close_connection = True
                handler.connection.close()
                return None
            extra = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
            return answer(status, {"ok": False, "error": f"scripted {status}"}, extra)

        key = call.idempotency_key
        with self._lock:
            run_id = self._by_key.get(key) if key else None
            if run_id is None:
                run_id = f"gw-run-{next(self._ids)}"
                if key:
                    self._by_key[key] = run_id
                agent_id = body.get("agentId")
                if agent_id is None and isinstance(session_key, str) and session_key.count(":") >= 2:
                    agent_id = session_key.split(":")[1]
                self.admitted.append(Turn(run_id, session_key, agent_id, message, key, body))
        call.run_id = run_id
        return answer(200, {"ok": True, "runId": run_id})
