"""A fake Telegram Bot API on loopback, for python-telegram-bot's `Bot(token, base_url=...)`.

    with FakeTelegram(token="123:ABC") as tg:       # serves http://127.0.0.1:<port>/bot<token>/<method>
        env TELEGRAM_API_BASE_URL = tg.base_url      # "http://127.0.0.1:<port>/bot"
        tg.script("ok", ("retry_after", 1), ("error", 400, "Bad Request: chat not found"))
        ... tg.messages -> accepted sendMessage calls: {chat_id, text, plain, message_id, at}

Answers like the real API (integrations.md §4): `getMe` -> the bot; `sendMessage` -> `{"ok": true,
"result": Message}`; a wrong token -> 401; a scripted 429 carries `parameters.retry_after`. Texts sent
with parse_mode MarkdownV2 are parsed the way Telegram does for what the app uses (bold `*`, italic
`_`, underline `__`, backslash escapes): an unescaped reserved character or an unclosed entity is a
400 "can't parse entities", and a text longer than 4096 UTF-16 code units after parsing is a 400
"message is too long". `sendMessage` directives are consumed in order (default "ok"):
  "ok" | ("retry_after", seconds) | ("error", status, description) | ("hold", started, release)
where "hold" sets the threading.Event `started` and waits for `release` before answering "ok".
"""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

RESERVED = set("_*[]()~`>#+-=|{}.!")
HOLD_TIMEOUT_S = 30.0


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def parse_markdown_v2(text: str) -> str:
    """The plain text of a MarkdownV2 message; ValueError with Telegram's description if invalid."""
    out: list[str] = []
    open_entities: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            if i + 1 >= len(text) or not 1 <= ord(text[i + 1]) <= 126:
                raise ValueError("Bad Request: can't parse entities: Unexpected end of escape sequence")
            out.append(text[i + 1])
            i += 2
            continue
        if ch in "*_":
            marker = "__" if text.startswith("__", i) else ch
            if open_entities and open_entities[-1] == marker:
                open_entities.pop()
            else:
                open_entities.append(marker)
            i += len(marker)
            continue
        if ch in RESERVED:
            raise ValueError(f"Bad Request: can't parse entities: Character '{ch}' is reserved and must be "
                             "escaped with the preceding '\\'")
        out.append(ch)
        i += 1
    if open_entities:
        name = {"*": "Bold", "_": "Italic", "__": "Underline"}[open_entities[-1]]
        raise ValueError(f"Bad Request: can't parse entities: Can't find end of {name} entity")
    return "".join(out)


class FakeTelegram:
    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.messages: list[dict[str, Any]] = []      # accepted sendMessage calls
        self.requests: list[dict[str, Any]] = []      # every call: {method, params, status, at}
        self._script: deque[Any] = deque()
        self._lock = threading.Lock()
        self._next_id = 1
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/bot"

    def script(self, *directives: Any) -> None:
        with self._lock:
            self._script.extend(directives)

    def sends(self) -> list[dict[str, Any]]:
        """Every sendMessage request, whatever the answer."""
        return [r for r in self.requests if r["method"] == "sendMessage"]

    def __enter__(self) -> FakeTelegram:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    # -- answering ---------------------------------------------------------------------------------
    def _answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": 1, "is_bot": True, "first_name": "Nova",
                                                "username": "nova_standup_bot"}}
        if method != "sendMessage":
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        with self._lock:
            directive = self._script.popleft() if self._script else "ok"
        if isinstance(directive, tuple) and directive[0] == "retry_after":
            seconds = directive[1]
            return 429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {seconds}",
                         "parameters": {"retry_after": seconds}}
        if isinstance(directive, tuple) and directive[0] == "error":
            return directive[1], {"ok": False, "error_code": directive[1], "description": directive[2]}
        if isinstance(directive, tuple) and directive[0] == "hold":
            directive[1].set()
            directive[2].wait(HOLD_TIMEOUT_S)
        text = params.get("text")
        if not isinstance(text, str) or not text:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        plain = text
        if params.get("parse_mode") == "MarkdownV2":
            try:
                plain = parse_markdown_v2(text)
            except ValueError as e:
                return 400, {"ok": False, "error_code": 400, "description": str(e)}
        if utf16_len(plain) > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        chat_id = str(params.get("chat_id"))
        with self._lock:
            message_id = self._next_id
            self._next_id += 1
            self.messages.append({"chat_id": chat_id, "text": text, "plain": plain, "message_id": message_id,
                                  "at": time.monotonic()})
        chat = {"id": int(chat_id), "type": "group", "title": "Nova"} if chat_id.lstrip("-").isdigit() \
            else {"id": -1001, "type": "channel", "title": chat_id}
        return 200, {"ok": True, "result": {"message_id": message_id, "date": int(time.time()), "chat": chat,
                                            "text": plain}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                path = urllib.parse.urlparse(self.path).path
                prefix = f"/bot{fake.token}/"
                if not path.startswith("/bot"):
                    status, body, method, params = 404, {"ok": False, "error_code": 404, "description": "Not Found"}, "?", {}
                else:
                    method = path.rsplit("/", 1)[-1]
                    params = _params(self.headers.get("content-type", ""), raw)
                    if not path.startswith(prefix):
                        status, body = 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
                    else:
                        status, body = fake._answer(method, params)
                with fake._lock:
                    fake.requests.append({"method": method, "params": params, "status": status,
                                          "at": time.monotonic()})
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST

        return Handler


def _params(content_type: str, raw: bytes) -> dict[str, Any]:
    if "application/json" in content_type:
        return json.loads(raw or b"{}")
    if "multipart/form-data" in content_type:
        from email.parser import BytesParser
        from email.policy import HTTP

        message = BytesParser(policy=HTTP).parsebytes(
            f"content-type: {content_type}\r\n\r\n".encode() + raw)
        return {part.get_param("name", header="content-disposition"): part.get_content()
                for part in message.iter_parts()}
    return {k: v[0] for k, v in urllib.parse.parse_qs(raw.decode(), keep_blank_values=True).items()}
