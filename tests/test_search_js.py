"""The official npm client (convex 1.48, `ConvexClient`) subscribed to search queries of a real server
process (tests/apps/search), on SQLite and on PostgreSQL, driven by tests/js/search_client.mjs:
matching inserts arrive in relevance order, unrelated writes re-run nothing, a filter-field change
and an edit take a message out, and a paginated search subscription stays equal to the one-shot
search under writes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import TEST_ADMIN_KEY, ServerProcess, _live_servers, app_path

APP = Path(__file__).resolve().parent / "apps" / "search"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def out(request: pytest.FixtureRequest, shared_server_factory: Any, run_node: Any,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The client's run against a server on SQLite, and against one on PostgreSQL (pgvector)."""
    server: Any = None
    if request.param == "postgres":
        pg = request.getfixturevalue("pg_server")
        server = ServerProcess(app_path(APP), pg.create_database(),  # type: ignore[arg-type]
                               tmp_path_factory.mktemp("search-pg") / "server.log", admin_key=TEST_ADMIN_KEY).start()
    try:
        url = server.url if server is not None else shared_server_factory(APP).url
        result = run_node("search_client", url, env={"ENGINE_ADMIN_KEY": TEST_ADMIN_KEY}, timeout=120)
        assert result["ok"], result.get("error")
        yield result["value"]
    finally:
        if server is not None:
            server.stop()
            if server in _live_servers:
                _live_servers.remove(server)


def test_matching_inserts_arrive_in_relevance_order(out: dict[str, Any]) -> None:
    live = out["live"]
    assert live["initial"] == []
    assert live["afterFirst"] == ["please deploy the service before the weekend"]
    assert live["inRelevanceOrder"] == ["deploy deploy", "please deploy the service before the weekend"]
    assert live["withCompletion"][0:1] == ["deploy deploy"] and "deploying soon" in live["withCompletion"]


def test_unrelated_writes_re_run_nothing(out: dict[str, Any]) -> None:
    live = out["live"]
    # A message without the word, and one with it in another channel: no re-run, no update.
    assert live["reRunsForUnrelatedWrites"] == 0 and live["updatesForUnrelatedWrites"] == 0
    assert live["reRunsForMatch"] >= 1  # and a matching write does re-run it


def test_a_filter_field_change_and_an_edit_take_a_message_out(out: dict[str, Any]) -> None:
    live = out["live"]
    assert "deploy deploy" not in live["afterFilterChange"] and "deploying soon" in live["afterFilterChange"]
    assert live["afterEdit"] == ["deploying soon"]


def test_a_paginated_search_subscription_stays_gapless(out: dict[str, Any]) -> None:
    pages = out["paginated"]
    assert pages["problems"] == []
    assert [c["ok"] for c in pages["comparisons"]] == [True, True, True], pages["comparisons"]
    assert pages["pages"] == 8
