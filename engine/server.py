"""The network edge: Litestar apps for the API port (3210) and the HTTP-actions site port (3211), and `serve`.

This is the only module that imports Litestar or uvicorn. Request handling lives in `engine.http_api`
(framework-free); here each API path is a raw ASGI route that reads the body (enforcing the size limit
while streaming), builds an `HttpRequest`, and writes the `HttpResponse` back. Raw ASGI routes keep the
per-request overhead at a dictionary lookup and let the handler own CORS and error shapes exactly.

Seams for the rest of the engine:
- `extra_routes`: Litestar route handlers added to the API app, e.g. the WebSocket sync endpoint at
  `/api/sync` and `/api/{version:str}/sync` (static API paths still win over the `{version}` segment).
- `http_actions`: an `HttpActionHandler` (`async (HttpRequest) -> HttpResponse`) serving HTTP actions:
  every path on the site port, and `/http/...` on the API port (with `/http` stripped). `serve` takes
  it from `dep.handle_http_action` when the Deployment has one. Without it those paths answer 404 JSON.
  HTTP-action bodies may be up to `engine.http_router.MAX_REQUEST_BODY` (20 MiB, Convex's limit).
- `GET /api/logs/stream` (admin key): function log lines as server-sent events, one JSON object per
  `data:` line, from `engine.logs.feed`; open streams end when the server shuts down.

Invariants: the Deployment is closed exactly once, after both servers have stopped; SIGINT/SIGTERM
trigger a graceful shutdown (a second SIGINT forces it); the admin key never reaches a log line.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import urllib.parse
from contextlib import contextmanager
from typing import Any, Awaitable, Callable, Iterator, Sequence

import msgspec
import uvicorn
from litestar import Litestar, Request, Response
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.handlers import asgi
from litestar.types import ControllerRouterHandler, Receive, Scope, Send

from engine import http_api, logs
from engine.errors import EngineError
from engine.http_api import HttpRequest, HttpResponse
from engine.http_router import MAX_REQUEST_BODY as HTTP_ACTION_MAX_BODY

__all__ = ["HttpActionHandler", "build_app", "build_site_app", "serve"]

HttpActionHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class _BodyTooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                if int(value) > limit:
                    raise _BodyTooLarge
            except ValueError:
                pass
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _request_parts(scope: Scope, prefix: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """(percent-encoded path, lower-case headers, query params). Mounts strip `prefix` from scope["path"]."""
    raw_path = scope.get("raw_path")
    if raw_path:
        path = raw_path.decode("latin-1")
    else:
        path = urllib.parse.quote(prefix + scope["path"] if prefix else scope["path"])
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    query = dict(urllib.parse.parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
    return path, headers, query


async def _send(send: Send, response: HttpResponse) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
    if not any(k == b"content-length" for k, _ in headers):
        headers.append((b"content-length", str(len(response.body)).encode()))
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": response.body})


def _not_found(path: str, what: str) -> HttpResponse:
    return http_api.error_response(404, "NotFound", f"No {what} is defined for {path}.")


def _asgi_endpoint(
    respond: Callable[[HttpRequest], Awaitable[HttpResponse]], *, prefix: str = "",
    limit: int = http_api.MAX_BODY_SIZE,
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        path, headers, query = _request_parts(scope, prefix)
        try:
            body = await _read_body(scope, receive, limit)
        except _Disconnected:
            return
        except _BodyTooLarge:
            response = http_api.payload_too_large() if limit == http_api.MAX_BODY_SIZE else \
                http_api.error_response(413, "PayloadTooLarge", f"The request body exceeds the limit of {limit} bytes.")
            response.headers.extend(http_api.cors_headers(headers))
            await _send(send, response)
            return
        request = HttpRequest(scope["method"], path, headers, query, body,
                              scope.get("query_string", b"").decode("latin-1"))
        await _send(send, await respond(request))

    return endpoint


def _http_action_responder(http_actions: HttpActionHandler | None, strip: str) -> Callable[[HttpRequest], Awaitable[HttpResponse]]:
    async def respond(request: HttpRequest) -> HttpResponse:
        if strip:
            if request.path != strip and not request.path.startswith(strip + "/"):
                # The mount also catches "/httpfoo": that is not under the prefix.
                return http_api.error_response(404, "NotFound", f"No route for {request.method} {request.path}.")
            request.path = request.path[len(strip):] or "/"
        if http_actions is None:
            return _not_found(request.path, "HTTP action")
        return await http_actions(request)

    return respond


LOG_STREAM_KEEPALIVE_S = 15.0


def _sse(entries: list[logs.LogEntry], dropped: int) -> bytes:
    parts = []
    if dropped:
        parts.append(b"event: dropped\ndata: " + msgspec.json.encode({"dropped": dropped}) + b"\n\n")
    parts.extend(b"data: " + msgspec.json.encode(e.to_json()) + b"\n\n" for e in entries)
    return b"".join(parts)


def _log_stream_endpoint(dep: Any, streams: set[logs.Subscriber]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """GET /api/logs/stream: a long-lived text/event-stream of function log lines (admin only).

    A reader that falls behind loses its oldest lines (an `event: dropped` says how many); functions
    never wait for it. A comment line goes out every 15 s so proxies keep the connection open."""

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        _, headers, query = _request_parts(scope, "")
        if scope["method"] != "GET":
            response = http_api.error_response(405, "MethodNotAllowed", "Use GET /api/logs/stream.")
            await _send(send, response)
            return
        try:
            auth = await http_api.resolve_auth(dep, headers, query)
            if not auth.admin:
                raise EngineError("Unauthenticated", "/api/logs/stream requires an admin key "
                                                     "(`Authorization: Convex <key>`).", status=401)
        except EngineError as e:
            await _send(send, http_api.error_response(e.status, e.code, e.message))
            return
        sub = logs.feed.subscribe()
        streams.add(sub)

        async def watch_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            sub.close()

        watcher = asyncio.create_task(watch_disconnect())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"), *[(k.encode(), v.encode()) for k, v in http_api.cors_headers(headers)],
            ]})
            await send({"type": "http.response.body", "body": b": connected\n\n", "more_body": True})
            while not sub.closed:
                entries, dropped = await sub.get(timeout=LOG_STREAM_KEEPALIVE_S)
                chunk = _sse(entries, dropped) or (b"" if sub.closed else b": keep-alive\n\n")
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the client went away mid-write
            pass
        finally:
            watcher.cancel()
            sub.close()
            streams.discard(sub)

    return endpoint


def _json_exception_handler(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 500)
    code = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, "InternalServerError")
    return Response(
        {"code": code, "message": f"No route for {request.method} {request.url.path}."},
        status_code=status,
    )


_EXCEPTION_HANDLERS = {NotFoundException: _json_exception_handler, MethodNotAllowedException: _json_exception_handler}


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


def sync_route(dep: Any) -> ControllerRouterHandler:
    """The WebSocket sync endpoint: `/api/<client version>/sync` (npm) and `/api/sync` (Python)."""
    from litestar import WebSocket, websocket
    from litestar.exceptions import WebSocketDisconnect

    from engine.sync import SyncSession

    @websocket(path=["/api/sync", "/api/{client_version:str}/sync"], name="convex-sync")
    async def sync(socket: WebSocket) -> None:
        await socket.accept()
        npm = _chunk_capable(socket.headers.get("convex-client", ""), socket.path_params.get("client_version"))
        raw_send = socket.send

        async def send(text: str) -> None:
            await raw_send({"type": "websocket.send", "text": text})

        async def receive() -> str | bytes | None:
            try:
                message = await socket.receive()
            except WebSocketDisconnect:
                return None
            if message["type"] == "websocket.disconnect":
                return None
            return message.get("text") or message.get("bytes") or ""

        async def close(code: int, reason: str) -> None:
            await socket.close(code, reason)

        await SyncSession(dep, dep.subscriptions, send, npm=npm).run(receive, close)

    return sync


def build_app(
    dep: Any,
    *,
    extra_routes: Sequence[ControllerRouterHandler] = (),
    http_actions: HttpActionHandler | None = None,
) -> Litestar:
    """The API-origin ASGI app (port 3210): /api/*, /version, /http/* and whatever `extra_routes` add."""

    async def respond(request: HttpRequest) -> HttpResponse:
        return await http_api.handle(dep, request)

    api = [asgi(path, copy_scope=False, name=f"convex-api{path}")(_asgi_endpoint(respond, limit=http_api.body_limit(path)))
           for path in sorted(http_api.ROUTES)]
    mounts = [asgi(prefix.rstrip("/"), is_mount=True, copy_scope=False, name=f"convex-api-mount{prefix}")(
        _asgi_endpoint(respond, prefix=prefix.rstrip("/"), limit=http_api.body_limit(prefix)))
        for prefix in sorted(http_api.PREFIX_ROUTES)]
    http = asgi("/http", is_mount=True, copy_scope=False, name="convex-http-actions")(
        _asgi_endpoint(_http_action_responder(http_actions, "/http"), prefix="/http", limit=HTTP_ACTION_MAX_BODY)
    )
    log_streams: set[logs.Subscriber] = set()
    log_stream = asgi("/api/logs/stream", copy_scope=False, name="convex-logs-stream")(
        _log_stream_endpoint(dep, log_streams)
    )
    sync = [sync_route(dep)] if getattr(dep, "subscriptions", None) is not None else []
    app = Litestar(
        [*extra_routes, *sync, *api, *mounts, http, log_stream],
        openapi_config=None,
        request_max_body_size=None,  # enforced while streaming, with Convex's limit and error shape
        logging_config=None,
        exception_handlers=_EXCEPTION_HANDLERS,  # type: ignore[arg-type]
    )
    app.state.deployment = dep
    app.state.log_streams = log_streams  # `serve` ends them at shutdown (uvicorn waits for open responses)
    return app


def build_site_app(dep: Any, *, http_actions: HttpActionHandler | None = None) -> Litestar:
    """The HTTP-actions origin (port 3211): every path goes to `http_actions` (404 JSON without one)."""
    site = asgi("/", is_mount=True, copy_scope=False, name="convex-site")(
        _asgi_endpoint(_http_action_responder(http_actions, ""), limit=HTTP_ACTION_MAX_BODY)
    )
    app = Litestar([site], openapi_config=None, request_max_body_size=None, logging_config=None)
    app.state.deployment = dep
    return app


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to `serve` (which runs two of them)."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


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
    extra_routes: Sequence[ControllerRouterHandler] = (),
    http_actions: HttpActionHandler | None = None,
    on_ready: Callable[[int, int], None] | None = None,
    stop: asyncio.Event | None = None,
    log_level: str = "warning",
) -> None:
    """Serve the API and site ports until SIGINT/SIGTERM (or `stop` is set), then close `dep`.

    Port 0 picks a free port; `on_ready(api_port, site_port)` reports the real ones once both
    servers accept connections.
    """
    if http_actions is None:
        http_actions = getattr(dep, "handle_http_action", None)
    apps = [
        build_app(dep, extra_routes=extra_routes, http_actions=http_actions),
        build_site_app(dep, http_actions=http_actions),
    ]
    socks: list[socket.socket] = []
    try:
        for p in (port, site_port):
            socks.append(_bind(host, p))
    except OSError as e:
        for sock in socks:
            sock.close()
        await dep.close()  # its storage threads would otherwise keep the process alive
        print(f"error: cannot listen on {host}:{p}: {e.strerror or e}", file=sys.stderr)
        raise SystemExit(1) from None
    servers = [
        _Server(uvicorn.Config(app, log_level=log_level, access_log=False, lifespan="on", ws_max_size=64 * 1024 * 1024,
                                     # WebSocket-level pings every 5 s; a peer silent for 20 s more is dropped
                                     ws_ping_interval=5.0, ws_ping_timeout=20.0))
        for app in apps
    ]
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal(sig: int) -> None:
        if stop.is_set() and sig == signal.SIGINT:
            for s in servers:
                s.force_exit = True
        stop.set()

    installed: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
        except (NotImplementedError, RuntimeError):  # not the main thread / Windows
            pass

    tasks = [asyncio.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, socks)]
    stopper = asyncio.create_task(stop.wait())
    try:
        # uvicorn exposes readiness only as a flag; poll it briefly (startup is milliseconds).
        while not all(s.started for s in servers):
            if any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.005)
        if all(s.started for s in servers):
            print(f"Convex-compatible API listening on {_url(host, socks[0])}", flush=True)
            print(f"HTTP actions on {_url(host, socks[1])}", flush=True)
            if on_ready is not None:
                on_ready(socks[0].getsockname()[1], socks[1].getsockname()[1])
        await asyncio.wait([*tasks, stopper], return_when=asyncio.FIRST_COMPLETED)
    finally:
        for s in servers:
            s.should_exit = True
        for app in apps:
            for sub in list(getattr(app.state, "log_streams", ())):
                sub.close()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        stopper.cancel()
        for sig in installed:
            loop.remove_signal_handler(sig)
        for sock in socks:
            sock.close()
        await dep.close()
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
            raise result
    if not all(s.started for s in servers):
        print("error: the server failed to start", file=sys.stderr)
        raise SystemExit(1)
