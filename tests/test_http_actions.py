"""HTTP actions: the router's rules, and tests/apps/site served by a real server on both origins.

Origins: the site port (`server.site_url`, like `<name>.convex.site`) and the API port under `/http`
(`server.url + "/http"`, for one-origin set-ups). Every status code is asserted exactly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from engine import HttpRouter, Response, http_action, json_response
from engine.deployment import Deployment
from engine.errors import EngineError
from engine.http_api import HttpRequest
from engine.http_router import MAX_REQUEST_BODY, Route
from engine.loader import load_app

SITE_APP = Path(__file__).parent / "apps" / "site"


@http_action
async def _ok(ctx, request):
    return Response("ok")


# --- the router, in process ----------------------------------------------------------------------


def test_exact_path_beats_prefixes_and_the_longest_prefix_wins():
    http = HttpRouter()
    http.route(path_prefix="/files/", method="GET", handler=_ok)
    http.route(path_prefix="/files/deep/", method="GET", handler=_ok)
    http.route(path="/files/deep/exact", method="GET", handler=_ok)
    http.route(path="/files/deep/exact", method="POST", handler=_ok)

    def label(path: str, method: str = "GET") -> str | list[str] | None:
        found = http.lookup(path, method)
        return found.label if isinstance(found, Route) else found

    assert label("/files/deep/exact") == "GET /files/deep/exact"
    assert label("/files/deep/exact", "HEAD") == "GET /files/deep/exact"
    assert label("/files/deep/other") == "GET /files/deep/*"
    assert label("/files/a/b") == "GET /files/*"
    assert label("/files/deep/x", "POST") == ["GET"]  # known path, other method -> 405
    assert label("/files/deep/exact", "DELETE") == ["GET", "POST"]
    assert label("/files") is None  # a prefix matches only below its trailing slash
    assert label("/elsewhere") is None
    assert [r.label for r in http.get_routes()] == [
        "GET /files/deep/exact", "POST /files/deep/exact", "GET /files/deep/*", "GET /files/*"]


def test_a_route_registered_twice_is_an_error_naming_it():
    http = HttpRouter()
    http.route(path="/hooks/openclaw", method="POST", handler=_ok)
    http.route(path="/hooks/openclaw", method="GET", handler=_ok)  # another method is fine
    with pytest.raises(EngineError) as e:
        http.route(path="/hooks/openclaw", method="post", handler=_ok)
    assert e.value.code == "DuplicateHttpRoute"
    assert e.value.message == "HTTP route POST path '/hooks/openclaw' is defined twice."
    http.route(path_prefix="/a/", method="GET", handler=_ok)
    with pytest.raises(EngineError, match="HTTP route GET path_prefix '/a/' is defined twice"):
        http.route(path_prefix="/a/", method="GET", handler=_ok)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"path": "/x", "method": "HEAD"}, "has method 'HEAD'; expected one of GET, POST, PUT, DELETE, OPTIONS, "
                                           "PATCH (HEAD is served by the GET route)."),
        ({"path": "/x", "method": "TRACE"}, "has method 'TRACE'"),
        ({"path": "x", "method": "GET"}, "HTTP route path 'x' must start with '/'."),
        ({"path_prefix": "/x", "method": "GET"}, "HTTP route path_prefix '/x' must start and end with '/'."),
        ({"method": "GET"}, "exactly one of `path` or `path_prefix`"),
        ({"path": "/x", "path_prefix": "/y/", "method": "GET"}, "exactly one of `path` or `path_prefix`"),
    ],
)
def test_malformed_routes_are_refused(kwargs, message):
    with pytest.raises(EngineError, match="InvalidHttpRoute") as e:
        HttpRouter().route(handler=_ok, **kwargs)
    assert message in e.value.message


def test_handlers_must_be_async():
    def sync_handler(ctx, request):
        return Response()

    with pytest.raises(EngineError, match="InvalidHttpRoute"):
        HttpRouter().route(path="/x", method="GET", handler=sync_handler)
    with pytest.raises(EngineError, match="InvalidHttpAction"):
        http_action(sync_handler)


def test_a_duplicate_route_fails_loading_the_app(tmp_path):
    (tmp_path / "http_routes.py").write_text(
        "from engine import HttpRouter, Response, http_action\n"
        "@http_action\n"
        "async def h(ctx, request):\n"
        "    return Response()\n"
        "http = HttpRouter()\n"
        "http.route(path='/hooks/livekit', method='POST', handler=h)\n"
        "http.route(path='/hooks/livekit', method='POST', handler=h)\n"
    )
    with pytest.raises(EngineError) as e:
        load_app(tmp_path)
    assert e.value.code == "DuplicateHttpRoute"
    assert "POST path '/hooks/livekit'" in e.value.message


def test_responses():
    r = Response("héllo", status=201, headers={"X-A": "1"})
    assert (r.body, r.status) == ("héllo".encode(), 201)
    assert r.headers == [("X-A", "1"), ("content-type", "text/plain;charset=UTF-8")]
    assert Response(b"\x00\xff").headers == []
    assert Response(None, status=204).body == b""
    j = json_response({"a": [1, 2.5, "é"]}, 400)
    assert (j.body, j.status, j.headers) == ('{"a":[1,2.5,"é"]}'.encode(), 400, [("content-type", "application/json")])
    with pytest.raises(ValueError, match="from 200 to 599"):
        Response(status=199)
    with pytest.raises(ValueError):
        json_response({"x": float("nan")})


async def test_bearer_tokens_become_ctx_auth_when_the_deployment_verifies_them():
    dep = await Deployment.open(SITE_APP, ":memory:")
    try:
        def verify_token(token: str) -> dict:
            if token != "good.jwt.token":
                raise EngineError("InvalidAuthHeader", "bad token")
            return {"subject": "user-1", "issuer": "https://issuer.example"}

        async def inspect(headers: dict) -> dict:
            response = await dep.handle_http_action(HttpRequest("GET", "/inspect", headers, {}, b""))
            assert response.status == 200
            import json
            return json.loads(response.body)

        # The deployment's own verifier (no providers configured) refuses it.
        assert (await inspect({"authorization": "Bearer good.jwt.token"}))["identity"]["refused"] == "InvalidAuthHeader"
        dep.verify_token = verify_token  # type: ignore[attr-defined]
        assert (await inspect({"authorization": "Bearer good.jwt.token"}))["identity"] == {
            "subject": "user-1", "issuer": "https://issuer.example"}
        # A webhook's shared-secret bearer token is not a JWT: the handler still runs, and (as in
        # Convex) asking for the identity raises the verification error instead of answering None.
        assert (await inspect({"authorization": "Bearer shared-webhook-secret"}))["identity"] == {
            "refused": "InvalidAuthHeader", "message": "bad token"}
        assert (await inspect({}))["identity"] is None
    finally:
        await dep.close()


# --- a real server, both origins -----------------------------------------------------------------


@pytest.fixture(scope="module")
def site(shared_server_factory):
    return shared_server_factory("site")


def _bases(server) -> dict[str, str]:
    return {"site": server.site_url, "api": server.url + "/http"}


@pytest.fixture(params=["site", "api"])
def base(request, site) -> str:
    return _bases(site)[request.param]


# Odd whitespace, CRLF, tabs, non-ASCII and a trailing newline: nothing may normalise these bytes.
ODD_BODY = ' \t{"text":  "café ✓ \u2028 😀",\r\n\t"n": 1.50 }\n\n'.encode() + b"\x00\xff"


def test_the_handler_hashes_exactly_the_bytes_sent(base):
    r = httpx.post(f"{base}/hooks/hash", content=ODD_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 200
    assert r.json() == {"sha256": hashlib.sha256(ODD_BODY).hexdigest(), "length": len(ODD_BODY),
                        "contentType": "application/json"}


def test_unknown_route_is_404_json(base):
    r = httpx.get(f"{base}/no/such/route")
    assert r.status_code == 404
    assert r.json() == {"code": "NoMatchingRoute", "message": "No HTTP route matches GET /no/such/route."}


def test_wrong_method_on_a_known_path_is_405_json(base):
    r = httpx.get(f"{base}/hooks/hash")
    assert r.status_code == 405
    assert r.json() == {"code": "MethodNotAllowed", "message": "GET is not allowed on /hooks/hash; it accepts POST."}
    assert r.headers["allow"] == "POST"


def test_a_throwing_handler_answers_as_convex_and_the_server_keeps_serving(base, site):
    r = httpx.get(f"{base}/boom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    body = r.json()
    # Convex's body (redaction.rs): the error in `code` after the request id, its frames in `trace`.
    assert set(body) == {"code", "trace"}
    rid = body["code"].split("]")[0].removeprefix("[Request ID: ")
    assert len(rid) == 16 and body["code"] == (
        f"[Request ID: {rid}] Server Error: Uncaught RuntimeError: the database password is hunter2")
    assert body["trace"].startswith("Uncaught RuntimeError: the database password is hunter2\n    at boom "
                                    "(http_routes.py:") and body["trace"].endswith(")\n")
    assert "Traceback" not in r.text
    # The traceback is in the server's log, under the same request id.
    log = site.log_tail(400)
    assert f"H(GET /boom) [Request ID: {rid}] [ERROR] Uncaught RuntimeError: the database password is hunter2" in log
    assert 'raise RuntimeError("the database password is hunter2")' in log
    r = httpx.get(f"{base}/not-a-response")
    assert r.status_code == 500
    r = httpx.get(f"{base}/text")
    assert r.status_code == 202
    assert r.text == "plain text ✓"
    assert r.headers["x-thing"] == "1"
    assert r.headers["content-type"] == "text/plain;charset=UTF-8"


def test_head_runs_the_get_route_without_a_body(base):
    r = httpx.head(f"{base}/text")
    assert r.status_code == 202
    assert r.content == b""


def test_routes_resolve_exact_before_prefix(base):
    assert httpx.get(f"{base}/files/special").json() == {"handler": "special_file"}
    assert httpx.get(f"{base}/files/deep/a/b").json() == {"handler": "deep_files", "path": "/files/deep/a/b"}
    assert httpx.get(f"{base}/files/x").json() == {"handler": "files", "path": "/files/x"}
    assert httpx.get(f"{base}/files").status_code == 404


def test_request_url_query_and_case_insensitive_headers(base, site):
    r = httpx.post(f"{base}/inspect?a=1&b=two%20words", content="hi ✓",
                   headers={"X-Custom-Header": "yes"})
    assert r.status_code == 200
    host = (site.site_url if base == site.site_url else site.url).removeprefix("http://")
    assert r.json() == {
        "method": "POST", "path": "/inspect", "url": f"http://{host}/inspect?a=1&b=two%20words",
        "query": {"a": "1", "b": "two words"}, "custom": "yes", "hasCustom": True, "text": "hi ✓",
        "identity": None,
    }


def test_an_action_mutation_is_visible_through_the_api(base, site):
    source = f"openclaw-{hashlib.sha1(base.encode()).hexdigest()[:8]}"
    r = httpx.post(f"{base}/hooks/event", json={"source": source, "text": "standup done"})
    assert r.status_code == 200
    event_id = r.json()["id"]
    assert r.json()["count"] == 1
    q = httpx.post(f"{site.url}/api/query",
                   json={"path": "events:by_source", "args": {"source": source}, "format": "json"})
    assert q.status_code == 200
    [doc] = q.json()["value"]
    assert (doc["_id"], doc["source"], doc["text"]) == (event_id, source, "standup done")


def test_bodies_over_20_mib_are_refused_with_413(base):
    at_limit = b"x" * MAX_REQUEST_BODY
    r = httpx.post(f"{base}/hooks/hash", content=at_limit, timeout=60)
    assert r.status_code == 200
    assert r.json()["length"] == MAX_REQUEST_BODY
    r = httpx.post(f"{base}/hooks/hash", content=at_limit + b"x", timeout=60)
    assert r.status_code == 413
    assert r.json() == {"code": "PayloadTooLarge",
                        "message": f"The request body exceeds the limit of {MAX_REQUEST_BODY} bytes."}
    # Still serving.
    assert httpx.post(f"{base}/hooks/hash", content=b"small").status_code == 200


def test_without_http_routes_every_path_is_404(shared_server_factory):
    server = shared_server_factory("basic")
    for url in (f"{server.site_url}/anything", f"{server.url}/http/anything"):
        r = httpx.get(url)
        assert r.status_code == 404
        assert r.json()["code"] == "NoMatchingRoute"


def test_only_paths_under_http_slash_reach_the_router_on_the_api_port(site):
    r = httpx.get(f"{site.url}/httpfiles/x")
    assert r.status_code == 404
    assert r.json() == {"code": "NotFound", "message": "No route for GET /httpfiles/x."}
    r = httpx.get(f"{site.url}/http")  # the bare prefix is the router's "/"
    assert r.status_code == 404
    assert r.json()["code"] == "NoMatchingRoute"
