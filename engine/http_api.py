"""The Convex HTTP API (`/api/query`, `/api/mutation`, ...) as plain functions, free of any web framework.

`handle(dep, request)` turns an `HttpRequest` (method, path, headers, query params, raw body) into an
`HttpResponse` (status, headers, body bytes) by calling the Deployment. `engine.server` adapts Litestar
to these two dataclasses; tests drive `handle` directly.

Invariants (convex-protocol.md §6):
- A function's own failure (user error, ConvexError, bad arguments, unknown function) is HTTP 200 with
  `{"status":"error","errorMessage":...}`; the legacy Python client calls `raise_for_status`, so only
  infrastructure problems (bad JSON, bad path, bad admin key, body too large) use 4xx/5xx, always with a
  `{"code","message"}` body.
- Arguments always arrive in convex_encoded_json; `format` only chooses how the *result* is encoded.
- The admin key is compared in constant time and never echoed back.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import importlib.util
import inspect
import logging
import re
import struct
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

import msgspec

from engine.errors import EngineError
from engine.logs import new_request_id
from engine.values import TooNested, from_wire, to_clean_json, to_wire, too_nested

__all__ = [
    "MAX_BODY_SIZE",
    "VERSION",
    "HttpRequest",
    "HttpResponse",
    "handle",
    "cors_headers",
    "preflight_response",
    "error_response",
    "payload_too_large",
    "json_response",
    "resolve_auth",
    "encode_ts",
    "decode_ts",
    "request_id",
    "routed",
    "Auth",
    "MISSING",
]

logger = logging.getLogger("engine.http_api")

# MAX_BACKEND_PUBLIC_API_REQUEST_SIZE in the real backend: 16 MiB of arguments plus envelope slack.
MAX_BODY_SIZE = 16 * 1024 * 1024 + 2000

VERSION = "engine-0.1.0"

# deployment.py is the lead's module and may not exist yet while the edge is being built; once the
# file exists it is imported normally so a genuine import error inside it is not masked.
if importlib.util.find_spec("engine.deployment") is not None:
    from engine.deployment import MISSING, Auth  # type: ignore[assignment]  # one of two definitions
else:  # pragma: no cover - only before engine/deployment.py lands

    @dataclass(frozen=True)
    class Auth:  # type: ignore[no-redef]
        identity: dict | None = None
        admin: bool = False

    MISSING = object()  # type: ignore[assignment]


@dataclass
class HttpRequest:
    """One request as the framework saw it. `path` is percent-encoded, as sent (no query string)."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)  # keys lower-case
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    query_string: str = ""  # raw, as sent (HTTP actions rebuild request.url from it)


@dataclass
class HttpResponse:
    """Status, body bytes and headers (lower-case names; `content-length` is added by the server)."""

    status: int
    body: bytes
    headers: list[tuple[str, str]] = field(default_factory=lambda: [("content-type", "application/json")])


_FORMATS = {
    "convex_encoded_json": "encoded",
    "convex_json": "encoded",
    "json": "clean",
    "convex_clean_json": "clean",
}
_JSON = msgspec.json.Encoder(order="sorted")
_decode_body = msgspec.json.Decoder()
_MODULE_PART = re.compile(r"[A-Za-z0-9_.]*[A-Za-z0-9][A-Za-z0-9_.]*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def request_id() -> str:
    """A Convex-like request id: 16 random hex characters."""
    return new_request_id()


# --- responses -----------------------------------------------------------------------------------


def json_response(status: int, obj: Any) -> HttpResponse:
    return HttpResponse(status, _JSON.encode(obj))


def error_response(status: int, code: str, message: str) -> HttpResponse:
    return json_response(status, {"code": code, "message": message})


def payload_too_large(limit: int = MAX_BODY_SIZE) -> HttpResponse:
    return error_response(413, "PayloadTooLarge", f"The request body exceeds the limit of {limit} bytes.")


def _engine_error_response(e: EngineError) -> HttpResponse:
    return error_response(e.status, e.code, e.message)


def _encode_value(value: Any, fmt: str) -> Any:
    return to_wire(value) if fmt == "encoded" else to_clean_json(value)


def _udf_response(outcome: Any, fmt: str) -> dict:
    """The UdfResponse JSON object for one Outcome."""
    if outcome.success:
        body: dict[str, Any] = {"status": "success", "value": _encode_value(outcome.value, fmt)}
    else:
        body = {"status": "error", "errorMessage": outcome.error_message or ""}
        if outcome.error_data is not MISSING:
            body["errorData"] = _encode_value(outcome.error_data, fmt)
    if outcome.log_lines:
        body["logLines"] = list(outcome.log_lines)
    return body


# --- CORS ----------------------------------------------------------------------------------------


def cors_headers(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    """Convex's permissive CORS: mirror the Origin, allow credentials (router.rs `cors()`)."""
    origin = headers.get("origin")
    if not origin:
        return []
    return [
        ("access-control-allow-origin", origin),
        ("access-control-allow-credentials", "true"),
        ("vary", "origin, access-control-request-method, access-control-request-headers"),
    ]


def preflight_response(headers: Mapping[str, str]) -> HttpResponse:
    out = cors_headers(headers)
    out.append(("access-control-allow-methods", "GET, POST, OPTIONS, PATCH, DELETE, PUT"))
    requested = headers.get("access-control-request-headers")
    if requested:
        out.append(("access-control-allow-headers", requested))
    out.append(("access-control-max-age", "86400"))
    out.append(("content-length", "0"))
    return HttpResponse(200, b"", out)


# --- timestamps ----------------------------------------------------------------------------------


def encode_ts(ts: int) -> str:
    """EncodedTs: standard base64 (padded) of the u64 little-endian bytes."""
    return base64.b64encode(struct.pack("<Q", ts)).decode("ascii")


def decode_ts(encoded: Any) -> int:
    if not isinstance(encoded, str):
        raise EngineError("InvalidTimestamp", "`ts` must be a base64-encoded 8-byte timestamp string.")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 8:
        raise EngineError("InvalidTimestamp", "`ts` must be a base64-encoded 8-byte timestamp string.")
    return struct.unpack("<Q", raw)[0]


# --- auth ----------------------------------------------------------------------------------------


def _bad_admin_key() -> EngineError:
    return EngineError(
        "BadAdminKey", "The provided admin key was invalid for this instance.", status=401
    )


def _key_matches(dep: Any, candidate: str) -> bool:
    expected = getattr(dep, "admin_key", None)
    if not expected:
        return False
    return hmac.compare_digest(candidate.encode("utf-8"), expected.encode("utf-8"))


def _check_admin(dep: Any, credential: str) -> Auth:
    """`<key>` or `<key>:<base64 JSON identity>` (impersonation)."""
    if _key_matches(dep, credential):
        return Auth(identity=None, admin=True)
    # base64 never contains ':', so the identity (if any) is after the last one.
    key, sep, encoded_identity = credential.rpartition(":")
    if not sep or not _key_matches(dep, key):
        raise _bad_admin_key()
    try:
        identity = msgspec.json.decode(base64.b64decode(encoded_identity + "=" * (-len(encoded_identity) % 4)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        identity = None
    if not isinstance(identity, dict):
        raise EngineError(
            "InvalidImpersonation",
            "The identity after the admin key must be base64-encoded JSON of an object.",
        )
    return Auth(identity=identity, admin=True)


async def resolve_auth(dep: Any, headers: Mapping[str, str], query: Mapping[str, str]) -> Auth:
    """Authorization header (`Convex <key>[:<identity>]` or `Bearer <jwt>`), else `?adminKey=`."""
    header = headers.get("authorization")
    if header:
        scheme, _, credential = header.strip().partition(" ")
        credential = credential.strip()
        scheme = scheme.lower()
        if scheme == "convex":
            return _check_admin(dep, credential)
        if scheme == "bearer":
            verify = getattr(dep, "verify_token", None)
            if verify is None:
                raise EngineError(
                    "NoAuthProvider",
                    "No auth provider found matching the given token. "
                    "This deployment has no auth providers configured.",
                    status=401,
                )
            identity = verify(credential)
            if inspect.isawaitable(identity):
                identity = await identity
            return Auth(identity=identity, admin=False)
        raise EngineError(
            "Unauthenticated",
            "The Authorization header must be `Bearer <token>` or `Convex <admin key>`.",
            status=401,
        )
    admin_key = query.get("adminKey")
    if admin_key is not None:
        return _check_admin(dep, admin_key)
    return Auth()


# --- request parsing -----------------------------------------------------------------------------


def _decode_json(text: bytes | str, what: str) -> Any:
    try:
        return _decode_body.decode(text)
    except msgspec.DecodeError as e:
        raise EngineError("BadJsonBody", f"Failed to parse {what} as JSON: {e}") from None
    except RecursionError:  # msgspec gives up around a thousand levels; the limit is far below
        raise EngineError(TooNested.code, str(too_nested())) from None


def _parse_body(body: bytes) -> dict:
    obj = _decode_json(body, "the request body")
    if not isinstance(obj, dict):
        raise EngineError("BadJsonBody", "The request body must be a JSON object.")
    return obj


def _parse_format(raw: Any) -> str:
    if raw is None:
        # npm >= 1.4.1 / python >= 0.5.0 without a format get clean JSON (version.rs default_format).
        return "clean"
    fmt = _FORMATS.get(raw) if isinstance(raw, str) else None
    if fmt is None:
        raise EngineError(
            "InvalidFormat",
            f"Unsupported value format {raw!r}; expected one of "
            "convex_encoded_json, convex_json, json, convex_clean_json.",
        )
    return fmt


_VALID_PATHS: set[str] = set()  # function paths that passed _parse_path (bounded)


def _parse_path(raw: Any) -> str:
    if type(raw) is str and raw in _VALID_PATHS:
        return raw
    checked = _check_path(raw)
    if len(_VALID_PATHS) >= 10_000:
        _VALID_PATHS.clear()
    _VALID_PATHS.add(checked)
    return checked


def _check_path(raw: Any) -> str:
    if not isinstance(raw, str) or not raw:
        raise EngineError("InvalidFunctionPath", "The request must name a function in `path`.")
    module, sep, name = raw.rpartition(":")
    if not sep:
        module, name = raw, "default"
    parts = module.split("/")
    if module.endswith(".js"):
        parts[-1] = parts[-1][:-3]
    ok = (
        all(_MODULE_PART.fullmatch(p) for p in parts)
        and _IDENTIFIER.fullmatch(name) is not None
        and name.strip("_") != ""
    )
    if not ok:
        raise EngineError(
            "InvalidFunctionPath",
            f"Invalid function path {raw!r}; expected \"module:export\" such as \"tasks:list\" or \"dir/file:fn\".",
        )
    return raw


def _parse_args(raw: Any, *, present: bool = True) -> dict:
    """`[obj]` (JS) or `obj` (legacy Python); absent -> {}. Arguments are always convex_encoded_json."""
    if not present or raw is None:
        return {}
    if isinstance(raw, list):
        if len(raw) != 1:
            raise EngineError(
                "InvalidArgs", f"Function arguments must be a single object, got an array of {len(raw)}."
            )
        raw = raw[0]
    try:
        args = from_wire(raw)
    except TooNested as e:
        raise EngineError(TooNested.code, str(e)) from None
    except ValueError as e:
        raise EngineError("InvalidArgs", f"Invalid function arguments: {e}") from None
    if not isinstance(args, dict):
        raise EngineError("InvalidArgs", "Function arguments must be an object.")
    return args


def _call_spec(obj: Mapping[str, Any]) -> tuple[str, dict, str]:
    return _parse_path(obj.get("path")), _parse_args(obj.get("args"), present="args" in obj), _parse_format(obj.get("format"))


# --- endpoints -----------------------------------------------------------------------------------


async def _call(dep: Any, req: HttpRequest, kind: str | None, *, admin_only: bool = False) -> HttpResponse:
    auth = await resolve_auth(dep, req.headers, req.query)
    if admin_only and not auth.admin:
        if auth.identity is not None:
            raise EngineError("Forbidden", "Only admins may call /api/function.", status=403)
        raise EngineError(
            "Unauthenticated", "/api/function requires an admin key (`Authorization: Convex <key>`).", status=401
        )
    path, args, fmt = _call_spec(_parse_body(req.body))
    outcome = await dep.call(path, args, kind=kind, auth=auth)
    return json_response(200, _udf_response(outcome, fmt))


async def _query_get(dep: Any, req: HttpRequest) -> HttpResponse:
    auth = await resolve_auth(dep, req.headers, req.query)
    raw_args = req.query.get("args")
    if raw_args is None:
        args_obj: Any = None
    else:
        args_obj = _decode_json(raw_args, "`args`")
    path = _parse_path(req.query.get("path"))
    args = _parse_args(args_obj)
    fmt = _parse_format(req.query.get("format"))
    outcome = await dep.call(path, args, kind="query", auth=auth)
    return json_response(200, _udf_response(outcome, fmt))


async def _query_ts(dep: Any, req: HttpRequest) -> HttpResponse:
    await resolve_auth(dep, req.headers, req.query)
    return json_response(200, {"ts": encode_ts(dep.latest_ts())})


async def _query_at_ts(dep: Any, req: HttpRequest) -> HttpResponse:
    auth = await resolve_auth(dep, req.headers, req.query)
    body = _parse_body(req.body)
    path, args, fmt = _call_spec(body)
    ts = decode_ts(body.get("ts"))
    outcome = await dep.call(path, args, kind="query", auth=auth, ts=ts)
    return json_response(200, _udf_response(outcome, fmt))


async def _query_batch(dep: Any, req: HttpRequest) -> HttpResponse:
    auth = await resolve_auth(dep, req.headers, req.query)
    queries = _parse_body(req.body).get("queries")
    if not isinstance(queries, list) or not all(isinstance(q, dict) for q in queries):
        raise EngineError("BadJsonBody", "`queries` must be an array of {path, args, format} objects.")
    specs = [_call_spec(q) for q in queries]
    outcomes = await dep.query_batch([(path, args) for path, args, _ in specs], auth)
    results = [_udf_response(o, fmt) for o, (_, _, fmt) in zip(outcomes, specs)]
    return json_response(200, {"results": results})


async def _run(dep: Any, req: HttpRequest) -> HttpResponse:
    """POST /api/run/a/b/fn -> "a/b:fn"; default format is clean JSON."""
    segments = [urllib.parse.unquote(s) for s in req.path[len("/api/run/"):].split("/")]
    if len(segments) < 2 or any(not s for s in segments):
        raise EngineError(
            "InvalidFunctionPath", "/api/run/ needs at least a module and a function: /api/run/<module>/<fn>."
        )
    path = _parse_path("/".join(segments[:-1]) + ":" + segments[-1])
    auth = await resolve_auth(dep, req.headers, req.query)
    body = _parse_body(req.body) if req.body.strip() else {}
    args = _parse_args(body.get("args"), present="args" in body)
    fmt = _parse_format(body.get("format"))
    outcome = await dep.call(path, args, kind=None, auth=auth)
    return json_response(200, _udf_response(outcome, fmt))


async def _debug_event(dep: Any, req: HttpRequest) -> HttpResponse:
    return json_response(200, None)


async def _version(dep: Any, req: HttpRequest) -> HttpResponse:
    return HttpResponse(200, VERSION.encode(), [("content-type", "text/plain; charset=utf-8")])


def _mutation(dep: Any, req: HttpRequest) -> Awaitable[HttpResponse]:
    return _call(dep, req, "mutation")


def _query_post(dep: Any, req: HttpRequest) -> Awaitable[HttpResponse]:
    return _call(dep, req, "query")


def _action(dep: Any, req: HttpRequest) -> Awaitable[HttpResponse]:
    return _call(dep, req, "action")


def _function(dep: Any, req: HttpRequest) -> Awaitable[HttpResponse]:
    return _call(dep, req, None, admin_only=True)


Handler = Callable[[Any, HttpRequest], Awaitable[HttpResponse]]

# Exact paths. Other modules add their endpoints here (framework-free handlers); engine.server wires
# every entry of ROUTES and PREFIX_ROUTES on the API port.
ROUTES: dict[str, dict[str, Handler]] = {
    "/api/query": {"GET": _query_get, "POST": _query_post},
    "/api/mutation": {"POST": _mutation},
    "/api/action": {"POST": _action},
    "/api/function": {"POST": _function},
    "/api/query_ts": {"POST": _query_ts},
    "/api/query_at_ts": {"POST": _query_at_ts},
    "/api/query_batch": {"POST": _query_batch},
    "/api/debug_event": {"POST": _debug_event},
    "/version": {"GET": _version},
}


# Path prefixes (each ends with "/"): a request whose path starts with one goes to its handlers,
# which read the rest of `request.path` themselves. The longest matching prefix wins.
PREFIX_ROUTES: dict[str, dict[str, Handler]] = {
    "/api/run/": {"POST": _run},
}

# Body-size limits other than MAX_BODY_SIZE, by exact path or by prefix (as in the tables above).
BODY_LIMITS: dict[str, int] = {}


def _register_file_storage() -> None:
    # File storage's upload and file endpoints (engine.file_storage; framework-free like the rest).
    from engine.file_storage import register_routes

    register_routes()


_register_file_storage()


def body_limit(path: str) -> int:
    """The largest request body accepted on `path` (decided before the body is read)."""
    if path in BODY_LIMITS:
        return BODY_LIMITS[path]
    best = ""
    for prefix in BODY_LIMITS:
        if prefix.endswith("/") and path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return BODY_LIMITS[best] if best else MAX_BODY_SIZE


def _prefix_methods(path: str) -> dict[str, Handler] | None:
    best = ""
    for prefix in PREFIX_ROUTES:
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return PREFIX_ROUTES[best] if best else None


def routed(path: str) -> bool:
    """Whether `path` is one of this API's (exact or by prefix), whatever the method."""
    if len(path) > 1:
        path = path.rstrip("/")
    return path in ROUTES or _prefix_methods(path) is not None


def _route(method: str, path: str) -> Handler | HttpResponse:
    if len(path) > 1:
        path = path.rstrip("/")
    methods = ROUTES.get(path)
    if methods is None:
        methods = _prefix_methods(path)
    if methods is None:
        return error_response(404, "NotFound", f"No route for {method} {path}.")
    handler = methods.get(method)
    if handler is None:
        return error_response(405, "MethodNotAllowed", f"{method} is not allowed on {path}.")
    return handler


async def handle(dep: Any, req: HttpRequest) -> HttpResponse:
    """Answer one API request. Never raises: every failure becomes a `{code, message}` response."""
    if req.method == "OPTIONS":
        return preflight_response(req.headers)
    response = await _dispatch(dep, req)
    response.headers.extend(cors_headers(req.headers))
    return response


async def _dispatch(dep: Any, req: HttpRequest) -> HttpResponse:
    limit = body_limit(req.path)
    if len(req.body) > limit:
        return payload_too_large(limit)
    handler = _route(req.method, req.path)
    if isinstance(handler, HttpResponse):
        return handler
    try:
        return await handler(dep, req)
    except EngineError as e:
        return _engine_error_response(e)
    except Exception:
        rid = request_id()
        logger.exception("internal error handling %s %s [Request ID: %s]", req.method, req.path, rid)
        return error_response(
            500, "InternalServerError", f"[Request ID: {rid}] Your request couldn't be completed. Try again later."
        )


# Called by the server when it begins to stop, before it waits for open requests: long polls
# (`/api/stream_function_logs`) answer at once instead of holding the shutdown up.
SHUTDOWN_HOOKS: list[Callable[[Any], None]] = []


def shutting_down(dep: Any) -> None:
    for hook in SHUTDOWN_HOOKS:
        hook(dep)


# Endpoints that live beside their subsystems add themselves to ROUTES / PREFIX_ROUTES / BODY_LIMITS:
# the official CLI's (engine.cli_api), the dashboard (engine.dashboard), /health and /metrics.
def _register_other_endpoints() -> None:
    from engine import cli_api, dashboard, metrics

    cli_api.register_routes()
    dashboard.register_routes()
    metrics.register_routes()


_register_other_endpoints()
