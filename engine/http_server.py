"""HTTP/1.1 and WebSocket on asyncio's Protocol API: the engine's own network edge.

    server = HttpServer(endpoint)               # endpoint: see `Endpoint`
    await server.start(sock)                    # a bound, listening socket
    ...
    await server.shutdown(grace=5.0)

Why our own: measured on the transfer benchmark, uvicorn + Litestar cost as much CPU per request as
running and committing the mutation, and held ~16 KiB per idle WebSocket in ASGI state. Here a
request is parsed by httptools (the C parser uvicorn uses), answered by one framework-free handler
(`engine.http_api`, `engine.http_router`) and written with one `transport.write`; a WebSocket is
websockets' sans-I/O protocol object on the same connection, with no task, queue or timer of its
own while idle.

What it guarantees:
- Every accepted socket has TCP_NODELAY: a response never waits for the client's delayed ACK.
- A body larger than the route's limit is refused with a readable 413 decided from Content-Length
  before reading it, or as soon as a chunked body crosses the limit. The rest of that body is read
  and dropped (never buffered) before the connection closes, so the client reads the 413 instead of
  a reset; a client that keeps sending past DISCARD_LIMIT bytes is cut off.
- Bad HTTP gets a 400 and a close; oversized request heads a 431. A request head must arrive within
  HEAD_TIMEOUT_S; an idle keep-alive connection closes after KEEPALIVE_S. The limits hold per
  connection, so one client cannot hold resources for others.
- Requests on one connection are answered in order (pipelining works); a handler's exception is a
  500 with a generic message (and the traceback in the server log), never a dropped connection.
- WebSocket: a text or binary message (reassembled from fragments, at most `max_message` bytes) is
  handed to the session through `WebSocket.receive()`; `send()` waits while the socket's write
  buffer is full, so a slow reader pushes back on its own session only. The server pings every
  PING_INTERVAL_S and drops a peer silent for PING_TIMEOUT_S more.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol, cast
from urllib.parse import parse_qsl

import httptools
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as WsRequest
from websockets.protocol import State
from websockets.server import ServerProtocol

from .http_api import HttpRequest, HttpResponse, error_response

__all__ = ["Endpoint", "HttpServer", "WebSocket", "StreamingResponse"]

log = logging.getLogger("engine.http")

MAX_HEAD_BYTES = 64 * 1024
HEAD_TIMEOUT_S = 10.0
KEEPALIVE_S = 5.0
DISCARD_LIMIT = 1 << 30  # bytes of a refused body read and dropped before giving up on the client
MAX_PIPELINED = 16  # parsed requests waiting on one connection before it stops reading
PING_INTERVAL_S = 10.0
PING_TIMEOUT_S = 20.0
CLOSE_TIMEOUT_S = 2.0  # after our close frame, how long a peer has to answer it
MAX_QUEUED_MESSAGES = 64  # received WebSocket messages the session has not taken yet


class StreamingResponse(HttpResponse):
    """A response whose body is produced over time (server-sent events): sent chunked. `stream`
    is iterated until it ends or the client goes away (then it is closed)."""

    def __init__(self, status: int, stream: AsyncIterator[bytes], headers: list[tuple[str, str]]) -> None:
        super().__init__(status, b"", headers)
        self.stream = stream


class WebSocket:
    """One accepted WebSocket, as a sync session uses it."""

    __slots__ = ("_conn", "_ws", "_incoming", "_waiter", "_parts", "_parts_size", "closed", "path",
                 "headers", "last_heard", "ping_sent")

    def __init__(self, conn: _Connection, ws: ServerProtocol, path: str, headers: dict[str, str]) -> None:
        self._conn = conn
        self._ws = ws
        self._incoming: deque[bytes | str | None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._parts: list[bytes] | None = None
        self._parts_size = 0
        self.closed = False
        self.path = path
        self.headers = headers
        self.last_heard = time.monotonic()
        self.ping_sent = 0.0

    # -- receiving ---------------------------------------------------------------------------------
    def _data_received(self, data: bytes) -> None:
        ws = self._ws
        self.last_heard = time.monotonic()
        self.ping_sent = 0.0
        try:
            ws.receive_data(data)
        except EOFError:
            return
        for frame in cast("list[Frame]", ws.events_received()):  # a server protocol receives frames
            op = frame.opcode
            if op is Opcode.TEXT or op is Opcode.BINARY:
                if frame.fin:
                    self._deliver(cast(bytes, frame.data))
                else:
                    self._parts = [cast(bytes, frame.data)]
            elif op is Opcode.CONT:
                if self._parts is not None:
                    self._parts.append(cast(bytes, frame.data))
                    if frame.fin:
                        parts, self._parts = self._parts, None
                        self._deliver(b"".join(parts))
            elif op is Opcode.CLOSE:
                self._deliver(None)
        self._flush()

    def _deliver(self, message: bytes | None) -> None:
        if self.closed and message is not None:
            return
        if message is None:
            self.closed = True
        queue = self._incoming
        if queue is None:
            queue = self._incoming = deque()
        queue.append(message)
        if len(queue) > MAX_QUEUED_MESSAGES:
            self._conn._pause_reading()
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _connection_lost(self) -> None:
        self._deliver(None)

    async def receive(self) -> bytes | None:
        """The next message (text frames as UTF-8 bytes), or None once the connection is closed."""
        while True:
            queue = self._incoming
            if queue:
                message = queue.popleft()
                if len(queue) < MAX_QUEUED_MESSAGES // 2:
                    self._conn._resume_reading()
                if not queue:
                    self._incoming = None  # an idle connection holds no queue
                if message is None:
                    self.closed = True
                return cast("bytes | None", message)
            if self.closed:
                return None
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    # -- sending -----------------------------------------------------------------------------------
    def _flush(self) -> None:
        transport = self._conn.transport
        if transport is None:
            return
        chunks = self._ws.data_to_send()
        if len(chunks) > 1 and all(chunks):  # several frames: one write
            transport.write(b"".join(chunks))
            chunks = []
        for chunk in chunks:
            if chunk:
                transport.write(chunk)
            else:  # the protocol is done with the connection (close handshake over)
                self._conn.close()
                return
        if self._ws.state is State.CLOSING and transport is not None:
            # We sent a close frame: a peer that never answers it is cut off after a moment.
            asyncio.get_running_loop().call_later(CLOSE_TIMEOUT_S, self._conn.close)

    async def send(self, data: bytes | str) -> None:
        """Send one text message; waits while the socket's buffer is full. Raises ConnectionError
        once the connection is gone."""
        if self._conn.transport is None or self._ws.state is not State.OPEN:
            raise ConnectionError("the WebSocket is closed")
        self._ws.send_text(data.encode() if isinstance(data, str) else data)
        self._flush()
        await self._conn.drained()

    async def send_buffered(self, data: bytes | str) -> None:
        """`send` without the write: the frame waits for `flush()`, so a burst is one write."""
        if self._conn.transport is None or self._ws.state is not State.OPEN:
            raise ConnectionError("the WebSocket is closed")
        self._ws.send_text(data.encode() if isinstance(data, str) else data)

    async def flush(self) -> None:
        """Write every buffered frame at once; waits while the socket's buffer is full."""
        if self._conn.transport is None:
            raise ConnectionError("the WebSocket is closed")
        self._flush()
        await self._conn.drained()

    def ping(self) -> None:
        if self._ws.state is State.OPEN:
            self._ws.send_ping(b"k")
            self.ping_sent = time.monotonic()
            self._flush()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        if self._ws.state is State.OPEN:
            self._ws.send_close(code, reason)
            self._flush()


WebSocketHandler = Callable[[WebSocket], Awaitable[None]]


class Endpoint(Protocol):
    """What a port serves. All three are called on the event loop."""

    def body_limit(self, path: str) -> int: ...

    async def respond(self, request: HttpRequest) -> HttpResponse: ...

    def websocket(self, request: HttpRequest) -> WebSocketHandler | None:
        """The handler for a WebSocket upgrade on this path, or None (answered 404)."""
        ...


_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}
_date_cache: list[Any] = [0, b""]


def _date_header() -> bytes:
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0] = now
        _date_cache[1] = b"date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_cache[1]


def _head(status: int, headers: list[tuple[str, str]], extra: bytes) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    for name, value in headers:
        lines.append(b"%s: %s\r\n" % (name.encode("latin-1"), value.encode("latin-1")))
    lines.append(_date_header())
    lines.append(extra)
    return b"".join(lines)


class _Connection(asyncio.Protocol):
    __slots__ = ("server", "transport", "parser", "_url", "_headers", "_head_size", "_body", "_body_size",
                 "_limit", "_refused", "_discarded", "_queue", "_task", "_keep_alive", "_closing",
                 "_paused_reading", "_paused_writing", "_drain", "ws", "last_active", "_head_started",
                 "_upgrade", "_raw_head", "_path", "_query_string", "_hdict")

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._body: list[bytes] = []
        self._body_size = 0
        self._limit = 0
        self._refused = False
        self._discarded = 0
        self._queue: deque[HttpRequest] = deque()
        self._task: asyncio.Task[None] | None = None
        self._keep_alive = True
        self._closing = False
        self._paused_reading = False
        self._paused_writing = False
        self._drain: asyncio.Future[None] | None = None
        self.ws: WebSocket | None = None
        self.last_active = time.monotonic()
        self._head_started = 0.0
        self._upgrade = False
        self._raw_head: list[bytes] | None = None
        self._path = ""
        self._query_string = ""
        self._hdict: dict[str, str] = {}

    # -- asyncio.Protocol ------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server._http.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.server._http.discard(self)
        if self.ws is not None:
            self.server._ws.discard(self.ws)
            self.ws._connection_lost()
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_exception(ConnectionError("connection lost"))

    def pause_writing(self) -> None:
        self._paused_writing = True

    def resume_writing(self) -> None:
        self._paused_writing = False
        drain = self._drain
        if drain is not None and not drain.done():
            drain.set_result(None)
        self._drain = None

    async def drained(self) -> None:
        if not self._paused_writing:
            return
        if self.transport is None:
            raise ConnectionError("connection lost")
        if self._drain is None:
            self._drain = asyncio.get_running_loop().create_future()
        await self._drain

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            try:
                self.ws._data_received(data)
            except Exception:  # a protocol violation the sans-I/O layer did not absorb
                log.debug("WebSocket input failed", exc_info=True)
                self.close()
            return
        self.last_active = time.monotonic()
        if self._raw_head is not None:
            self._raw_head.append(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._upgrade and not self._refused:
                self._start_websocket(data, upgrade.args[0])
            else:
                self._fail(400, "BadRequest", "Only WebSocket upgrades are supported.")
        except httptools.HttpParserError as e:
            if self._refused:  # garbage after a refused body: we are closing anyway
                self.close()
            elif isinstance(e.__context__, _HeadTooLarge):
                self._fail(431, "RequestHeaderFieldsTooLarge", f"The request head exceeds {MAX_HEAD_BYTES} bytes.")
            else:
                self._fail(400, "BadRequest", "The request is not valid HTTP/1.1.")

    def eof_received(self) -> bool | None:
        return None  # close our side too

    # -- httptools callbacks -----------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._head_size = 0
        self._body = []
        self._body_size = 0
        self._head_started = time.monotonic()
        self._upgrade = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES or len(self._headers) > 200:
            raise _HeadTooLarge
        lower = name.lower()
        self._headers.append((lower.decode("latin-1"), value.decode("latin-1")))
        if lower == b"upgrade" and value.lower() == b"websocket":
            self._upgrade = True
            if self._raw_head is None:
                self._raw_head = []

    def on_headers_complete(self) -> None:
        self._head_started = 0.0
        parsed = httptools.parse_url(self._url)
        path = self._path = parsed.path.decode("latin-1")
        self._query_string = (parsed.query or b"").decode("latin-1")
        self._limit = self.server.endpoint.body_limit(path)
        headers = self._hdict = dict(self._headers)
        length = headers.get("content-length")
        if not self.parser.should_keep_alive():
            self._keep_alive = False
        if length is not None:
            try:
                too_large = int(length) > self._limit
            except ValueError:
                too_large = False
            expecting = headers.get("expect", "").lower() == "100-continue"
            if too_large:
                self._refuse()
                if expecting and self._task is None:
                    self.close()  # the client waits for our word before sending the body: it has it
                return
        if headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        if self._refused:
            self._discarded += len(body)
            if self._discarded > DISCARD_LIMIT:
                self.close()
            return
        self._body_size += len(body)
        if self._body_size > self._limit:
            self._body = []
            self._refuse()
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._refused:
            if self._task is None:
                self.close()  # the refused body is fully drained: the 413 is all there is
            return  # else the queued 413 closes the connection once it has been written
        if self._upgrade:
            return  # answered by _start_websocket once the parser hands over the connection
        method = self.parser.get_method().decode("latin-1")
        query_string = self._query_string
        body = self._body
        request = HttpRequest(method, self._path, self._hdict, _parse_query(query_string),
                              body[0] if len(body) == 1 else b"".join(body), query_string)
        self._body = []
        self._queue.append(request)
        if len(self._queue) > MAX_PIPELINED:
            self._pause_reading()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())

    # -- answering -------------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self._queue and self.transport is not None:
                request = self._queue.popleft()
                if isinstance(request, _AnswerNow):
                    self._write(request.response)
                    self.close()
                    return
                if len(self._queue) < MAX_PIPELINED // 2:
                    self._resume_reading()
                try:
                    response = await self.server.endpoint.respond(request)
                except Exception:
                    log.exception("unhandled error answering %s %s", request.method, request.path)
                    response = error_response(500, "InternalServerError", "The request could not be completed.")
                if isinstance(response, StreamingResponse):
                    await self._stream(response)
                    return
                self._write(response, head_only=request.method == "HEAD")
                if not self._keep_alive or self.server.stopping:
                    self.close()
                    return
                await self.drained()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._task = None
            self.last_active = time.monotonic()

    def _write(self, response: HttpResponse, *, head_only: bool = False) -> None:
        transport = self.transport
        if transport is None:
            return
        body = response.body
        extra = b"content-length: %d\r\n" % len(body)
        if not self._keep_alive or self.server.stopping:
            extra += b"connection: close\r\n"
        extra += b"\r\n"
        head = _head(response.status, [h for h in response.headers if h[0] != "content-length"], extra)
        transport.write(head if head_only else head + body)

    async def _stream(self, response: StreamingResponse) -> None:
        transport = self.transport
        assert transport is not None
        self._keep_alive = False  # one streamed response per connection
        stream = response.stream
        try:
            transport.write(_head(response.status, response.headers,
                                  b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"))
            async for chunk in stream:
                if self.transport is None:
                    break
                if chunk:
                    self.transport.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    await self.drained()
            if self.transport is not None:
                self.transport.write(b"0\r\n\r\n")
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            self.close()

    def _refuse(self) -> None:
        """413 now; read and drop the rest of the body, then close."""
        self._refused = True
        self._keep_alive = False
        response = self.server.endpoint_too_large(self._limit, self._hdict)
        if self._task is None:
            self._write(response)
        else:  # an earlier pipelined request is still being answered: keep the order
            self._queue.append(_AnswerNow(response))  # type: ignore[arg-type]

    def _fail(self, status: int, code: str, message: str) -> None:
        self._keep_alive = False
        if self._task is None:
            self._write(error_response(status, code, message))
        self.close()

    def _pause_reading(self) -> None:
        if not self._paused_reading and self.transport is not None:
            self._paused_reading = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()

    def close(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    # -- WebSocket -------------------------------------------------------------------------------
    def _start_websocket(self, data: bytes, offset: int) -> None:
        raw = b"".join(self._raw_head or [data])
        rest = data[offset:]
        head = raw[:len(raw) - len(rest)]
        self._raw_head = None
        path, query_string, headers = self._path, self._query_string, self._hdict
        request = HttpRequest("GET", path, headers, _parse_query(query_string), b"", query_string)
        handler = self.server.endpoint.websocket(request)
        if handler is None:
            self._fail(404, "NotFound", f"No WebSocket endpoint at {path}.")
            return
        protocol = ServerProtocol(max_size=self.server.max_message)
        protocol.receive_data(head)
        events = protocol.events_received()
        if not events or not isinstance(events[0], WsRequest):
            self._fail(400, "BadRequest", "Invalid WebSocket handshake.")
            return
        response = protocol.accept(events[0])
        protocol.send_response(response)
        ws = WebSocket(self, protocol, path, headers)
        ws._flush()
        if response.status_code != 101:
            self.close()
            return
        self.ws = ws
        self.server._http.discard(self)
        self.server._ws.add(ws)
        if rest:
            ws._data_received(rest)
        self._task = asyncio.get_running_loop().create_task(self._run_websocket(handler, ws))

    async def _run_websocket(self, handler: WebSocketHandler, ws: WebSocket) -> None:
        try:
            await handler(ws)
        except Exception:
            log.exception("WebSocket handler failed")
        finally:
            try:
                await ws.close(1000 if ws.closed else 1011)
            except Exception:
                self.close()


class _AnswerNow(HttpRequest):
    """Queued in place of a request: a response decided while parsing (a refused body)."""

    def __init__(self, response: HttpResponse) -> None:
        super().__init__("", "", {}, {}, b"", "")
        self.response = response


class _HeadTooLarge(Exception):
    pass


_QUERIES: dict[str, dict[str, str]] = {}  # query strings recur ("format=json"): parsed once (bounded)


def _parse_query(query_string: str) -> dict[str, str]:
    if not query_string:
        return {}
    parsed = _QUERIES.get(query_string)
    if parsed is None:
        parsed = dict(parse_qsl(query_string, keep_blank_values=True))
        if len(query_string) <= 256:
            if len(_QUERIES) >= 1000:
                _QUERIES.clear()
            _QUERIES[query_string] = parsed
    return dict(parsed)  # handlers get their own copy


class HttpServer:
    """Serves one `Endpoint` on listening sockets until `shutdown()`."""

    def __init__(self, endpoint: Endpoint, *, max_message: int = 64 * 1024 * 1024,
                 too_large: Callable[[int, dict[str, str]], HttpResponse] | None = None) -> None:
        self.endpoint = endpoint
        self.max_message = max_message
        self._too_large = too_large
        self._http: set[_Connection] = set()
        self._ws: set[WebSocket] = set()
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.Task[None] | None = None
        self.stopping = False

    def endpoint_too_large(self, limit: int, headers: dict[str, str]) -> HttpResponse:
        if self._too_large is not None:
            return self._too_large(limit, headers)
        return error_response(413, "PayloadTooLarge", f"The request body exceeds the limit of {limit} bytes.")

    @property
    def websockets(self) -> int:
        return len(self._ws)

    @property
    def connections(self) -> int:
        return len(self._http) + len(self._ws)

    async def start(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _Connection(self), sock=sock, backlog=2048)
        self._servers.append(server)
        if self._sweeper is None:
            self._sweeper = loop.create_task(self._sweep(), name="http-sweeper")

    async def _sweep(self) -> None:
        """Once a second: close keep-alive connections idle too long and heads too slow; ping quiet
        WebSockets and drop those that stopped answering."""
        last_ping_round = 0.0
        while True:
            await asyncio.sleep(1.0)
            now = time.monotonic()
            for conn in list(self._http):
                if conn._head_started and now - conn._head_started > HEAD_TIMEOUT_S:
                    conn._fail(408, "RequestTimeout", "The request head took too long to arrive.")
                elif conn._task is None and not conn._queue and now - conn.last_active > KEEPALIVE_S:
                    conn.close()
            if now - last_ping_round >= PING_INTERVAL_S / 2:
                last_ping_round = now
                for ws in list(self._ws):
                    if ws.ping_sent and now - ws.ping_sent > PING_TIMEOUT_S:
                        ws._conn.close()
                    elif not ws.ping_sent and now - ws.last_heard > PING_INTERVAL_S:
                        ws.ping()

    async def shutdown(self, grace: float = 5.0) -> None:
        """Stop accepting; let in-flight requests finish (up to `grace` seconds); close WebSockets
        with 1001 (going away) so clients reconnect elsewhere or later."""
        self.stopping = True
        for server in self._servers:
            server.close()
        for conn in list(self._http):
            if conn._task is None and not conn._queue:
                conn.close()
        for ws in list(self._ws):
            try:
                await ws.close(1001, "GoingAway")
            except Exception:
                pass
        deadline = time.monotonic() + grace
        while any(c._task is not None for c in self._http) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        for conn in list(self._http):
            if conn._task is not None:
                conn._task.cancel()
            conn.close()
        for ws in list(self._ws):
            ws._conn.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 1.0)
            except (asyncio.TimeoutError, Exception):
                pass
        self._servers.clear()
