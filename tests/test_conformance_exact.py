"""Convex-exact behaviour as the official clients see it (issue 11), against a real server on
tests/apps/exact: the npm ConvexClient, ConvexHttpClient and ConvexReactClient (tests/js/exact.mjs,
with usePaginatedQuery under react-test-renderer), the PyPI client, and raw HTTP / WebSocket.

Error texts are asserted the way Convex's own integration tests assert them
(npm-packages/js-integration-tests `matchingErrorMessage`): the request-id line, the error line,
then one `    at <function> (<file>:<line>:<column>)` line per frame, with Python frames in place of
JavaScript ones.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest
from websockets.asyncio.client import connect

APP = Path(__file__).resolve().parent / "apps" / "exact"
_spec = importlib.util.spec_from_file_location("exact_app_auth_config", APP / "auth_config.py")
auth_config = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(auth_config)  # type: ignore[union-attr]

pytestmark = pytest.mark.slow

CUSTOM = "functions/customErrors.py"


@pytest.fixture(scope="module")
def server(shared_server_factory):
    return shared_server_factory(APP)


def at(name: str, *, awaiting: bool = False, file: str = CUSTOM) -> str:
    """The regex of one frame line."""
    return rf"\n    at {'async ' if awaiting else ''}{re.escape(name)} \({re.escape(file)}:\d+:\d+\)"


def matching(body: str) -> re.Pattern[str]:
    """Convex's matchingErrorMessage: optional client prefix, the request id line, the body, the
    optional "Called by client" suffix, over the trimmed message."""
    return re.compile(r"^(\[CONVEX [QMA]\([a-zA-Z:]+\)\] )?\[Request ID: [a-f0-9]{16}\] Server Error\n"
                      + body + r"(\n\n  Called by client)?$")


BOOM = re.escape("Boom boom bop")
WITH_CODE = re.escape('{"message":"Boom boom bop","code":"123n"}')
CODE_DATA = {"message": "Boom boom bop", "code": {"$bigint": "123"}}

# (function, expected body regex, expected data or None for a plain Error)
CASES: list[tuple[str, str, Any]] = [
    ("queryThrowingConvexError", "Uncaught ConvexError: " + BOOM + at("queryThrowingConvexError"), "Boom boom bop"),
    ("queryThrowingNormalError", "Uncaught Error: Normal error" + at("queryThrowingNormalError"), None),
    ("queryThrowingConvexErrorSubclass", "Uncaught FooError: " + WITH_CODE + at("queryThrowingConvexErrorSubclass"),
     CODE_DATA),
    ("mutationThrowingConvexError", "Uncaught ConvexError: " + WITH_CODE + at("mutationThrowingConvexError"),
     CODE_DATA),
    ("actionThrowingConvexError", "Uncaught ConvexError: " + BOOM + at("actionThrowingConvexError"), "Boom boom bop"),
    ("actionCallingQueryThrowingConvexError",
     "Uncaught ConvexError: Uncaught ConvexError: " + BOOM + at("queryThrowingConvexError") + r"\n"
     + at("actionCallingQueryThrowingConvexError", awaiting=True), "Boom boom bop"),
    ("actionCallingQueryThrowingConvexErrorSubclass",
     "Uncaught ConvexError: Uncaught FooError: " + WITH_CODE + at("queryThrowingConvexErrorSubclass") + r"\n"
     + at("actionCallingQueryThrowingConvexErrorSubclass", awaiting=True), CODE_DATA),
    ("actionCallingMutationThrowingConvexError",
     "Uncaught ConvexError: Uncaught ConvexError: " + WITH_CODE + at("mutationThrowingConvexError") + r"\n"
     + at("actionCallingMutationThrowingConvexError", awaiting=True), CODE_DATA),
    ("actionCallingActionThrowingConvexError",
     "Uncaught ConvexError: Uncaught ConvexError: " + BOOM + at("actionThrowingConvexError") + r"\n"
     + at("actionCallingActionThrowingConvexError", awaiting=True), "Boom boom bop"),
    ("actionCallingQueryThrowingNormalError",
     "Uncaught Error: Uncaught Error: Normal error" + at("queryThrowingNormalError") + r"\n"
     + at("actionCallingQueryThrowingNormalError", awaiting=True), None),
]


# --- errors ----------------------------------------------------------------------------------------


def test_error_texts_and_data_reach_every_npm_client_as_convex_words_them(run_node, server):
    out = run_node("exact", server.url, "errors")
    assert out["ok"], out
    for client, results in out["value"].items():
        if client == "subscription":
            continue
        for fn, body, data in CASES:
            got = results[fn]
            assert matching(body).match(got["message"].strip()), (client, fn, got["message"])
            if data is None:
                assert got["isError"] and not got["isConvexError"] and got["name"] == "Error", (client, fn, got)
                assert not got["hasData"], (client, fn)
            else:
                assert got["isConvexError"] and got["name"] == "ConvexError" and got["data"] == data, (client, fn, got)
        # The HTTP client gets the text as the server sent it (one trailing newline); the sync
        # clients add Convex's prefix and suffix around it.
        raw = results["queryThrowingConvexError"]["message"]
        if client == "ConvexHttpClient":
            assert raw.startswith("[Request ID: ") and raw.endswith(")\n") and not raw.endswith("\n\n")
        else:
            assert raw.startswith("[CONVEX Q(customErrors:queryThrowingConvexError)] [Request ID: ")
            assert raw.endswith(")\n\n  Called by client")
        # JSON.stringify's rendering of every kind of value, int64 as "123n".
        values = results["queryThrowingValues"]
        assert matching("Uncaught ConvexError: " + re.escape(
            '{"int":"1234567890123n","float":1.5,"whole":3,"big":1e+21,"tiny":1e-7,'
            '"nested":[null,true,"é\\n\\"q\\""],"bytes":{},"neg":0}') + at("queryThrowingValues")).match(
            values["message"].strip()), values["message"]
        assert values["data"]["int"] == {"$bigint": "1234567890123"}
        # What a calling action sees of a nested ConvexError: a ConvexError with the inner data.
        caught = results["caught"]["resolved"]
        assert caught["isConvexError"] and caught["data"] == CODE_DATA
        assert re.fullmatch("Uncaught ConvexError: " + WITH_CODE + at("mutationThrowingConvexError") + r"\n",
                            caught["message"])
        # Function not found, and the wrong kind, in the current backend's words.
        assert matching(re.escape("Could not find public function for 'nope:missing'.")).match(
            results["missing"]["message"].strip()), results["missing"]
        assert matching(re.escape("Trying to execute customErrors.js:queryThrowingConvexError as Mutation, but it "
                                  "is defined as Query.")).match(results["wrongKind"]["message"].strip())
    sub = out["value"]["subscription"]
    assert sub["isConvexError"] and sub["data"] == CODE_DATA
    assert matching("Uncaught FooError: " + WITH_CODE + at("queryThrowingConvexErrorSubclass")).match(
        sub["message"].strip()), sub


def _within(fn: Callable[[], Any], timeout: float = 20.0) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # re-raised in the test's thread
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        pytest.fail(f"the Python client did not answer within {timeout}s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_error_texts_and_data_reach_the_python_client(server):
    convex = pytest.importorskip("convex")
    from convex.http_client import ConvexHttpClient
    from convex.values import json_to_convex

    client = convex.ConvexClient(server.url)
    for fn, body, data in CASES:
        kind = "query" if fn.startswith("query") else "mutation" if fn.startswith("mutation") else "action"
        with pytest.raises(Exception) as info:
            _within(lambda: getattr(client, kind)(f"customErrors:{fn}"))
        error = info.value
        if data is None:
            assert not isinstance(error, convex.ConvexError), fn
            message = str(error)
        else:
            assert isinstance(error, convex.ConvexError), fn
            expected = data if data != CODE_DATA else {"message": "Boom boom bop", "code": 123}
            assert error.data == expected, (fn, error.data)
            message = error.message if hasattr(error, "message") else str(error)
        assert matching(body).match(message.strip()), (fn, message)
    # The package's HTTP client: a plain error carries the whole text; a ConvexError its data (its
    # message is derived from the data by that client, as against Convex).
    http_client = ConvexHttpClient(server.url)
    for fn, body, data in CASES:
        kind = "query" if fn.startswith("query") else "mutation" if fn.startswith("mutation") else "action"
        with pytest.raises(Exception) as info:
            getattr(http_client, kind)(f"customErrors:{fn}")
        if data is None:
            assert not isinstance(info.value, convex.ConvexError), fn
            assert matching(body).match(str(info.value).strip()), (fn, str(info.value))
        else:
            # That client hands errorData over as it arrived (Convex's encoded JSON: int64 as $integer).
            assert isinstance(info.value, convex.ConvexError), fn
            expected = data if data != CODE_DATA else {"message": "Boom boom bop", "code": convex.ConvexInt64(123)}
            assert json_to_convex(info.value.data) == expected, (fn, info.value.data)


def test_http_action_errors_answer_with_convex_bodies(server):
    r = httpx.get(f"{server.site_url}/failer_custom")
    assert r.status_code == 500 and r.headers["content-type"] == "application/json"
    body = r.json()
    # Convex's own test: `code` matches this, `data` is the ConvexError's data.
    assert re.match(r"\[Request ID: [a-f0-9]{16}\] Server Error: Uncaught ConvexError: Hello world!", body["code"])
    assert body["data"] == "Hello world!"
    assert re.fullmatch(r"Uncaught ConvexError: Hello world!" + at("failer_custom", file="http_routes.py") + r"\n",
                        body["trace"])
    r = httpx.get(f"{server.url}/http/failer")  # the API origin's /http/ serves the same routes
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"code", "trace"}
    assert re.fullmatch(r"\[Request ID: [a-f0-9]{16}\] Server Error: Uncaught Error: ErrMsg", body["code"])
    assert re.fullmatch(r"Uncaught Error: ErrMsg" + at("failer", file="http_routes.py") + r"\n", body["trace"])


def test_function_not_found_texts_on_the_http_api(server):
    def call(endpoint: str, path: str) -> str:
        r = httpx.post(f"{server.url}/api/{endpoint}", json={"path": path, "args": {}, "format": "convex_encoded_json"},
                       headers={"Authorization": f"Convex {server.admin_key}"})
        assert r.status_code == 200 and r.json()["status"] == "error", r.text
        return r.json()["errorMessage"]

    assert matching(re.escape("Could not find public function for 'nope:missing'.") + "\n").match(
        call("query", "nope:missing"))
    assert matching(re.escape("Could not find public function for 'nope'.") + "\n").match(call("query", "nope"))
    # /api/function (and /api/run) run any function for the admin: Convex words a miss differently there.
    for endpoint, path in (("function", "nope:missing"), ("run/nope/missing", "nope:missing")):
        assert matching(re.escape("Could not find function for 'nope:missing'. Did you forget to run `npx convex "
                                  "dev`?") + "\n").match(call(endpoint, path)), endpoint


# --- logs of failed calls ----------------------------------------------------------------------------


def test_failed_calls_still_return_their_log_lines(run_node, server):
    out = run_node("exact", server.url, "logs")
    assert out["ok"], out
    for client, seen in out["value"].items():
        lines = [text for level, text in seen["logs"] if level == "log"]
        assert "[CONVEX Q(logs:logThenThrow)] [LOG] 'about to fail' 1" in lines, (client, seen["logs"])
        assert "[CONVEX M(logs:logThenThrowMutation)] [LOG] 'mutation log line'" in lines, (client, seen["logs"])
        assert "[CONVEX A(logs:logThenThrowAction)] [LOG] 'action log line'" in lines, (client, seen["logs"])
        assert seen["mutation"]["isConvexError"] and seen["mutation"]["data"] == "mutation failed after logging"
    # The HTTP API carries them in the error answer ...
    for kind, path, line in (("query", "logs:logThenThrow", "[LOG] 'about to fail' 1"),
                             ("mutation", "logs:logThenThrowMutation", "[LOG] 'mutation log line'"),
                             ("action", "logs:logThenThrowAction", "[LOG] 'action log line'")):
        body = httpx.post(f"{server.url}/api/{kind}", json={"path": path, "args": {},
                                                           "format": "convex_encoded_json"}).json()
        assert body["status"] == "error" and body["logLines"] == [line], body
    # ... and the failed mutation wrote nothing.
    events = httpx.post(f"{server.url}/api/query", json={"path": "sched:events", "args": {}}).json()["value"]
    assert "never committed" not in events


def test_the_python_clients_print_the_log_lines_of_failed_calls(server, capfd):
    """The PyPI package's WebSocket client prints a call's logLines on stdout, failed calls too; its
    HTTP client does with set_debug(True)."""
    convex = pytest.importorskip("convex")
    from convex.http_client import ConvexHttpClient

    http_client = ConvexHttpClient(server.url)
    http_client.set_debug(True)
    clients = {"ConvexClient": convex.ConvexClient(server.url), "ConvexHttpClient": http_client}
    calls = (("query", "logs:logThenThrow", "[LOG] 'about to fail' 1", "query failed after logging"),
             ("mutation", "logs:logThenThrowMutation", "[LOG] 'mutation log line'", "mutation failed after logging"),
             ("action", "logs:logThenThrowAction", "[LOG] 'action log line'", "action failed after logging"))
    for name, client in clients.items():
        for kind, path, line, message in calls:
            capfd.readouterr()
            with pytest.raises(Exception) as info:
                _within(lambda: getattr(client, kind)(path))
            assert message in str(info.value) or getattr(info.value, "data", None) == message, (name, path, info.value)
            printed = capfd.readouterr().out.splitlines()
            assert printed == [line], (name, path, printed)


async def test_failed_calls_carry_log_lines_over_the_sync_protocol(server):
    async with connect(server.url.replace("http://", "ws://") + "/api/1.48.0/sync") as ws:
        await ws.send(json.dumps({"type": "Connect", "sessionId": str(uuid.uuid4()), "connectionCount": 0,
                                  "lastCloseReason": "InitialConnect", "clientTs": int(time.time() * 1000)}))
        await ws.send(json.dumps({"type": "ModifyQuerySet", "baseVersion": 0, "newVersion": 1, "modifications": [
            {"type": "Add", "queryId": 0, "udfPath": "logs:logThenThrow", "args": [{}]}]}))
        await ws.send(json.dumps({"type": "Mutation", "requestId": 0, "udfPath": "logs:logThenThrowMutation",
                                  "args": [{}]}))
        await ws.send(json.dumps({"type": "Action", "requestId": 1, "udfPath": "logs:logThenThrowAction",
                                  "args": [{}]}))
        failed: dict[str, Any] = {}
        while len(failed) < 3:
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if message["type"] == "Transition":
                for mod in message["modifications"]:
                    if mod["type"] == "QueryFailed":
                        failed["query"] = mod
            elif message["type"] in ("MutationResponse", "ActionResponse"):
                failed[message["type"]] = message
    assert failed["query"]["logLines"] == ["[LOG] 'about to fail' 1"] and "errorData" not in failed["query"]
    mutation = failed["MutationResponse"]
    assert mutation["success"] is False and mutation["logLines"] == ["[LOG] 'mutation log line'"]
    assert mutation["errorData"] == "mutation failed after logging"
    assert failed["ActionResponse"]["logLines"] == ["[LOG] 'action log line'"]
    assert matching(re.escape("Uncaught Error: query failed after logging") + at("logThenThrow", file="functions/logs.py")
                    + r"\n").match(failed["query"]["errorMessage"])


# --- pagination ---------------------------------------------------------------------------------------


def test_pagination_statuses_and_splits_through_use_paginated_query(run_node, server):
    out = run_node("exact", server.url, "paginate")
    assert out["ok"], out
    value = out["value"]
    grow = value["grow"]
    # A first page of 2 grows to 8 (> 2 * initialNumItems): the hook replaces it by the two halves
    # around the server's splitCursor, then keeps loading after it.
    assert grow["firstPage"] == [0, 1]
    assert grow["afterSplit"] == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1]
    assert grow["afterLoadMore"] == [0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1, 2, 3]
    assert grow["watched"][:3] == [{"hasCursor": False, "hasEndCursor": False, "numItems": 2},
                                   {"hasCursor": False, "hasEndCursor": True, "numItems": 2},
                                   {"hasCursor": True, "hasEndCursor": True, "numItems": 2}]
    limited = value["limited"]
    # maximumRowsRead 4 cuts a page of 10: SplitRequired after the 4 rows read, not done.
    assert limited["direct"] == {"n": [0, 1, 2, 3], "isDone": False, "pageStatus": "SplitRequired",
                                 "hasSplit": True, "continueIsString": True}
    # The hook splits it into bounded halves (which read their whole range) and continues after it:
    # 4 rows per page, no gap, no duplicate, no empty page in between.
    assert limited["firstRound"] == [0, 1, 2, 3]
    assert limited["secondRound"] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert limited["final"] == list(range(10))
    assert limited["watched"][:4] == [{"hasCursor": False, "hasEndCursor": False, "numItems": 10},
                                      {"hasCursor": False, "hasEndCursor": True, "numItems": 10},
                                      {"hasCursor": True, "hasEndCursor": True, "numItems": 10},
                                      {"hasCursor": True, "hasEndCursor": False, "numItems": 10}]
    s = value["statuses"]  # 20 rows, every third kept by the filter
    assert s["plain"] == {"n": [0, 1, 2, 3, 4], "isDone": False, "pageStatus": None, "hasSplit": True}
    # A page that fills exactly does not know the range ended; one asking for more does.
    assert s["exact"]["isDone"] is False and len(s["exact"]["n"]) == 20
    assert s["whole"]["isDone"] is True and len(s["whole"]["n"]) == 20
    # 7 rows read > 3/4 of maximumRowsRead 8: SplitRecommended.
    assert s["soft"] == {"n": list(range(7)), "isDone": False, "pageStatus": "SplitRecommended", "hasSplit": True}
    assert s["cut"] == {"n": [0, 1, 2, 3], "isDone": False, "pageStatus": "SplitRequired", "hasSplit": True}
    # maximumBytesRead is checked before each row: the first one always comes.
    assert s["bytes"] == {"n": [0], "isDone": False, "pageStatus": "SplitRequired", "hasSplit": False}
    assert s["filtered"] == {"n": [0, 3, 6], "isDone": False, "pageStatus": None, "hasSplit": True}
    # Filtered-out rows count as read: 5 rows read hold only 0 and 3.
    assert s["filteredCut"] == {"n": [0, 3], "isDone": False, "pageStatus": "SplitRequired", "hasSplit": True}


# --- JWT rules and texts ---------------------------------------------------------------------------------


def _tokens(now: int) -> dict[str, str]:
    return {
        "good": auth_config.sign_token("ada"),
        "expired": auth_config.sign_token("ada", iat=now - 3600, exp=now - 60),
        "future": auth_config.sign_token("ada", iat=now + 120),
        "noKid": auth_config.sign_token("ada", kid=None),
        "wrongKid": auth_config.sign_token("ada", kid="other"),
        "brokenJwks": auth_config.sign_token("ada", issuer=auth_config.BROKEN_ISSUER),
        "garbage": "not-a-jwt",
    }


REFUSALS = {  # Convex's texts (crates/authentication, biscuit), all with code InvalidAuthHeader
    "expired": re.compile(r"Could not validate token: Token expired (\d+) seconds ago"),
    "future": re.compile(r"Could not validate token: Token will be valid in (\d+) seconds"),
    "noKid": re.compile(re.escape("Could not decode token. JWT may be missing a 'kid' (key ID) header.")),
    "wrongKid": re.compile(re.escape("Could not decode token. The JWT's 'kid' (key ID) header is 'other', does "
                                     "this key match any key in the provider's JWKS?")),
    "brokenJwks": re.compile(re.escape(f"Invalid JWKS response body from '{auth_config.BROKEN_JWKS}'. The response "
                                       "is not valid JSON or doesn't match the expected JWKS format.")),
    "garbage": re.compile(re.escape("Could not parse JWT payload. Check that the token is a valid JWT format with "
                                    "three base64-encoded parts separated by dots.")),
}


def _check_seconds(name: str, text: str, now: int, finished: float) -> None:
    """N counts whole seconds from the server's clock at validation, between signing and now."""
    match = REFUSALS[name].fullmatch(text)
    assert match, (name, text)
    if name == "expired":
        assert 60 <= int(match.group(1)) <= 60 + int(finished) - now, text
    if name == "future":
        assert 120 - (int(finished) - now) <= int(match.group(1)) <= 120, text


def test_jwt_rules_and_texts_over_http_sync_and_http_actions(run_node, server):
    """A provider with a malformed JWKS did not stop this server from starting; its tokens fail at
    validation. Every other case with Convex's code and text."""
    now = int(time.time())
    tokens = _tokens(now)
    out = run_node("exact", server.url, "auth", env={"ENGINE_TOKENS": json.dumps(tokens),
                                                     "ENGINE_SITE_URL": server.site_url})
    finished = time.time()
    assert out["ok"], out
    value = out["value"]
    identity = {"tokenIdentifier": f"{auth_config.ISSUER}|ada", "subject": "ada", "issuer": auth_config.ISSUER}
    assert value["http"]["good"] == {"resolved": identity}
    assert value["httpAction"]["good"] == {"status": 200, "body": {"identity": identity}}
    for name in REFUSALS:
        # ConvexHttpClient: a 401 whose body is Convex's {code, message}.
        body = json.loads(value["http"][name]["message"])
        assert body["code"] == "InvalidAuthHeader", (name, body)
        _check_seconds(name, body["message"], now, finished)
        # HTTP actions run; get_user_identity raises the verification error.
        answer = value["httpAction"][name]
        assert answer["status"] == 500, (name, answer)
        head = re.fullmatch(r"\[Request ID: [a-f0-9]{16}\] Server Error: Uncaught Error: (.*)", answer["body"]["code"])
        assert head, (name, answer)
        _check_seconds(name, head.group(1), now, finished)
    # The sync clients (ConvexClient, ConvexReactClient): a good token confirms; every refused one
    # ends unauthenticated, after the client logged the server's AuthError text for it.
    for client, seen in value["sync"].items():
        assert seen["good"] == {"changes": [True], "who": identity, "reauth": []}, client
        for name in REFUSALS:
            assert seen[name]["changes"] == [False] and seen[name]["who"] is None, (client, name, seen[name])
            assert len(seen[name]["reauth"]) == 1, (client, name, seen[name])
            _check_seconds(name, seen[name]["reauth"][0], now, finished)
    assert set(value["sync"]) == {"ConvexClient", "ConvexReactClient"}


def test_jwt_rules_and_texts_through_the_python_client(server):
    """The PyPI package: its HTTP client gets each refusal as Convex's 401 {code, message}; its
    WebSocket client authenticates with a good token. (A refused token leaves the WebSocket client
    reconnecting with it, as against Convex, which also closes the socket after AuthError: a call
    then never answers, so only the good token is driven through it.)"""
    convex = pytest.importorskip("convex")
    from convex.http_client import ConvexHttpClient

    now = int(time.time())
    tokens = _tokens(now)
    identity = {"tokenIdentifier": f"{auth_config.ISSUER}|ada", "subject": "ada", "issuer": auth_config.ISSUER}
    for name, token in tokens.items():
        client = ConvexHttpClient(server.url)
        client.set_auth(token)
        if name == "good":
            assert client.query("deployment:whoami") == identity
            continue
        with pytest.raises(Exception) as info:
            client.query("deployment:whoami")
        head, _, text = str(info.value).partition(": ")
        assert head == "401 InvalidAuthHeader", (name, str(info.value))
        _check_seconds(name, text, now, time.time())
    ws = convex.ConvexClient(server.url)
    ws.set_auth(tokens["good"])
    assert _within(lambda: ws.query("deployment:whoami")) == identity


async def test_auth_errors_over_the_sync_protocol(server):
    now = int(time.time())
    tokens = _tokens(now)
    for name in REFUSALS:
        async with connect(server.url.replace("http://", "ws://") + "/api/sync") as ws:
            await ws.send(json.dumps({"type": "Connect", "sessionId": str(uuid.uuid4()), "connectionCount": 0,
                                      "lastCloseReason": None, "clientTs": 0}))
            await ws.send(json.dumps({"type": "Authenticate", "tokenType": "User", "value": tokens[name],
                                      "baseVersion": 0}))
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert message["type"] == "AuthError" and message["authUpdateAttempted"] is True, (name, message)
        assert message["baseVersion"] == 0, (name, message)
        _check_seconds(name, message["error"], now, time.time())


# --- the deployment's own URLs ------------------------------------------------------------------------


def test_functions_see_the_deployment_urls(server):
    for kind, path in (("query", "deployment:urls"), ("action", "deployment:urlsInAction")):
        r = httpx.post(f"{server.url}/api/{kind}", json={"path": path, "args": {}})
        assert r.json() == {"status": "success", "value": {"cloud": server.url, "site": server.site_url}}


def test_a_self_cancelling_scheduled_function_ends_canceled_as_a_client_sees_it(run_node, server_factory):
    server = server_factory(APP)  # its own: the jobs look for themselves among every job
    out = run_node("exact", server.url, "scheduler")
    assert out["ok"], out
    value = out["value"]
    for which, name in (("mutation", "sched.js:selfCancellingMutation"), ("action", "sched.js:selfCancellingAction")):
        job = value[which]["job"]
        assert value[which]["states"][-1] == "canceled" and "success" not in value[which]["states"], value[which]
        assert set(job) == {"_id", "_creationTime", "name", "args", "scheduledTime", "completedTime", "state"}
        assert job["name"] == name and job["args"] == [{}] and job["state"] == {"kind": "canceled"}
        assert job["completedTime"] >= job["scheduledTime"]
    assert sorted(value["events"]) == ["action canceled itself", "mutation saw inProgress"]
    assert value["urls"] == {"cloud": server.url, "site": server.site_url}


def test_the_python_client_sees_the_deployment_urls(server):
    convex = pytest.importorskip("convex")
    client = convex.ConvexClient(server.url)
    assert _within(lambda: client.query("deployment:urls")) == {"cloud": server.url, "site": server.site_url}
    assert _within(lambda: client.action("deployment:urlsInAction")) == {"cloud": server.url, "site": server.site_url}


def test_urls_follow_the_configured_origins(server_factory):
    server = server_factory(APP, extra_env={"CONVEX_CLOUD_ORIGIN": "https://api.nova.example",
                                            "CONVEX_SITE_ORIGIN": "https://site.nova.example"})
    r = httpx.post(f"{server.url}/api/query", json={"path": "deployment:urls", "args": {}})
    assert r.json()["value"] == {"cloud": "https://api.nova.example", "site": "https://site.nova.example"}
    upload = httpx.post(f"{server.url}/api/mutation", json={"path": "files:generateUploadUrl", "args": {}}).json()
    assert upload["value"].startswith("https://api.nova.example/api/storage/upload?token=")


# --- file storage, end to end ----------------------------------------------------------------------------


def test_file_storage_end_to_end_with_the_npm_client(run_node, server):
    out = run_node("exact", server.url, "storage")
    assert out["ok"], out
    v = out["value"]
    assert (v["uploadUrlOrigin"], v["uploadPath"]) == (server.url, "/api/storage/upload")
    assert v["postStatus"] == 200 and set(v["postBody"]) == {"storageId"} and v["storageIdType"] == "string"
    storage_id = v["postBody"]["storageId"]
    assert re.fullmatch(re.escape(server.url) + r"/api/storage/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                        r"[0-9a-f]{12}", v["fileUrl"])
    assert v["getStatus"] == 200 and v["same"] and v["contentType"] == "image/png"
    assert v["contentLength"] == str(v["size"]) and v["cacheControl"] == "private, max-age=2592000"
    row = v["row"]
    assert set(row) == {"_id", "_creationTime", "sha256", "size", "contentType"}
    assert row["_id"] == storage_id and row["size"] == v["size"] and row["contentType"] == "image/png"
    assert v["digest"] == f"sha-256={row['sha256']}"
    assert v["metadata"] == {"storageId": v["fileUrl"].rsplit("/", 1)[1], "size": v["size"],
                             "contentType": "image/png",
                             "sha256": __import__("base64").b64decode(row["sha256"]).hex()}
    assert v["rangedStatus"] == 206 and v["contentRange"] == f"bytes 10-19/{v['size']}"
    assert v["rangedBytes"] == v["expectedRange"]
    # Deleting: the live URL turns null, the file answers 404, a second delete fails.
    assert v["urls"] == [v["fileUrl"], None]
    assert v["afterDeleteStatus"] == 404 and v["afterDeleteBody"]["code"] == "FileNotFound"
    assert matching(re.escape(f"Uncaught Error: storage id {storage_id} not found")
                    + at("remove", awaiting=True, file="functions/files.py")).match(
        v["deleteAgain"]["message"].strip()), v["deleteAgain"]
    assert v["inAction"]["roundTrip"] == "hello from an action"
    assert v["inAction"]["url"].startswith(server.url + "/api/storage/")
    assert v["badToken"] == {"status": 401, "body": {"code": "StorageTokenInvalid",
                                                     "message": "Couldn't decode the StoreFileAuthorization token"}}
    # The deleted file's bytes are gone from disk: only the action's file is left under its UUID.
    folder = Path(str(server.db_path) + ".storage")
    left = {p.name for p in folder.glob("*/*") if not p.parent.name.startswith(".")}
    assert v["fileUrl"].rsplit("/", 1)[1] not in left
    assert v["inAction"]["url"].rsplit("/", 1)[1] in left


def test_store_and_get_in_an_action_with_the_python_client(server):
    convex = pytest.importorskip("convex")
    client = convex.ConvexClient(server.url)
    result = _within(lambda: client.action("files:storeText", {"text": "ünïcode ✓", "contentType": "text/plain"}))
    assert result["roundTrip"] == "ünïcode ✓"
    row = _within(lambda: client.query("files:row", {"storageId": result["storageId"]}))
    assert row["contentType"] == "text/plain" and row["size"] == float(len("ünïcode ✓".encode()))
    data = _within(lambda: client.action("files:read", {"storageId": result["storageId"]}))
    assert bytes(data) == "ünïcode ✓".encode()
    # An HTTP action stores the raw request body, and serves it back.
    r = httpx.post(f"{server.site_url}/upload", content=b"\x00\x01binary", headers={"content-type": "application/x-raw"})
    stored = r.json()["storageId"]
    assert httpx.get(f"{server.site_url}/download", params={"id": stored}).content == b"\x00\x01binary"
