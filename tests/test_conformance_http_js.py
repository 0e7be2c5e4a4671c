"""The official JS `ConvexHttpClient` (npm convex 1.48.0) against a real engine serving tests/apps/basic.

tests/js/http_conformance.mjs runs every scenario once and prints {scenario: outcome}; each test here
asserts one behaviour of that outcome. Expected values follow the protocol (convex-protocol.md §3, §4,
§6, §8, §9), rendered by the script's `show`: {"$bigint": "5"} is a JS BigInt, {"$arraybuffer": b64}
an ArrayBuffer, {"$number": "NaN"} a special float; plain JSON numbers are JS numbers.
"""

from __future__ import annotations

import base64

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def results(shared_server_factory, run_node) -> dict:
    server = shared_server_factory("basic")
    return run_node("http_conformance", server.url, server.admin_key, timeout=120)


def ok(results: dict, scenario: str):
    outcome = results[scenario]
    assert outcome["ok"], f"{scenario} failed: {outcome['error']}"
    # Every call the official client makes must be answered with 200 when the function succeeds.
    assert outcome["statuses"] and all(s == 200 for s in outcome["statuses"]), outcome["statuses"]
    return outcome["value"]


def failed(results: dict, scenario: str) -> dict:
    outcome = results[scenario]
    assert not outcome["ok"], f"{scenario} unexpectedly succeeded with {outcome['value']!r}"
    # A function's own failure is HTTP 200 with status "error" (§6), never a transport error.
    assert outcome["statuses"] == [200] * len(outcome["statuses"]) and outcome["statuses"], outcome
    return outcome["error"]


def b64(*xs: int) -> str:
    return base64.b64encode(bytes(xs)).decode()


def test_query_returns_null_for_missing_row(results):
    assert ok(results, "query_missing_counter") is None


def test_mutation_result_and_read_after_write(results):
    assert ok(results, "mutation_then_query") == {"first": 1, "second": 3.5, "read": 3.5}


def test_queued_mutations_apply_in_order(results):
    assert ok(results, "queued_mutations_in_order") == [1, 2, 3, 4, 5]


def test_action_calls_run_query(results):
    assert ok(results, "action_run_query") == {
        "s": "x",
        "n": {"$bigint": "5"},
        "b": {"$arraybuffer": b64(7, 8)},
        "f": 1.5,
    }


def test_int64_round_trip_as_bigint(results):
    assert ok(results, "int64_round_trip") == {
        "one": {"$bigint": "1"},
        "neg": {"$bigint": "-5"},
        "zero": {"$bigint": "0"},
        "big": {"$bigint": str(2**62)},
        "max": {"$bigint": str(2**63 - 1)},
        "min": {"$bigint": str(-(2**63))},
    }


def test_bytes_round_trip_as_arraybuffer(results):
    assert ok(results, "bytes_round_trip") == {"b": {"$arraybuffer": b64(0, 1, 2, 254, 255)}, "empty": {"$arraybuffer": ""}}


def test_float_round_trip_including_specials(results):
    assert ok(results, "float_round_trip") == {
        "whole": 5,
        "frac": 0.1,
        "neg": -2.5,
        "nan": {"$number": "NaN"},
        "inf": {"$number": "Infinity"},
        "ninf": {"$number": "-Infinity"},
        "negzero": {"$number": "-0"},
        "huge": 1e300,
    }


def test_nested_values_round_trip(results):
    assert ok(results, "nested_values_round_trip") == {
        "arr": [1, "two", None, True, [{"$bigint": "3"}], {"k": {"$arraybuffer": b64(9)}}],
        "obj": {"a": {"b": {"c": "deep"}}, "with space": 1},
        "empty_obj": {},
        "empty_arr": [],
    }


def test_omitted_args_arrive_as_empty_object(results):
    assert ok(results, "no_args_round_trip") == {}


def test_documents_carry_system_fields_int64_and_bytes(results):
    value = ok(results, "documents_with_int64_and_bytes")
    assert isinstance(value["id"], str) and value["id"]
    [doc] = value["docs"]
    creation_time = doc.pop("_creationTime")
    assert isinstance(creation_time, (int, float)) and not isinstance(creation_time, bool)
    assert creation_time > 1.6e12  # milliseconds since the epoch
    assert doc == {
        "_id": value["id"],
        "author": doc["author"],
        "body": "hi",
        "n": {"$bigint": "42"},
        "blob": {"$arraybuffer": b64(1, 2, 3)},
    }
    assert doc["author"].endswith("-docs")


def test_pagination_walks_pages_until_done(results):
    pages = ok(results, "pagination")
    assert [p["bodies"] for p in pages] == [["m6", "m5", "m4"], ["m3", "m2", "m1"], ["m0"]]
    assert [p["isDone"] for p in pages] == [False, False, True]
    # continueCursor must be a string on every page, the last one included (§8).
    assert {p["continueCursorType"] for p in pages} == {"string"}


@pytest.mark.parametrize("scenario", ["convex_error_query", "convex_error_mutation", "convex_error_action"])
def test_convex_error_data_reaches_client(results, scenario):
    error = failed(results, scenario)
    assert error["isConvexError"], error
    assert error["data"] == {"code": "BAD", "n": {"$bigint": "1"}}


def test_convex_error_with_string_data(results):
    error = failed(results, "convex_error_string_data")
    assert error["isConvexError"], error
    assert error["data"] == "just a string"


@pytest.mark.parametrize(
    ("scenario", "text"),
    [("plain_error_query", "plain query boom"), ("plain_error_mutation", "plain mutation boom")],
)
def test_plain_exception_is_error_without_data(results, scenario, text):
    error = failed(results, scenario)
    assert not error["isConvexError"], error
    assert text in error["message"]


def test_missing_function_is_a_function_error(results):
    error = failed(results, "missing_function")
    assert not error["isConvexError"]
    assert "Could not find public function for 'nope:nothing'" in error["message"]


def test_argument_validation_error(results):
    error = failed(results, "argument_validation_error")
    assert not error["isConvexError"]
    assert "ArgumentValidationError" in error["message"]


def test_internal_function_refused_without_admin_key(results):
    error = failed(results, "internal_refused_without_admin")
    assert not error["isConvexError"]
    assert "Could not find public function for 'counters:reset'" in error["message"]


def test_internal_function_allowed_with_admin_key(results):
    assert ok(results, "internal_allowed_with_admin") == {"reset": None, "after": 0}


def test_admin_function_endpoint_runs_any_function(results):
    assert ok(results, "admin_function_endpoint") == {"via": "function"}


@pytest.mark.parametrize("scenario", ["default_export_by_module", "default_export_explicit", "default_export_any_api"])
def test_default_export(results, scenario):
    assert ok(results, scenario) == "default export"


def test_nested_module_via_any_api(results):
    assert ok(results, "nested_any_api") == "nested/deep:fn"


def test_consistent_query_uses_query_ts_and_query_at_ts(results):
    assert ok(results, "consistent_query") == {"first": 3, "again": 3, "created_later": None, "latest": 7}


def test_log_lines_on_the_wire_and_in_the_client_logger(results):
    value = ok(results, "log_lines")
    assert value["value"] is None
    assert value["wireLogLines"] == ["[LOG] 'hello' 2"]
    # The client parsed the line (an unparseable one is reported at level "error").
    assert value["logCalls"] == [
        {"level": "log", "args": ["%c[CONVEX Q(echo:logHello)] [LOG]", "color:rgb(0, 145, 255)", "'hello' 2"]}
    ]
