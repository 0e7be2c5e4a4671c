"""Concurrent mutations are serializable: whatever the interleaving, the outcome equals running the
committed mutations one after another in commit-timestamp order.

Each example opens a fresh deployment, creates a few int64 accounts, and launches transfers and
balance reads together with asyncio.gather. Transfers take a `pauses` argument: that many
`await asyncio.sleep(0)` between their reads and writes, which hands the loop to the other
mutations mid-transaction (scheduling, not waiting), so hypothesis explores real interleavings.

The check replays a model serially: a transfer that wrote sits at its commit ts; a transfer that
wrote nothing (insufficient funds) and a query sit at their snapshot ts, after the commit with that
ts. Every observed return value must match the model at that point, and so must the final state.

On SQLite, and on PostgreSQL with one node and with two (the operations alternate between the
nodes: commit timestamps come from the database's clock, so one serial order spans both).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.deployment import Deployment, Outcome

from test_core_support import CORE_APP, NOBODY


@dataclass(frozen=True)
class Transfer:
    src: int
    dst: int
    amount: int
    pauses: int


@dataclass(frozen=True)
class Read:
    pass


N_ACCOUNTS = 3


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    src = draw(st.integers(0, N_ACCOUNTS - 1))
    dst = draw(st.integers(0, N_ACCOUNTS - 2))
    return Transfer(src, dst if dst < src else dst + 1, draw(st.integers(1, 60)), draw(st.integers(0, 3)))


operations = st.lists(st.one_of(transfers(), transfers(), st.just(Read())), min_size=1, max_size=24)


async def scenario(initial: list[int], ops: list[Transfer | Read], db: str = ":memory:", nodes: int = 1) -> None:
    dep = await Deployment.open(CORE_APP, db)
    others = [await Deployment.open(CORE_APP, db) for _ in range(nodes - 1)]
    deps = [dep, *others]
    try:
        owners = [f"acct{i}" for i in range(N_ACCOUNTS)]
        ids = []
        for owner, balance in zip(owners, initial):
            opened = await dep.call("accounts:open", {"owner": owner, "balance": balance}, kind="mutation", auth=NOBODY)
            ids.append(opened.value)
        start_ts = dep.latest_ts()

        def launch(i: int, op: Transfer | Read):
            node = deps[i % len(deps)]
            if isinstance(op, Read):
                return node.call("accounts:balances", {}, kind="query", auth=NOBODY)
            args = {"src": ids[op.src], "dst": ids[op.dst], "amount": op.amount, "pauses": op.pauses}
            return node.call("accounts:transfer", args, kind="mutation", auth=NOBODY)

        outcomes: list[Outcome] = await asyncio.gather(*(launch(i, op) for i, op in enumerate(ops)))
        for op, outcome in zip(ops, outcomes):
            assert outcome.success, f"{op} failed: {outcome.error_message}"
            assert outcome.ts is not None and outcome.ts >= start_ts

        # Commit timestamps of the transfers that wrote are distinct (one commit each).
        wrote = [o.ts for op, o in zip(ops, outcomes) if isinstance(op, Transfer) and o.value is True]
        assert len(set(wrote)) == len(wrote)

        def position(pair: tuple[Transfer | Read, Outcome]) -> tuple[int, int]:
            op, outcome = pair
            writes = isinstance(op, Transfer) and outcome.value is True
            return outcome.ts, 0 if writes else 1  # snapshot readers come after the commit at their ts

        state = dict(zip(owners, initial))
        for op, outcome in sorted(zip(ops, outcomes), key=position):
            if isinstance(op, Read):
                assert outcome.value == state, f"read at {outcome.ts} saw {outcome.value}, serial order has {state}"
                continue
            src, dst = owners[op.src], owners[op.dst]
            expected = state[src] >= op.amount
            assert outcome.value is expected, f"{op} returned {outcome.value}, serial order says {expected}"
            if expected:
                state[src] -= op.amount
                state[dst] += op.amount

        for node in deps:
            final = await node.call("accounts:balances", {}, kind="query", auth=NOBODY)
            assert final.value == state
            assert sum(final.value.values()) == sum(initial)
            assert all(type(b) is int for b in final.value.values())  # int64 stays int64
    finally:
        for node in reversed(deps):
            await node.close()


@settings(max_examples=100, deadline=None)
@given(initial=st.lists(st.integers(0, 100), min_size=N_ACCOUNTS, max_size=N_ACCOUNTS), ops=operations)
def test_concurrent_transfers_equal_some_serial_order(initial: list[int], ops: list[Any]) -> None:
    asyncio.run(scenario(initial, ops))


@pytest.mark.parametrize("nodes", [1, 2])
@settings(max_examples=20, deadline=None)  # each example makes a database
@given(initial=st.lists(st.integers(0, 100), min_size=N_ACCOUNTS, max_size=N_ACCOUNTS), ops=operations)
def test_concurrent_transfers_equal_some_serial_order_on_postgres(nodes: int, initial: list[int], ops: list[Any],
                                                                 pg_server) -> None:
    asyncio.run(scenario(initial, ops, pg_server.create_database(vector=False), nodes))
