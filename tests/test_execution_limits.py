"""Execution limits (engine.execution): what counts as a function's own time."""

from __future__ import annotations

import gc
import time

import pytest

import engine.execution as execution
from engine.execution import PAUSES, UserTimeout, run_user_code


@pytest.fixture
def big_heap():
    """A million live containers: a full collection has all of them to walk."""
    heap = [[i] for i in range(1_000_000)]
    yield heap
    del heap


def _full_collection_seconds() -> float:
    started = time.monotonic()
    gc.collect()
    return time.monotonic() - started


async def test_a_full_collection_inside_a_step_is_not_the_functions_time(big_heap):
    pause = _full_collection_seconds()
    limit = pause / 4  # the collection alone is four limits long

    async def collects_then_returns():
        gc.collect()  # stands for the collection any allocation may start, in any step
        return "done"

    before = PAUSES.total
    assert await run_user_code(collects_then_returns(), limit=limit) == "done"
    assert PAUSES.total - before >= pause / 2  # the collection was seen, and left out


async def test_the_same_limit_still_stops_a_function_that_spends_it_itself(big_heap):
    limit = _full_collection_seconds() / 4

    async def spins():
        started = time.monotonic()
        while time.monotonic() - started < 20 * limit:
            pass
        return "ran past its limit"

    with pytest.raises(UserTimeout):
        await run_user_code(spins(), limit=limit)


async def test_a_step_that_is_all_collections_is_still_stopped_past_the_allowance(big_heap, monkeypatch):
    pause = _full_collection_seconds()
    limit = pause / 4
    monkeypatch.setattr(execution, "COLLECTOR_ALLOWANCE_S", pause)
    done = []

    async def collects_forever():
        for _ in range(50):
            gc.collect()
            done.append(1)
        return "never stopped"

    with pytest.raises(UserTimeout):
        await run_user_code(collects_forever(), limit=limit)
    assert len(done) < 50  # the watchdog stopped it inside its step, a limit past the allowance


def test_the_clock_leaves_out_a_collection_still_running():
    # What the watchdog's thread reads while a collection runs (between its two callbacks).
    clock_before = PAUSES.clock(time.monotonic())
    PAUSES.on_gc("start", {"generation": 2, "collected": 0, "uncollectable": 0})
    try:
        started = time.monotonic()
        while time.monotonic() - started < 0.2:
            pass
        assert PAUSES.clock(time.monotonic()) - clock_before < 0.1
    finally:
        PAUSES.on_gc("stop", {"generation": 2, "collected": 0, "uncollectable": 0})
    assert PAUSES.clock(time.monotonic()) - clock_before < 0.1
