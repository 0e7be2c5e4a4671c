"""HTTP actions: the app's `http_routes.py` router, its request/response types, and dispatch.

    # http_routes.py   (convex/http.ts)
    from engine import HttpRouter, Response, http_action, internal, json_response

    @http_action
    async def openclaw_hook(ctx, request):
        body = await request.body()            # the exact bytes received, for signature checks
        await ctx.run_mutation(internal.hooks.record, {"payload": body.decode()})
        return json_response({"ok": True})

    http = HttpRouter()
    http.route(path="/hooks/openclaw", method="POST", handler=openclaw_hook)
    http.route(path_prefix="/files/", method="GET", handler=serve_file)

Routing follows Convex: an exact `path` beats any `path_prefix`, and among prefixes the longest
wins; HEAD runs the GET route without the body. A route registered twice, a bad method or a
malformed path fails when `http_routes.py` is loaded, naming the route.

`dispatch(dep, request)` answers one `engine.http_api.HttpRequest` and never raises: no route -> 404
`NoMatchingRoute`, a path served only for other methods -> 405, a body over 20 MiB -> 413, a handler
that raises (or returns something other than a `Response`) -> 500 with Convex's body
(`{"code": "[Request ID: …] Server Error: Uncaught Error: …", "trace": …, "data"?: …}`), while the
traceback goes to the server log. The handler gets the runner's `ActionCtx` (`run_query`,
`run_mutation`, `run_action`, `auth`, `storage`); its print/logging lines go to the server log and
the live log feed under "POST /hooks/openclaw" (see engine.logs).
"""

from __future__ import annotations

import inspect
import json
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, cast

from . import logs
from .errors import ConvexError, EngineError
from .executions import executions
from .function_errors import error_message, error_name, error_text, format_uncaught
from .http_api import HttpRequest, HttpResponse, error_response
from .http_api import json_response as _api_json
from .runner import ActionCtx, Auth, AuthView
from .values import to_wire

if TYPE_CHECKING:
    from .deployment import Deployment

__all__ = [
    "MAX_REQUEST_BODY",
    "ROUTABLE_METHODS",
    "Headers",
    "HttpAction",
    "HttpRouter",
    "JsonTooDeep",
    "Request",
    "Response",
    "dispatch",
    "http_action",
    "json_response",
]

# Convex's limit on an HTTP action's request body.
MAX_REQUEST_BODY = 20 * 1024 * 1024
# Convex's ROUTABLE_HTTP_METHODS; HEAD is served by the GET route.
ROUTABLE_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH")


# --- request and response ------------------------------------------------------------------------


class JsonTooDeep(ValueError):
    """`request.json()` on a body nested deeper than Python's JSON parser goes (its recursion
    guard: about 1 000 levels). A ValueError, so handlers that refuse bad JSON refuse this too."""

    code = "TooNestedError"

    def __init__(self) -> None:
        super().__init__("The JSON body is nested too deeply to parse (the limit is about 1000 levels).")


class Headers(Mapping[str, str]):
    """Read-only, case-insensitive header mapping (`request.headers["Content-Type"]`)."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> None:
        pairs = cast(Iterable[tuple[str, str]], items.items() if isinstance(items, Mapping) else items)
        self._items = {k.lower(): v for k, v in pairs}

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({sorted(self._items)})"  # names only: values may be credentials


class Request:
    """The incoming request, shaped like the web `Request` a Convex httpAction receives."""

    __slots__ = ("method", "url", "path", "headers", "query_params", "_body")

    def __init__(self, method: str, url: str, path: str, headers: Headers, query_params: Mapping[str, str],
                 body: bytes) -> None:
        self.method = method
        self.url = url  # scheme://host/path?query, as the router saw it
        self.path = path  # percent-encoded, as sent
        self.headers = headers
        self.query_params = dict(query_params)
        self._body = body

    async def body(self) -> bytes:
        """The body exactly as received (hash these bytes to check a webhook signature)."""
        return self._body

    async def text(self) -> str:
        return self._body.decode("utf-8", errors="replace")

    async def json(self) -> Any:
        """The body parsed as JSON (numbers stay Python ints/floats); raises ValueError if it is not
        (`JsonTooDeep`, a ValueError, when it nests deeper than the parser goes)."""
        try:
            return json.loads(self._body)
        except RecursionError:
            raise JsonTooDeep() from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path}>"


class Response:
    """What a handler returns: `Response(body=b"" | "text" | None, status=200, headers={})`."""

    __slots__ = ("body", "status", "headers")

    def __init__(self, body: bytes | bytearray | str | None = None, status: int = 200,
                 headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
            raise ValueError(f"Response status must be an integer from 200 to 599, got {status!r}.")
        pairs = cast("list[tuple[str, str]]", list(headers.items() if isinstance(headers, Mapping) else headers or ()))
        names = {k.lower() for k, _ in pairs}
        if isinstance(body, str):
            data = body.encode("utf-8")
            if "content-type" not in names:
                pairs.append(("content-type", "text/plain;charset=UTF-8"))  # as the web Response does
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif body is None:
            data = b""
        else:
            raise TypeError(f"Response body must be bytes, str or None, got {type(body).__name__}.")
        self.body = data
        self.status = status
        self.headers = [(str(k), str(v)) for k, v in pairs]

    def __repr__(self) -> str:
        return f"<Response {self.status}, {len(self.body)} bytes>"


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON response (`application/json`); NaN and infinities are refused, as JSON has none."""
    out = dict(headers or {})
    if not any(k.lower() == "content-type" for k in out):
        out["content-type"] = "application/json"
    return Response(json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")), status, out)


# --- handlers and the router ---------------------------------------------------------------------


Handler = Callable[[ActionCtx, Request], Awaitable[Response]]


class HttpAction:
    """An `async def handler(ctx, request) -> Response` registered with `http_action`."""

    __slots__ = ("handler", "__name__")

    def __init__(self, handler: Handler) -> None:
        if not inspect.iscoroutinefunction(handler):
            raise EngineError("InvalidHttpAction",
                              f"http_action expects an `async def` handler(ctx, request), got {handler!r}.")
        self.handler = handler
        self.__name__ = getattr(handler, "__name__", "http_action")

    async def __call__(self, ctx: Any, request: Request) -> Response:
        return await self.handler(ctx, request)

    def __repr__(self) -> str:
        return f"<http_action {self.__name__}>"


def http_action(handler: Handler) -> HttpAction:
    """Decorator for HTTP action handlers (Convex's `httpAction`)."""
    return handler if isinstance(handler, HttpAction) else HttpAction(handler)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str | None
    path_prefix: str | None
    action: HttpAction

    @property
    def label(self) -> str:
        """"POST /hooks/x" or "GET /files/*": how logs name the action."""
        return f"{self.method} {self.path if self.path is not None else self.path_prefix + '*'}"  # type: ignore[operator]


class HttpRouter:
    """The app's routes (Convex's `httpRouter()`); export it from `http_routes.py` as `http`."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, Route]] = {}
        self._prefixes: dict[str, dict[str, Route]] = {}
        self._prefix_order: list[str] = []  # longest first

    def route(self, *, method: str, handler: HttpAction | Handler, path: str | None = None,
              path_prefix: str | None = None) -> None:
        if (path is None) == (path_prefix is None):
            raise EngineError("InvalidHttpRoute", "http.route() takes exactly one of `path` or `path_prefix`.")
        where = f"path {path!r}" if path is not None else f"path_prefix {path_prefix!r}"
        if not isinstance(method, str) or method.upper() not in ROUTABLE_METHODS:
            extra = " (HEAD is served by the GET route)" if str(method).upper() == "HEAD" else ""
            raise EngineError("InvalidHttpRoute", f"HTTP route {where} has method {method!r}; expected one of "
                                                  f"{', '.join(ROUTABLE_METHODS)}{extra}.")
        method = method.upper()
        action = handler if isinstance(handler, HttpAction) else _as_action(handler, method, where)
        if path is not None:
            if not isinstance(path, str) or not path.startswith("/"):
                raise EngineError("InvalidHttpRoute", f"HTTP route path {path!r} must start with '/'.")
            table, key = self._exact, path
        else:
            if not isinstance(path_prefix, str) or not path_prefix.startswith("/") or not path_prefix.endswith("/"):
                raise EngineError("InvalidHttpRoute",
                                  f"HTTP route path_prefix {path_prefix!r} must start and end with '/'.")
            table, key = self._prefixes, path_prefix
        routes = table.setdefault(key, {})
        if method in routes:
            raise EngineError("DuplicateHttpRoute", f"HTTP route {method} {where} is defined twice.")
        routes[method] = Route(method, path, path_prefix, action)
        if path_prefix is not None and path_prefix not in self._prefix_order:
            self._prefix_order.append(path_prefix)
            self._prefix_order.sort(key=len, reverse=True)

    def get_routes(self) -> list[Route]:
        """Every route, exact paths first (Convex's `getRoutes`)."""
        exact = [r for _, methods in sorted(self._exact.items()) for r in methods.values()]
        return exact + [r for p in self._prefix_order for r in self._prefixes[p].values()]

    def lookup(self, path: str, method: str) -> Route | list[str] | None:
        """The route serving `method` on `path`; else the methods the path is served for (-> 405);
        else None (-> 404). Only the most specific matching path counts, as in Convex."""
        method = "GET" if method.upper() == "HEAD" else method.upper()
        methods = self._exact.get(path)
        if methods is None:
            prefix = next((p for p in self._prefix_order if path.startswith(p)), None)
            methods = self._prefixes[prefix] if prefix is not None else None
        if methods is None:
            return None
        return methods.get(method) or sorted(methods)


def _as_action(handler: Any, method: str, where: str) -> HttpAction:
    if inspect.iscoroutinefunction(handler):
        return HttpAction(handler)
    raise EngineError("InvalidHttpRoute", f"HTTP route {method} {where} needs an http_action handler, got {handler!r}.")


# --- dispatch ------------------------------------------------------------------------------------


def _no_route(method: str, path: str) -> HttpResponse:
    return error_response(404, "NoMatchingRoute", f"No HTTP route matches {method} {path}.")


def _url(req: HttpRequest) -> str:
    scheme = req.headers.get("x-forwarded-proto", "http").split(",")[0].strip() or "http"
    host = req.headers.get("host", "localhost")
    query = req.query_string or (urllib.parse.urlencode(req.query) if req.query else "")
    return f"{scheme}://{host}{req.path}" + (f"?{query}" if query else "")


async def _auth(dep: Any, headers: Mapping[str, str], label: str) -> tuple[Auth, EngineError | None]:
    """`Authorization: Bearer <jwt>` -> ctx.auth identity, when the deployment verifies tokens.

    As in Convex, a bearer token that does not verify does not fail the request (webhooks commonly
    send a shared secret as a bearer token, which their handler checks itself): the handler runs,
    and `ctx.auth.get_user_identity()` raises the verification error if it is called."""
    scheme, _, token = headers.get("authorization", "").strip().partition(" ")
    token = token.strip()
    verify = getattr(dep, "verify_token", None)
    if scheme.lower() != "bearer" or not token or verify is None:
        return Auth(), None
    try:
        identity = verify(token)
        if inspect.isawaitable(identity):
            identity = await identity
    except EngineError as e:  # never log the token itself
        logs.server_log.info("%s: the bearer token did not verify (%s)", label, e.code)
        return Auth(), e
    return Auth(identity=identity if isinstance(identity, dict) else None), None


class _UnverifiedAuth(AuthView):
    """`ctx.auth` of an HTTP action whose bearer token did not verify: asking who the caller is
    raises the verification error (Convex's `Identity::Unknown` in an action)."""

    __slots__ = ("_error",)

    def __init__(self, error: EngineError) -> None:
        super().__init__(Auth())
        self._error = error

    async def get_user_identity(self) -> dict[str, Any] | None:
        self.used = True
        raise EngineError(self._error.code, self._error.message, status=self._error.status)


def _to_http_response(result: Any, label: str, head: bool) -> HttpResponse:
    if not isinstance(result, Response):
        raise TypeError(f"HTTP action {label} returned {type(result).__name__}; it must return engine.Response.")
    headers = [(k.lower(), v) for k, v in result.headers if k.lower() != "content-length"]
    for k, v in headers:  # the server writes headers as latin-1; fail here, inside the 500 handling
        k.encode("latin-1")
        v.encode("latin-1")
    return HttpResponse(result.status, b"" if head else result.body, headers)


async def dispatch(dep: Deployment, req: HttpRequest) -> HttpResponse:
    """Answer one request with the app's router. Never raises."""
    method = req.method.upper()
    if len(req.body) > MAX_REQUEST_BODY:
        return error_response(413, "PayloadTooLarge",
                              f"The request body exceeds the HTTP action limit of {MAX_REQUEST_BODY} bytes.")
    router = dep.app.http
    if router is None:
        return _no_route(method, req.path)
    if not isinstance(router, HttpRouter):
        return error_response(500, "InvalidHttpRouter",
                              "http_routes.py must export `http = HttpRouter()`; its `http` is a "
                              f"{type(router).__name__}.")
    found = router.lookup(req.path, method)
    if found is None:
        return _no_route(method, req.path)
    if isinstance(found, list):
        allowed = ", ".join(found + (["HEAD"] if "GET" in found else []))
        response = error_response(405, "MethodNotAllowed",
                                  f"{method} is not allowed on {req.path}; it accepts {allowed}.")
        response.headers.append(("allow", allowed))
        return response
    route = found
    rid = logs.new_request_id()
    started = time.perf_counter()
    with logs.capture(route.label, kind="http", request_id=rid) as lines:
        try:
            auth, auth_error = await _auth(dep, req.headers, route.label)
            request = Request(method, _url(req), req.path, Headers(req.headers), req.query, req.body)
            ctx = ActionCtx(dep.runner, auth)
            if auth_error is not None:
                ctx.auth = _UnverifiedAuth(auth_error)
            result = await route.action.handler(ctx, request)
            response = _to_http_response(result, route.label, method == "HEAD")
            executions.record("http", route.label, success=True, duration=time.perf_counter() - started,
                              request_id=rid, log_lines=lines)
            return response
        except Exception as e:
            executions.record("http", route.label, success=False, duration=time.perf_counter() - started,
                              error=error_text(e, dep.app.root).rstrip("\n"), request_id=rid, log_lines=lines)
            return _uncaught(e, rid, dep.app.root)


def _uncaught(error: BaseException, rid: str, app_root: Any) -> HttpResponse:
    """Convex's answer to an HTTP action that threw (redaction.rs `to_http_response_parts`): 500,
    `{"code": "[Request ID: …] Server Error: Uncaught …", "trace": <the error with its frames>}`,
    plus `"data"` (encoded) for a ConvexError."""
    first = format_uncaught(error_name(error), error_message(error))
    logs.publish("ERROR", f"[ERROR] {first}", exc_info=error)
    body: dict[str, Any] = {"code": f"[Request ID: {rid}] Server Error: {first}",
                            "trace": error_text(error, app_root)}
    if isinstance(error, ConvexError):
        try:
            body["data"] = to_wire(error.data)
        except ValueError:
            body["data"] = str(error.data)
    return _api_json(500, body)
