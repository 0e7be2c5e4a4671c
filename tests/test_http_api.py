"""HTTP API request/response shaping (engine.http_api) and its Litestar wiring (engine.server).

These tests use a tiny in-test stand-in for the Deployment that records calls and returns canned
outcomes: they cover only what the edge owns (argument unwrapping, formats, error shapes, status
codes, the admin check, the body limit, CORS). Nothing here touches storage.

TODO(lead): end-to-end tests against the real `engine.deployment.Deployment` (a tests/apps app over
real SQLite, driven through `build_app` with httpx and through `python -m engine run`) belong here
once deployment.py exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from engine import http_api
from engine.errors import EngineError
from engine.http_api import MAX_BODY_SIZE, MISSING, Auth, HttpRequest, handle

ADMIN_KEY = "test-instance|0123456789abcdef"


@dataclass
class FakeOutcome:
    success: bool
    value: Any = None
    error_message: str | None = None
    error_data: Any = MISSING
    log_lines: list[str] = field(default_factory=list)
    ts: int | None = None


class FakeDeployment:
    """Records each call; answers with `self.outcome` (or raises `self.raises`)."""

    admin_key: str | None = ADMIN_KEY

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.outcome = FakeOutcome(True, value={"ok": True})
        self.raises: BaseException | None = None
        self.closed = False

    async def call(self, path: str, args: Any, *, kind: str | None, auth: Auth, ts: int | None = None) -> FakeOutcome:
        self.calls.append({"path": path, "args": args, "kind": kind, "auth": auth, "ts": ts})
        if self.raises is not None:
            raise self.raises
        return self.outcome

    async def query_batch(self, items: list[tuple[str, Any]], auth: Auth) -> list[FakeOutcome]:
        self.calls.append({"batch": items, "auth": auth})
        return [FakeOutcome(True, value=args.get("n", 0)) for _, args in items]

    def latest_ts(self) -> int:
        return 1700000000000000000

    async def close(self) -> None:
        self.closed = True


class TokenDeployment(FakeDeployment):
    async def verify_token(self, token: str) -> dict:
        if token != "good.jwt":
            raise EngineError("InvalidAuthHeader", "Could not verify the token.", status=401)
        return {"subject": "u1", "issuer": "https://issuer", "tokenIdentifier": "https://issuer|u1"}


@pytest.fixture
def dep() -> FakeDeployment:
    return FakeDeployment()


async def post(dep: Any, path: str, body: Any = None, *, raw: bytes | None = None, headers: dict | None = None,
               query: dict | None = None) -> tuple[int, Any, dict]:
    data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
    resp = await handle(dep, HttpRequest("POST", path, headers or {}, query or {}, data))
    hdrs = dict(resp.headers)
    parsed = json.loads(resp.body) if hdrs.get("content-type") == "application/json" and resp.body else resp.body
    return resp.status, parsed, hdrs


def admin(key: str = ADMIN_KEY) -> dict[str, str]:
    return {"authorization": f"Convex {key}"}


# --- arguments -----------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[{"a": 1}], {"a": 1}])
async def test_args_array_or_object_are_unwrapped(dep: FakeDeployment, args: Any) -> None:
    status, body, _ = await post(dep, "/api/query", {"path": "tasks:list", "args": args, "format": "convex_encoded_json"})
    assert status == 200
    assert body == {"status": "success", "value": {"ok": True}}
    call = dep.calls[0]
    assert call["path"] == "tasks:list" and call["kind"] == "query" and call["ts"] is None
    assert call["args"] == {"a": 1.0} and isinstance(call["args"]["a"], float)  # JSON numbers are float64
    assert call["auth"] == Auth()


async def test_args_are_decoded_from_convex_json(dep: FakeDeployment) -> None:
    wire = {"n": {"$integer": base64.b64encode((5).to_bytes(8, "little")).decode()}, "b": {"$bytes": "AQI="}}
    await post(dep, "/api/mutation", {"path": "m:f", "args": [wire]})
    assert dep.calls[0]["args"] == {"n": 5, "b": b"\x01\x02"}
    assert dep.calls[0]["kind"] == "mutation"


async def test_absent_args_are_an_empty_object(dep: FakeDeployment) -> None:
    await post(dep, "/api/action", {"path": "a:f"})
    assert dep.calls[0]["args"] == {} and dep.calls[0]["kind"] == "action"


@pytest.mark.parametrize("args", [[], [{}, {}], "x", [3], {"$integer": "AQAAAAAAAAA="}])
async def test_bad_args_are_400(dep: FakeDeployment, args: Any) -> None:
    status, body, _ = await post(dep, "/api/query", {"path": "tasks:list", "args": args})
    assert status == 400 and body["code"] == "InvalidArgs"
    assert dep.calls == []


async def test_bad_convex_value_in_args_is_400(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/query", {"path": "t:f", "args": {"x": {"$integer": "AQ=="}}})
    assert status == 400 and body["code"] == "InvalidArgs"


# --- paths and body ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["tasks", "tasks:list", "dir/file:fn", "tasks.js:list", "a_b/c.d:_x1"])
async def test_valid_paths_are_passed_as_given(dep: FakeDeployment, path: str) -> None:
    status, _, _ = await post(dep, "/api/query", {"path": path, "args": {}})
    assert status == 200 and dep.calls[0]["path"] == path


@pytest.mark.parametrize("path", [None, "", 5, "a b:c", "tasks:", "tasks:1x", "t:__", "/x:y", "a//b:c", "t:" + "x" * 65])
async def test_missing_or_invalid_path_is_400(dep: FakeDeployment, path: Any) -> None:
    body: dict[str, Any] = {"args": {}}
    if path is not None:
        body["path"] = path
    status, out, _ = await post(dep, "/api/query", body)
    assert status == 400 and out["code"] == "InvalidFunctionPath"
    assert dep.calls == []


@pytest.mark.parametrize("raw", [b"{", b"", b"not json", b"[1]", b"null"])
async def test_malformed_body_is_400_bad_json_body(dep: FakeDeployment, raw: bytes) -> None:
    status, body, _ = await post(dep, "/api/mutation", raw=raw)
    assert status == 400 and body["code"] == "BadJsonBody" and body["message"]


async def test_body_over_limit_is_413(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/mutation", raw=b" " * (MAX_BODY_SIZE + 1))
    assert status == 413 and body["code"] == "PayloadTooLarge"
    # Exactly at the limit is still parsed (and here rejected only as bad JSON).
    status, body, _ = await post(dep, "/api/mutation", raw=b" " * MAX_BODY_SIZE)
    assert status == 400 and body["code"] == "BadJsonBody"


# --- formats -------------------------------------------------------------------------------------


async def test_encoded_json_format(dep: FakeDeployment) -> None:
    dep.outcome = FakeOutcome(True, value={"i": 1, "f": 1.5, "b": b"\x00", "nan": float("nan")})
    for fmt in ("convex_encoded_json", "convex_json"):
        _, body, _ = await post(dep, "/api/query", {"path": "t:f", "args": {}, "format": fmt})
        assert body["value"] == {
            "i": {"$integer": "AQAAAAAAAAA="}, "f": 1.5, "b": {"$bytes": "AA=="}, "nan": {"$float": "AAAAAAAA+H8="},
        }


@pytest.mark.parametrize("fmt", ["json", "convex_clean_json", None])
async def test_clean_json_format_is_the_default(dep: FakeDeployment, fmt: str | None) -> None:
    dep.outcome = FakeOutcome(True, value={"i": 1, "f": 1.5, "s": "x"})
    req: dict[str, Any] = {"path": "t:f", "args": {}}
    if fmt is not None:
        req["format"] = fmt
    _, body, _ = await post(dep, "/api/query", req)
    assert body["value"] == {"i": "1", "f": 1.5, "s": "x"}


@pytest.mark.parametrize("fmt", ["xml", 3, "JSON"])
async def test_unknown_format_is_400(dep: FakeDeployment, fmt: Any) -> None:
    status, body, _ = await post(dep, "/api/query", {"path": "t:f", "args": {}, "format": fmt})
    assert status == 400 and body["code"] == "InvalidFormat"


# --- outcomes ------------------------------------------------------------------------------------


async def test_log_lines_only_when_present(dep: FakeDeployment) -> None:
    dep.outcome = FakeOutcome(True, value=None, log_lines=["[LOG] 'hi' 2"])
    _, body, _ = await post(dep, "/api/query", {"path": "t:f", "args": {}})
    assert body == {"status": "success", "value": None, "logLines": ["[LOG] 'hi' 2"]}


async def test_function_error_is_200_without_error_data(dep: FakeDeployment) -> None:
    dep.outcome = FakeOutcome(False, error_message="Uncaught Error: boom")
    status, body, _ = await post(dep, "/api/mutation", {"path": "t:f", "args": {}})
    assert status == 200
    assert body == {"status": "error", "errorMessage": "Uncaught Error: boom"}


@pytest.mark.parametrize("data", [None, "msg", {"code": 7.0}])
async def test_convex_error_carries_error_data_in_the_requested_format(dep: FakeDeployment, data: Any) -> None:
    dep.outcome = FakeOutcome(False, error_message="Uncaught ConvexError: x", error_data=data, log_lines=["[ERROR] 'x'"])
    _, body, _ = await post(dep, "/api/action", {"path": "t:f", "args": {}, "format": "convex_encoded_json"})
    assert body == {"status": "error", "errorMessage": "Uncaught ConvexError: x", "errorData": data, "logLines": ["[ERROR] 'x'"]}
    dep.outcome = FakeOutcome(False, error_message="e", error_data={"big": 2**40})
    _, body, _ = await post(dep, "/api/action", {"path": "t:f", "args": {}, "format": "convex_encoded_json"})
    assert body["errorData"] == {"big": {"$integer": base64.b64encode((2**40).to_bytes(8, "little")).decode()}}


async def test_engine_error_keeps_its_code_and_status(dep: FakeDeployment) -> None:
    dep.raises = EngineError("InvalidTimestamp", "Timestamp is too old.", status=400)
    status, body, _ = await post(dep, "/api/query", {"path": "t:f", "args": {}})
    assert (status, body) == (400, {"code": "InvalidTimestamp", "message": "Timestamp is too old."})


async def test_unexpected_exception_is_500_without_details(dep: FakeDeployment, caplog: pytest.LogCaptureFixture) -> None:
    dep.raises = RuntimeError("secret internals")
    status, body, _ = await post(dep, "/api/query", {"path": "t:f", "args": {}})
    assert status == 500 and body["code"] == "InternalServerError"
    assert "secret internals" not in body["message"]


# --- auth ----------------------------------------------------------------------------------------


async def test_function_endpoint_requires_admin(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/function", {"path": "t:f", "args": {}})
    assert status == 401 and body["code"] == "Unauthenticated"
    assert dep.calls == []


async def test_function_endpoint_with_admin_key_runs_any_kind(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/function", {"path": "t:f", "args": {}, "format": "json"}, headers=admin())
    assert status == 200 and body["status"] == "success"
    assert dep.calls[0]["kind"] is None and dep.calls[0]["auth"] == Auth(identity=None, admin=True)


async def test_admin_key_query_param(dep: FakeDeployment) -> None:
    status, _, _ = await post(dep, "/api/function", {"path": "t:f"}, query={"adminKey": ADMIN_KEY})
    assert status == 200 and dep.calls[0]["auth"].admin


@pytest.mark.parametrize("where", ["header", "query"])
async def test_bad_admin_key_is_401_and_not_echoed(dep: FakeDeployment, where: str) -> None:
    wrong = "test-instance|wrongwrongwrong"
    kw: dict[str, Any] = {"headers": admin(wrong)} if where == "header" else {"query": {"adminKey": wrong}}
    resp = await handle(dep, HttpRequest("POST", "/api/query", kw.get("headers", {}), kw.get("query", {}),
                                         b'{"path":"t:f","args":{}}'))
    body = json.loads(resp.body)
    assert resp.status == 401 and body["code"] == "BadAdminKey"
    assert b"wrongwrong" not in resp.body and ADMIN_KEY.encode() not in resp.body
    assert dep.calls == []


async def test_no_admin_key_configured_rejects_every_key(dep: FakeDeployment) -> None:
    dep.admin_key = None
    status, body, _ = await post(dep, "/api/function", {"path": "t:f"}, headers=admin(""))
    assert status == 401 and body["code"] == "BadAdminKey"


async def test_admin_impersonation(dep: FakeDeployment) -> None:
    identity = {"subject": "u1", "issuer": "https://i", "tokenIdentifier": "https://i|u1", "name": "Ada"}
    encoded = base64.b64encode(json.dumps(identity).encode()).decode()
    status, _, _ = await post(dep, "/api/query", {"path": "t:f"}, headers=admin(f"{ADMIN_KEY}:{encoded}"))
    assert status == 200
    assert dep.calls[0]["auth"] == Auth(identity=identity, admin=True)
    status, body, _ = await post(dep, "/api/query", {"path": "t:f"}, headers=admin(f"{ADMIN_KEY}:!!notb64"))
    assert status == 400 and body["code"] == "InvalidImpersonation"
    status, body, _ = await post(dep, "/api/query", {"path": "t:f"}, headers=admin(f"other:{encoded}"))
    assert status == 401 and body["code"] == "BadAdminKey"


async def test_bearer_without_auth_provider_is_401(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/query", {"path": "t:f"}, headers={"authorization": "Bearer a.b.c"})
    assert status == 401 and body["code"] == "NoAuthProvider"


async def test_bearer_is_verified_by_the_deployment() -> None:
    dep = TokenDeployment()
    status, _, _ = await post(dep, "/api/query", {"path": "t:f"}, headers={"authorization": "Bearer good.jwt"})
    assert status == 200
    assert dep.calls[0]["auth"] == Auth(identity={"subject": "u1", "issuer": "https://issuer",
                                                  "tokenIdentifier": "https://issuer|u1"}, admin=False)
    status, body, _ = await post(dep, "/api/query", {"path": "t:f"}, headers={"authorization": "Bearer bad"})
    assert status == 401 and body["code"] == "InvalidAuthHeader"
    status, body, _ = await post(dep, "/api/function", {"path": "t:f"}, headers={"authorization": "Bearer good.jwt"})
    assert status == 403


async def test_unknown_auth_scheme_is_401(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/query", {"path": "t:f"}, headers={"authorization": "Basic eDp5"})
    assert status == 401 and body["code"] == "Unauthenticated"


# --- other endpoints -----------------------------------------------------------------------------


async def test_get_query(dep: FakeDeployment) -> None:
    resp = await handle(dep, HttpRequest("GET", "/api/query", {}, {"path": "t:f", "args": '{"a":"x"}',
                                                                    "format": "convex_encoded_json"}))
    assert resp.status == 200 and json.loads(resp.body)["status"] == "success"
    assert dep.calls[0]["args"] == {"a": "x"} and dep.calls[0]["kind"] == "query"
    resp = await handle(dep, HttpRequest("GET", "/api/query", {}, {"path": "t:f", "args": "{"}))
    assert resp.status == 400 and json.loads(resp.body)["code"] == "BadJsonBody"


def test_encoded_ts_vectors() -> None:
    assert http_api.encode_ts(0) == "AAAAAAAAAAA="
    assert http_api.encode_ts(1700000000000000000) == "AAAqNv6clxc="
    assert http_api.decode_ts("AAAqNv6clxc=") == 1700000000000000000
    for bad in ["AAAqNv6clxc", "AAAA", 5, "!!!!!!!!!!!="]:
        with pytest.raises(EngineError):
            http_api.decode_ts(bad)


async def test_query_ts_and_query_at_ts(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/query_ts")
    assert (status, body) == (200, {"ts": "AAAqNv6clxc="})
    status, body, _ = await post(dep, "/api/query_at_ts", {"path": "t:f", "args": [{}], "ts": body["ts"]})
    assert status == 200 and dep.calls[0]["ts"] == 1700000000000000000 and dep.calls[0]["kind"] == "query"
    status, body, _ = await post(dep, "/api/query_at_ts", {"path": "t:f", "args": [{}], "ts": "nope"})
    assert status == 400 and body["code"] == "InvalidTimestamp"


async def test_query_batch(dep: FakeDeployment) -> None:
    queries = [{"path": "t:a", "args": [{"n": 1}], "format": "convex_encoded_json"}, {"path": "t:b", "args": {"n": 2}}]
    status, body, _ = await post(dep, "/api/query_batch", {"queries": queries})
    assert status == 200
    assert body == {"results": [{"status": "success", "value": 1.0}, {"status": "success", "value": 2.0}]}
    assert dep.calls[0]["batch"] == [("t:a", {"n": 1.0}), ("t:b", {"n": 2.0})]
    status, body, _ = await post(dep, "/api/query_batch", {"queries": "x"})
    assert status == 400 and body["code"] == "BadJsonBody"


async def test_run_path_maps_to_module_and_export(dep: FakeDeployment) -> None:
    dep.outcome = FakeOutcome(True, value=3)
    status, body, _ = await post(dep, "/api/run/dir/file/fn", {"args": {"x": 1}})
    assert (status, body) == (200, {"status": "success", "value": "3"})  # clean JSON by default
    assert dep.calls[0]["path"] == "dir/file:fn" and dep.calls[0]["kind"] is None
    assert dep.calls[0]["args"] == {"x": 1.0} and dep.calls[0]["auth"] == Auth()
    await post(dep, "/api/run/my%5Fmod/go", raw=b"")
    assert dep.calls[1]["path"] == "my_mod:go" and dep.calls[1]["args"] == {}
    status, body, _ = await post(dep, "/api/run/onlyone", {})
    assert status == 400 and body["code"] == "InvalidFunctionPath"


async def test_debug_event_and_version(dep: FakeDeployment) -> None:
    status, _, _ = await post(dep, "/api/debug_event", {"event": "LongWebsocketDisconnect"})
    assert status == 200 and dep.calls == []
    resp = await handle(dep, HttpRequest("GET", "/version"))
    assert resp.status == 200 and resp.body == http_api.VERSION.encode()
    assert dict(resp.headers)["content-type"].startswith("text/plain")


async def test_unknown_route_and_method(dep: FakeDeployment) -> None:
    status, body, _ = await post(dep, "/api/nope", {})
    assert status == 404 and body["code"] == "NotFound"
    resp = await handle(dep, HttpRequest("GET", "/api/mutation"))
    assert resp.status == 405 and json.loads(resp.body)["code"] == "MethodNotAllowed"


async def test_cors(dep: FakeDeployment) -> None:
    resp = await handle(dep, HttpRequest("OPTIONS", "/api/query", {
        "origin": "https://app.example", "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, convex-client"}))
    h = dict(resp.headers)
    assert resp.status == 200
    assert h["access-control-allow-origin"] == "https://app.example"
    assert h["access-control-allow-credentials"] == "true"
    assert h["access-control-allow-headers"] == "content-type, convex-client"
    assert h["access-control-max-age"] == "86400"
    assert set(h["access-control-allow-methods"].split(", ")) == {"GET", "POST", "OPTIONS", "PATCH", "DELETE", "PUT"}
    _, _, h = await post(dep, "/api/query", {"path": "t:f"}, headers={"origin": "http://localhost:5173"})
    assert h["access-control-allow-origin"] == "http://localhost:5173"
    _, _, h = await post(dep, "/api/query", {"path": "t:f"})
    assert "access-control-allow-origin" not in h


# --- the network edge (engine.server on engine.http_server) ----------------------------------------


@contextlib.asynccontextmanager
async def serving(dep: Any, **kwargs: Any):
    """engine.server.serve on real loopback sockets (port 0); yields (api base URL, site base URL)."""
    from engine.server import serve

    ready: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(dep, "127.0.0.1", 0, 0, stop=stop,
                                     on_ready=lambda a, s: ready.set_result((a, s)), **kwargs))
    api_port, site_port = await asyncio.wait_for(ready, 10)
    try:
        yield f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{site_port}"
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_server_routes_through_http_api(dep: FakeDeployment) -> None:
    async with serving(dep) as (api, _):
        await _check_routes(api, dep)


async def _check_routes(api: str, dep: FakeDeployment) -> None:
    async with httpx.AsyncClient(base_url=api) as client:
        r = await client.post("/api/query", json={"path": "t:f", "args": [{}], "format": "convex_encoded_json"},
                              headers={"origin": "http://x"})
        assert r.status_code == 200 and r.json() == {"status": "success", "value": {"ok": True}}
        assert r.headers["access-control-allow-origin"] == "http://x"
        r = await client.post("/api/run/a/b/fn", json={"args": {}})
        assert r.status_code == 200 and dep.calls[-1]["path"] == "a/b:fn"
        r = await client.get("/version")
        assert r.status_code == 200 and r.text == http_api.VERSION
        r = await client.options("/api/mutation", headers={"origin": "http://x", "access-control-request-method": "POST"})
        assert r.status_code == 200 and r.headers["access-control-max-age"] == "86400"
        r = await client.get("/nowhere")
        assert r.status_code == 404 and r.json()["code"] == "NotFound"
        r = await client.post("/api/mutation", content=b" " * (MAX_BODY_SIZE + 1))
        assert r.status_code == 413 and r.json()["code"] == "PayloadTooLarge"
    async with httpx.AsyncClient(base_url=api) as client:  # the 413 closed that connection
        r = await client.post("/http/hook", content=b"{}")
        assert r.status_code == 404 and r.json()["code"] == "NotFound"


async def test_server_seams_for_http_actions(dep: FakeDeployment) -> None:
    seen: list[HttpRequest] = []

    async def http_actions(req: HttpRequest) -> http_api.HttpResponse:
        seen.append(req)
        return http_api.HttpResponse(201, b"hello", [("content-type", "text/plain")])

    async with serving(dep, http_actions=http_actions) as (api, site), httpx.AsyncClient() as client:
        r = await client.post(f"{api}/http/hooks/livekit?x=1", content=b"payload")
        assert (r.status_code, r.text) == (201, "hello")
        assert (seen[-1].method, seen[-1].path, seen[-1].query, seen[-1].body) == ("POST", "/hooks/livekit", {"x": "1"}, b"payload")
        assert (await client.post(f"{api}/api/query", json={"path": "t:f"})).status_code == 200
        r = await client.get(f"{site}/openclaw/hook")
        assert r.status_code == 201 and seen[-1].path == "/openclaw/hook"
        r = await client.head(f"{site}/openclaw/hook")
        assert r.status_code == 201 and r.content == b"" and r.headers["content-length"] == "5"
    async with serving(FakeDeployment()) as (_, site), httpx.AsyncClient() as client:
        assert (await client.get(f"{site}/x")).status_code == 404


async def test_serve_on_real_sockets_and_closes_the_deployment(dep: FakeDeployment, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.server import serve

    ready: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
    stop = asyncio.Event()
    task = asyncio.create_task(serve(dep, "127.0.0.1", 0, 0, stop=stop, on_ready=lambda a, s: ready.set_result((a, s))))
    api_port, site_port = await asyncio.wait_for(ready, 10)
    async with httpx.AsyncClient() as client:
        r = await client.post(f"http://127.0.0.1:{api_port}/api/query", json={"path": "t:f"})
        assert r.status_code == 200 and r.json()["status"] == "success"
        r = await client.get(f"http://127.0.0.1:{site_port}/anything")
        assert r.status_code == 404
    stop.set()
    await asyncio.wait_for(task, 10)
    assert dep.closed
    out = capsys.readouterr().out
    assert f"Convex-compatible API listening on http://127.0.0.1:{api_port}" in out
    assert f"HTTP actions on http://127.0.0.1:{site_port}" in out


# --- CLI helpers (engine.cli) --------------------------------------------------------------------


def test_admin_key_file_is_private_and_reused(tmp_path: Any) -> None:
    import os
    import stat

    from engine.cli import load_or_create_admin_key

    key_file = tmp_path / "data" / "admin_key"
    key, created = load_or_create_admin_key(key_file)
    assert created and ":" not in key and len(key) > 40
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert load_or_create_admin_key(key_file) == (key, False)
