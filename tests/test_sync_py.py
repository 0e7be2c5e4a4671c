"""Conformance with the official Python client (PyPI `convex` 0.8.1, which speaks the sync protocol
over /api/sync through the Rust crate): queries, mutations, actions, subscriptions (sync and async
iteration), ConvexError with data, plain errors, set_auth / clear_auth / set_admin_auth.

The client's calls block and retry forever, so each one runs on a daemon thread the test joins with a
timeout: a protocol mistake fails the test instead of hanging the suite.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

convex = pytest.importorskip("convex")

APP = Path(__file__).resolve().parent / "apps" / "sync"
TIMEOUT = 20.0
_spec = importlib.util.spec_from_file_location("sync_app_auth_config_py", APP / "auth_config.py")
auth_config = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
_spec.loader.exec_module(auth_config)  # type: ignore[union-attr]

pytestmark = pytest.mark.slow


def within(fn: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    """Run a blocking client call on a daemon thread; its result, or its exception re-raised."""
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


def next_value(sub: Any, expected: Any, timeout: float = TIMEOUT) -> Any:
    """Read `sub` until it yields `expected`. The Rust client re-yields a subscription's current value
    on every Transition (e.g. the one after each mutation), so equal values may repeat before it."""
    def read() -> Any:
        while True:
            value = next(sub)
            if value == expected:
                return value

    return within(read, timeout)


def unique() -> str:
    return f"py-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def server(shared_server_factory: Any) -> Any:
    return shared_server_factory(APP)


@pytest.fixture
def client(server: Any) -> Any:
    return convex.ConvexClient(server.url)


def test_query_mutation_action_round_trip(server, client):
    name = unique()
    assert within(lambda: client.query("counters:get", {"name": name})) is None
    assert within(lambda: client.mutation("counters:increment", {"name": name})) == 1.0
    assert within(lambda: client.mutation("counters:increment", {"name": name, "by": 2.5})) == 3.5
    assert within(lambda: client.query("counters:get", {"name": name})) == 3.5
    assert within(lambda: client.action("actions:incrementTwice", {"name": name})) == 5.5
    assert within(lambda: client.action("actions:echo", {"s": "x", "n": 2})) == {"s": "x", "n": 2.0}
    # Mutations from one client run in order.
    stream = unique()
    for tag in "abc":
        within(lambda tag=tag: client.mutation("events:append", {"stream": stream, "tag": tag}))
    assert within(lambda: client.query("events:list", {"stream": stream})) == ["a", "b", "c"]


def test_a_subscription_sees_another_clients_mutations(server, client):
    name = unique()
    other = convex.ConvexClient(server.url)
    sub = within(lambda: client.subscribe("counters:get", {"name": name}))
    assert within(lambda: next(sub)) is None
    assert within(lambda: other.mutation("counters:increment", {"name": name})) == 1.0
    next_value(sub, 1.0)
    within(lambda: other.mutation("counters:set", {"name": name, "value": 7.0}))
    next_value(sub, 7.0)
    sub.unsubscribe()


async def test_async_iteration_of_a_subscription(server, client):
    name = unique()
    other = convex.ConvexClient(server.url)
    sub = client.subscribe("items:all", {"list": name})
    assert await asyncio.wait_for(sub.__anext__(), TIMEOUT) == []
    await asyncio.to_thread(within, lambda: other.mutation("items:add", {"list": name, "rank": 2.0}))
    rows = await asyncio.wait_for(sub.__anext__(), TIMEOUT)
    assert [row["rank"] for row in rows] == [2.0]
    sub.unsubscribe()


def test_convex_errors_carry_their_data(server, client):
    for call in (lambda: client.query("errors:convexQuery"), lambda: client.mutation("errors:convexMutation"),
                 lambda: client.action("errors:convexAction")):
        with pytest.raises(convex.ConvexError) as info:
            within(call)
        assert info.value.data == {"code": "BAD", "n": 1}
    with pytest.raises(convex.ConvexError) as info:
        within(lambda: client.query("errors:convexString"))
    assert info.value.data == "just a string"
    for call, text in ((lambda: client.query("errors:plainQuery"), "plain query boom"),
                       (lambda: client.mutation("errors:plainMutation"), "plain mutation boom"),
                       (lambda: client.query("nope:missing"), "Could not find public function")):
        with pytest.raises(Exception) as info:
            within(call)
        assert not isinstance(info.value, convex.ConvexError) and text in str(info.value)


def test_a_subscription_reports_a_convex_error_and_recovers(server, client):
    name = unique()
    within(lambda: client.mutation("counters:set", {"name": name, "value": -1.0}))
    sub = within(lambda: client.subscribe("errors:maybe", {"name": name}))
    with pytest.raises(convex.ConvexError) as info:
        within(lambda: next(sub))
    assert info.value.data == {"negative": -1.0}
    within(lambda: client.mutation("counters:set", {"name": name, "value": 4.0}))
    next_value(sub, 4.0)
    sub.unsubscribe()


def test_set_auth_clear_auth_and_admin_auth(server, client):
    name = unique()
    assert within(lambda: client.query("whoami:whoami")) is None
    sub = within(lambda: client.subscribe("whoami:whoami"))
    assert within(lambda: next(sub)) is None
    client.set_auth(auth_config.sign_token("grace", name="Grace"))
    expected = {"tokenIdentifier": f"{auth_config.ISSUER}|grace", "subject": "grace",
                "issuer": auth_config.ISSUER, "name": "Grace"}
    # The live subscription re-runs with the new identity.
    next_value(sub, expected)
    assert within(lambda: client.query("whoami:whoami")) == expected
    assert within(lambda: client.action("whoami:whoamiAction")) == expected
    client.clear_auth()
    next_value(sub, None)
    assert within(lambda: client.query("whoami:whoami")) is None
    sub.unsubscribe()
    # Internal functions are only for the admin.
    with pytest.raises(Exception, match="Could not find public function"):
        within(lambda: client.query("counters:getInternal", {"name": name}))
    admin = convex.ConvexClient(server.url)
    admin.set_admin_auth(server.admin_key)
    within(lambda: admin.mutation("counters:increment", {"name": name}))
    assert within(lambda: admin.query("counters:getInternal", {"name": name})) == 1.0


def test_a_paginated_query(server, client):
    name = unique()
    within(lambda: client.mutation("items:addMany", {"list": name, "ranks": [3.0, 1.0, 2.0]}))
    page = within(lambda: client.query("items:page", {"list": name,
                                                      "paginationOpts": {"numItems": 2, "cursor": None}}))
    assert [r["rank"] for r in page["page"]] == [1.0, 2.0] and page["isDone"] is False
    rest = within(lambda: client.query("items:page", {
        "list": name, "paginationOpts": {"numItems": 2, "cursor": page["continueCursor"]}}))
    assert [r["rank"] for r in rest["page"]] == [3.0] and rest["isDone"] is True
