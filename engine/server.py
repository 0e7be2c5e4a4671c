"""The network edge: what the API port (3210) and the HTTP-actions site port (3211) serve, and `serve`.

The protocol work (HTTP/1.1, WebSocket) is engine.http_server; request handling is framework-free
(engine.http_api for the Convex API, engine.http_router for the app's HTTP actions, engine.sync for
the WebSocket protocol). This module says which path goes where:

API port: every path in `http_api.ROUTES` / `http_api.PREFIX_ROUTES`; `/http/...` -> HTTP actions
(with `/http` stripped); `GET /api/logs/stream` (admin key) -> function log lines as server-sent
events from `engine.logs.feed`; WebSocket upgrades on `/api/sync` (Python client) and
`/api/<client version>/sync` (npm). Anything else: 404 JSON. Site port: every path -> HTTP actions.

Body limits are decided per path before a body is read: 16 MiB (+ envelope) on the Convex API
(`http_api.BODY_LIMITS` for exceptions), 20 MiB on HTTP actions (Convex's limits); a body over its
limit gets a 413 with a code, from its Content-Length or as soon as a chunked body crosses it.

Invariants: the Deployment is closed exactly once, after both servers have stopped; SIGINT/SIGTERM
trigger a graceful shutdown (in-flight requests finish, WebSockets get 1001; a second SIGINT forces
it); the admin key never reaches a log line.
"""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import sys
from typing import Any, AsyncIterator, Awaitable, Callable

import msgspec

from engine import http_api, logs
from engine.errors import EngineError
from engine.http_api import HttpRequest, HttpResponse
from engine.http_router import MAX_REQUEST_BODY as HTTP_ACTION_MAX_BODY
from engine.http_server import HttpServer, StreamingResponse, WebSocket

__all__ = ["HttpActionHandler", "ApiEndpoint", "SiteEndpoint", "serve", "tune_gc_for_serving"]

HttpActionHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]

LOG_STREAM_KEEPALIVE_S = 15.0
_SYNC_PATH = re.compile(r"/api/(?:([^/]+)/)?sync")
_SLASHES = re.compile(r"/{2,}")


def _sse(entries: list[logs.LogEntry], dropped: int) -> bytes:
    parts = []
    if dropped:
        parts.append(b"event: dropped\ndata: " + msgspec.json.encode({"dropped": dropped}) + b"\n\n")
    parts.extend(b"data: " + msgspec.json.encode(e.to_json()) + b"\n\n" for e in entries)
    return b"".join(parts)


def _chunk_capable(client_header: str, path_version: str | None) -> bool:
    """Only npm clients >= 1.28.0 understand TransitionChunk (Convex: MIN_NPM_VERSION_FOR_TRANSITION_CHUNKS).
    The version comes from the `Convex-Client: npm-X.Y.Z` header if present, else from the path."""
    if client_header:
        kind, _, version = client_header.partition("-")
        if kind != "npm":
            return False
    elif path_version is None:
        return False
    else:
        version = path_version
    try:
        parts = tuple(int(p) for p in version.split("-")[0].split(".")[:3])
    except ValueError:
        return False
    return parts >= (1, 28, 0)


def _no_route(request: HttpRequest) -> HttpResponse:
    return http_api.error_response(404, "NotFound", f"No route for {request.method} {request.path}.")


class _HttpActions:
    """`/http/...` on the API port and every path on the site port: the app's HTTP actions."""

    def __init__(self, dep: Any, http_actions: HttpActionHandler | None) -> None:
        self.dep = dep
        self.http_actions = http_actions

    async def actions(self, request: HttpRequest) -> HttpResponse:
        if self.http_actions is None:
            return http_api.error_response(404, "NotFound", f"No HTTP action is defined for {request.path}.")
        return await self.http_actions(request)


class ApiEndpoint(_HttpActions):
    """The API origin (port 3210)."""

    def __init__(self, dep: Any, http_actions: HttpActionHandler | None = None) -> None:
        super().__init__(dep, http_actions)
        self.log_streams: set[logs.Subscriber] = set()

    def body_limit(self, path: str) -> int:
        if path == "/http" or path.startswith("/http/"):
            return HTTP_ACTION_MAX_BODY
        return http_api.body_limit(path)

    def too_large(self, limit: int, headers: dict[str, str]) -> HttpResponse:
        response = http_api.error_response(413, "PayloadTooLarge", f"The request body exceeds the limit of {limit} bytes.")
        response.headers.extend(http_api.cors_headers(headers))
        return response

    async def respond(self, request: HttpRequest) -> HttpResponse:
        path = request.path
        if "//" in path:  # clients join base URLs carelessly ("http://host:3210/" + "/api/...")
            path = request.path = _SLASHES.sub("/", path)
        if path == "/http" or path.startswith("/http/"):
            request.path = path[len("/http"):] or "/"
            return await self.actions(request)
        if path == "/api/logs/stream":
            return await self._log_stream(request)
        if http_api.routed(path):
            return await http_api.handle(self.dep, request)
        if _SYNC_PATH.fullmatch(path) and request.method == "GET":
            return http_api.error_response(400, "WebSocketRequired", f"{path} is the WebSocket sync endpoint; "
                                           "connect with a WebSocket client.")
        return _no_route(request)

    def websocket(self, request: HttpRequest) -> Callable[[WebSocket], Awaitable[None]] | None:
        match = _SYNC_PATH.fullmatch(_SLASHES.sub("/", request.path))
        if match is None or getattr(self.dep, "subscriptions", None) is None:
            return None
        npm = _chunk_capable(request.headers.get("convex-client", ""), match.group(1))
        dep = self.dep

        async def run(ws: WebSocket) -> None:
            from engine.sync import SyncSession

            async def close(code: int, reason: str) -> None:
                await ws.close(code, reason)

            await SyncSession(dep, dep.subscriptions, ws.send_buffered, npm=npm, flush=ws.flush).run(ws.receive, close)

        return run

    async def _log_stream(self, request: HttpRequest) -> HttpResponse:
        """GET /api/logs/stream: a long-lived text/event-stream of function log lines (admin only).

        A reader that falls behind loses its oldest lines (an `event: dropped` says how many);
        functions never wait for it. A comment line goes out every 15 s so proxies keep the
        connection open."""
        if request.method != "GET":
            return http_api.error_response(405, "MethodNotAllowed", "Use GET /api/logs/stream.")
        try:
            auth = await http_api.resolve_auth(self.dep, request.headers, request.query)
            if not auth.admin:
                raise EngineError("Unauthenticated", "/api/logs/stream requires an admin key "
                                                     "(`Authorization: Convex <key>`).", status=401)
        except EngineError as e:
            return http_api.error_response(e.status, e.code, e.message)
        sub = logs.feed.subscribe()
        self.log_streams.add(sub)

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b": connected\n\n"
                while not sub.closed:
                    entries, dropped = await sub.get(timeout=LOG_STREAM_KEEPALIVE_S)
                    chunk = _sse(entries, dropped) or (b"" if sub.closed else b": keep-alive\n\n")
                    if chunk:
                        yield chunk
            finally:
                sub.close()
                self.log_streams.discard(sub)

        headers = [("content-type", "text/event-stream; charset=utf-8"), ("cache-control", "no-cache"),
                   ("x-accel-buffering", "no"), *http_api.cors_headers(request.headers)]
        return StreamingResponse(200, events(), headers)


class SiteEndpoint(_HttpActions):
    """The HTTP-actions origin (port 3211): every path goes to the app's router."""

    def body_limit(self, path: str) -> int:
        return HTTP_ACTION_MAX_BODY

    def too_large(self, limit: int, headers: dict[str, str]) -> HttpResponse:
        return http_api.error_response(413, "PayloadTooLarge", f"The request body exceeds the limit of {limit} bytes.")

    async def respond(self, request: HttpRequest) -> HttpResponse:
        return await self.actions(request)

    def websocket(self, request: HttpRequest) -> None:
        return None


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _url(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}"


# Young-generation threshold for a serving process. CPython's default (700 allocations) runs a
# collection many times inside one subscription round (1 000 sessions each build a Transition),
# so objects that live only for that round get promoted, and every so often the promotions force
# a full collection that walks every connection's objects (~0.2 s at 1 000 connections: the p99
# of the fan-out benchmark). With 20 000, round-scoped objects are freed by reference counting
# before a collection sees them; cycles still get collected, just in larger batches.
SERVING_GC_THRESHOLDS = (20_000, 20, 10)


def tune_gc_for_serving(*, freeze: bool = True) -> None:
    """Tune the cyclic garbage collector of a long-running server process (not a library call:
    `engine serve` does it once, after the app is loaded). `freeze` moves everything alive now
    (modules, the app's code, the schema) out of the collector's sight, so full collections only
    walk what serving allocates; `engine dev` passes False since reloads retire old modules."""
    import gc

    gc.set_threshold(*SERVING_GC_THRESHOLDS)
    if freeze:
        gc.collect()
        gc.freeze()


async def serve(
    dep: Any,
    host: str = "127.0.0.1",
    port: int = 3210,
    site_port: int = 3211,
    *,
    http_actions: HttpActionHandler | None = None,
    on_ready: Callable[[int, int], None] | None = None,
    stop: asyncio.Event | None = None,
    grace: float = 5.0,
) -> None:
    """Serve the API and site ports until SIGINT/SIGTERM (or `stop` is set), then close `dep`.

    Port 0 picks a free port; `on_ready(api_port, site_port)` reports the real ones once both
    servers accept connections.
    """
    if http_actions is None:
        http_actions = getattr(dep, "handle_http_action", None)
    api = ApiEndpoint(dep, http_actions)
    site = SiteEndpoint(dep, http_actions)
    socks: list[socket.socket] = []
    try:
        for p in (port, site_port):
            socks.append(_bind(host, p))
    except OSError as e:
        for sock in socks:
            sock.close()
        await dep.close()  # its storage threads would otherwise keep the process alive
        print(f"error: cannot listen on {host}:{p}: {e.strerror or e}", file=sys.stderr)  # type: ignore
        raise SystemExit(1) from None
    servers = [HttpServer(api, too_large=api.too_large), HttpServer(site, too_large=site.too_large)]
    dep.http_servers = servers  # connection counts for introspection (metrics, tests)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    force = asyncio.Event()

    def on_signal(sig: int) -> None:
        if stop.is_set() and sig == signal.SIGINT:
            force.set()
        stop.set()

    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread / Windows
            pass
    try:
        for server, sock in zip(servers, socks):
            await server.start(sock)
        lock = getattr(getattr(dep, "persistence", None), "lock", None)
        if lock is not None:  # a second process refused this database names us by this URL
            lock.describe(url=_url(host, socks[0]))
        print(f"Convex-compatible API listening on {_url(host, socks[0])}", flush=True)
        print(f"HTTP actions on {_url(host, socks[1])}", flush=True)
        if on_ready is not None:
            on_ready(socks[0].getsockname()[1], socks[1].getsockname()[1])
        await stop.wait()
    finally:
        http_api.shutting_down(dep)  # long polls (/api/stream_function_logs) answer now
        for sub in list(api.log_streams):
            sub.close()
        shutdowns = [asyncio.create_task(s.shutdown(grace)) for s in servers]
        forced = asyncio.create_task(force.wait())
        await asyncio.wait([asyncio.gather(*shutdowns), forced], return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        for sock in socks:
            sock.close()
        await dep.close()
