"""The legacy Python HTTP client (`convex.http_client.ConvexHttpClient`, PyPI convex 0.8.1) against a
real engine serving tests/apps/basic.

This client differs from the JS one in ways the server must absorb (convex-protocol.md §3, §6):
- it posts `args` as the bare encoded object, not a one-element array;
- it sends Python ints as float64 (`3` -> `3.0`), int64 only as `ConvexInt64`;
- its decoder rejects JSON integers, so every float64 the server returns must be written as a JSON
  float (`5.0`, not `5`);
- it calls `raise_for_status` and then reads `code`/`message`, so function failures must be HTTP 200
  and other failures must carry a `{"code","message"}` body;
- it hands `errorData` to `ConvexError.data` without decoding it.
"""

from __future__ import annotations

import math
import uuid

import pytest
from convex import ConvexError, ConvexInt64
from convex.http_client import ConvexExecutionError, ConvexHttpClient

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(shared_server_factory):
    return shared_server_factory("basic")


@pytest.fixture
def client(server) -> ConvexHttpClient:
    return ConvexHttpClient(server.url)


@pytest.fixture
def admin_client(server) -> ConvexHttpClient:
    c = ConvexHttpClient(server.url)
    c.set_admin_auth(server.admin_key)
    return c


def unique(tag: str) -> str:
    return f"py-{tag}-{uuid.uuid4().hex[:12]}"


def test_query_returns_none_for_missing_row(client):
    assert client.query("counters:get", {"name": unique("missing")}) is None


def test_mutation_result_and_read_after_write(client):
    name = unique("counter")
    first = client.mutation("counters:increment", {"name": name})
    second = client.mutation("counters:increment", {"name": name, "by": 2.5})
    assert (first, second) == (1.0, 3.5)
    assert client.query("counters:get", {"name": name}) == 3.5


def test_whole_floats_come_back_as_floats(client):
    # Python int 5 travels as float64 5.0 and must return as a JSON float the client can decode.
    value = client.query("echo:echo", {"whole": 5, "zero": 0.0, "big": 2.0**60})
    assert value == {"whole": 5.0, "zero": 0.0, "big": 2.0**60}
    assert all(type(x) is float for x in value.values())


def test_int64_round_trip(client):
    args = {
        "one": ConvexInt64(1),
        "neg": ConvexInt64(-5),
        "max": ConvexInt64(2**63 - 1),
        "min": ConvexInt64(-(2**63)),
    }
    assert client.query("echo:echo", args) == args


def test_bytes_round_trip(client):
    args = {"b": bytes([0, 1, 2, 254, 255]), "empty": b""}
    assert client.query("echo:echo", args) == args


def test_special_floats_round_trip(client):
    value = client.query("echo:echo", {"nan": math.nan, "inf": math.inf, "ninf": -math.inf, "negzero": -0.0})
    assert math.isnan(value["nan"])
    assert value["inf"] == math.inf and value["ninf"] == -math.inf
    assert value["negzero"] == 0.0 and math.copysign(1.0, value["negzero"]) == -1.0


def test_nested_values_round_trip(client):
    args = {
        "arr": [1.5, "two", None, True, [ConvexInt64(3)], {"k": b"\x09"}],
        "obj": {"a": {"b": {"c": "deep"}}, "with space": 1.0},
        "empty_obj": {},
        "empty_arr": [],
    }
    assert client.query("echo:echo", args) == args


def test_omitted_args_arrive_as_empty_object(client):
    assert client.query("echo:echo") == {}


def test_action_calls_run_query(client):
    args = {"s": "x", "n": ConvexInt64(5), "b": b"\x07\x08"}
    assert client.action("echo:echoAction", args) == args


def test_documents_carry_system_fields_int64_and_bytes(client):
    author = unique("docs")
    doc_id = client.mutation("messages:send", {"author": author, "body": "hi", "n": ConvexInt64(42), "blob": b"\x01\x02\x03"})
    assert isinstance(doc_id, str) and doc_id
    [doc] = client.query("messages:list", {"author": author})
    creation_time = doc.pop("_creationTime")
    assert type(creation_time) is float and creation_time > 1.6e12
    assert doc == {"_id": doc_id, "author": author, "body": "hi", "n": ConvexInt64(42), "blob": b"\x01\x02\x03"}


def test_pagination_walks_pages_until_done(client):
    author = unique("pages")
    for i in range(7):
        client.mutation("messages:send", {"author": author, "body": f"m{i}"})
    pages, cursor = [], None
    for _ in range(20):
        result = client.query("messages:listPaginated", {"author": author, "paginationOpts": {"numItems": 3, "cursor": cursor}})
        assert isinstance(result["continueCursor"], str)
        pages.append(([d["body"] for d in result["page"]], result["isDone"]))
        if result["isDone"]:
            break
        cursor = result["continueCursor"]
    assert pages == [(["m6", "m5", "m4"], False), (["m3", "m2", "m1"], False), (["m0"], True)]


@pytest.mark.parametrize(
    ("kind", "path"),
    [("query", "errors:convexQuery"), ("mutation", "errors:convexMutation"), ("action", "errors:convexAction")],
)
def test_convex_error_data_reaches_client(client, kind, path):
    with pytest.raises(ConvexError) as info:
        getattr(client, kind)(path)
    # This client passes errorData through undecoded: the wire form of {"code": "BAD", "n": int64 1}.
    assert info.value.data == {"code": "BAD", "n": {"$integer": "AQAAAAAAAAA="}}


def test_convex_error_with_string_data(client):
    with pytest.raises(ConvexError) as info:
        client.query("errors:convexString")
    assert info.value.data == "just a string"
    assert str(info.value) == "just a string"


@pytest.mark.parametrize(
    ("kind", "path", "text"),
    [("query", "errors:plainQuery", "plain query boom"), ("mutation", "errors:plainMutation", "plain mutation boom")],
)
def test_plain_exception_is_execution_error(client, kind, path, text):
    with pytest.raises(ConvexExecutionError, match=text):
        getattr(client, kind)(path)


def test_missing_function_is_execution_error(client):
    with pytest.raises(ConvexExecutionError, match="Could not find public function for 'nope:nothing'"):
        client.query("nope:nothing")


def test_argument_validation_error(client):
    with pytest.raises(ConvexExecutionError, match="ArgumentValidationError"):
        client.mutation("counters:increment", {"name": 5})


def test_internal_function_refused_without_admin_key(client):
    with pytest.raises(ConvexExecutionError, match="Could not find public function for 'counters:reset'"):
        client.mutation("counters:reset", {"name": unique("internal")})


def test_internal_function_allowed_with_admin_key(client, admin_client):
    name = unique("internal")
    client.mutation("counters:increment", {"name": name, "by": 4.0})
    assert admin_client.mutation("counters:reset", {"name": name}) is None
    assert client.query("counters:get", {"name": name}) == 0.0


def test_wrong_admin_key_is_rejected_with_code_and_message(server):
    c = ConvexHttpClient(server.url)
    c.set_admin_auth("nova-test|not-the-key")
    # A non-2xx reply must carry {"code", "message"}: the client formats "<status> <code>: <message>".
    with pytest.raises(Exception, match=r"^40[13] \S+: .+") as info:
        c.mutation("counters:reset", {"name": unique("badkey")})
    assert not isinstance(info.value, (ConvexError, ConvexExecutionError))


def test_malformed_function_path_is_rejected_with_code_and_message(client):
    with pytest.raises(Exception, match=r"^400 \S+: .+") as info:
        client.query("echo:not a name")
    assert not isinstance(info.value, (ConvexError, ConvexExecutionError))


@pytest.mark.parametrize("path", ["defaults", "defaults:default"])
def test_default_export(client, path):
    assert client.query(path) == "default export"


def test_nested_module_path(client):
    assert client.query("nested/deep:fn") == "nested/deep:fn"


def test_log_lines_printed_in_debug_mode(client, capsys):
    client.set_debug(True)
    assert client.query("echo:logHello") is None
    assert capsys.readouterr().out == "[LOG] 'hello' 2\n"
