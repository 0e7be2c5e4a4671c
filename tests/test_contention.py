"""Contended mutations always commit (issue 9, fault 2): many official clients incrementing one
counter at once end exactly at the number of increments, and none sees an OCC failure.

`counters:increment` never suspends, so it runs inside one event-loop step on the latest sequenced
state and cannot conflict; `limits:incrementYielding` hands the loop to others between its read and
its write, so concurrent runs really conflict and must be re-run (after two conflicts, with the
sequencer to themselves) until they commit.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest

APP = Path(__file__).resolve().parent / "apps" / "sync"

pytestmark = pytest.mark.slow


def _increments(run_node, server, transport: str, fn: str, clients: int, per_client: int) -> dict:
    name = f"hot-{uuid.uuid4().hex[:8]}"
    out = run_node("contention", f'{{"url": "{server.url}", "transport": "{transport}", "clients": {clients}, '
                                 f'"perClient": {per_client}, "fn": "{fn}", "name": "{name}"}}', timeout=240)
    assert out["failed"] == 0, out["errors"]
    return out


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_ten_thousand_increments_from_fifty_npm_clients_all_apply(shared_server_factory, run_node, transport):
    server = shared_server_factory(APP)
    out = _increments(run_node, server, transport, "counters:increment", 50, 200)
    assert (out["ok"], out["final"]) == (10_000, 10_000.0)


def _occ_retries(server, fn: str) -> float:
    text = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Convex {server.admin_key}"}).text
    return sum(float(m.group(1)) for m in re.finditer(
        r'^convex_occ_retries_total\{[^}]*function="%s"[^}]*\} (\S+)$' % re.escape(fn), text, re.M))


@pytest.mark.parametrize("transport", ["ws", "http"])
def test_conflicting_increments_that_suspend_mid_transaction_all_apply(shared_server_factory, run_node, transport):
    server = shared_server_factory(APP)
    before = _occ_retries(server, "limits:incrementYielding")
    out = _increments(run_node, server, transport, "limits:incrementYielding", 50, 20)
    assert (out["ok"], out["final"]) == (1_000, 1_000.0)
    assert _occ_retries(server, "limits:incrementYielding") > before  # they did conflict, and were re-run
