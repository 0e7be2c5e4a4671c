"""A fake Anthropic Messages API on loopback, for the `anthropic` SDK (`base_url=fake.base_url`).

    with FakeAnthropic(api_key="sk-test") as claude:
        claude.reply = '["Ship the auth fix on Friday"]'       # the assistant's text
        claude.script(("status", 500), ("text", "no JSON here"))   # next answers, in order
        ... claude.requests -> [{"headers": {...}, "body": {...}}]

`POST /v1/messages` checks the API key — sent as `x-api-key`, or as `Authorization: Bearer <key>`
as the 2.x SDK does — (401 authentication_error otherwise) and answers a Messages
API response (`type: "message"`, one text block, `stop_reason: "end_turn"`, usage). Scripted
("status", n) answers an API error of that status with `retry-after-ms: 1`, so the SDK's own retry
does not slow tests down.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
               429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


class FakeAnthropic:
    def __init__(self, api_key: str = "sk-ant-test") -> None:
        self.api_key = api_key
        self.reply = "[]"
        self.requests: list[dict[str, Any]] = []
        self._script: deque[tuple[str, Any]] = deque()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def script(self, *answers: tuple[str, Any]) -> None:
        with self._lock:
            self._script.extend(answers)

    def prompts(self) -> list[str]:
        """The text of each request's user message."""
        out = []
        for r in self.requests:
            content = r["body"]["messages"][0]["content"]
            out.append(content if isinstance(content, str) else "".join(b.get("text", "") for b in content))
        return out

    @staticmethod
    def key_of(request: dict[str, Any]) -> str | None:
        """The API key a request carried (either header)."""
        headers = request["headers"]
        if "x-api-key" in headers:
            return headers["x-api-key"]
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" else None

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _answer(self, headers: dict[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.key_of({"headers": headers}) != self.api_key:
            return 401, _error(401, "invalid x-api-key")
        with self._lock:
            kind, value = self._script.popleft() if self._script else ("text", self.reply)
        if kind == "status":
            return value, _error(value, "scripted failure")
        return 200, {
            "id": f"msg_fake_{len(self.requests)}", "type": "message", "role": "assistant",
            "model": body.get("model", "claude"), "content": [{"type": "text", "text": value}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 42, "output_tokens": 7},
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                if self.path.split("?")[0] != "/v1/messages":
                    status, body = 404, _error(404, f"no route {self.path}")
                else:
                    try:
                        request = json.loads(raw)
                    except ValueError:
                        request = None
                    if not isinstance(request, dict):
                        status, body = 400, _error(400, "the body is not a JSON object")
                    else:
                        with fake._lock:
                            fake.requests.append({"headers": headers, "body": request})
                        status, body = fake._answer(headers, request)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", "req_fake")
                if status >= 400:
                    self.send_header("retry-after-ms", "1")
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _error(status: int, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}
