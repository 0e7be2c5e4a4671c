"""Shared fixtures and helpers for tests/test_core_*.py: the engine core driven in-process.

    async def test_x(dep):                      # tests/apps/core on ":memory:" and on a file
        doc_id = await ok(dep, "items:add", {"group": "a", "rank": 1.0})
        docs = await read(dep, lambda db: db.query("items").collect())

`dep` is parametrized over the stores the engine supports: ":memory:" (a private temporary file,
removed on close), an on-disk SQLite file under tmp_path, and a fresh database on a real
PostgreSQL server (tests/pg_harness.py, started once per session). `read` runs a callable against a
`DatabaseReader` on a fresh snapshot, so query-builder tests can state a query inline. This module
holds no tests; it is named test_core_* only because that is the file pattern the core tests own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.database import DatabaseReader
from engine.deployment import Auth, Deployment, Outcome
from engine.errors import EngineError
from engine.transaction import DEFAULT_LIMITS, Limits, Transaction

CORE_APP = Path(__file__).resolve().parent / "apps" / "core"
ADMIN = Auth(admin=True)
NOBODY = Auth()


@pytest.fixture(params=["memory", "disk", "postgres"])
def db_path(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")  # a fresh database on the session's PostgreSQL
    return ":memory:" if request.param == "memory" else tmp_path / "core.sqlite3"


@pytest.fixture
async def dep(db_path: str | Path) -> AsyncIterator[Deployment]:
    d = await Deployment.open(CORE_APP, db_path, admin_key="core-test-key")
    yield d
    await d.close()


async def call(dep: Deployment, path: str, args: dict[str, Any] | None = None, *,
               kind: str | None = None, auth: Auth = NOBODY) -> Outcome:
    """Run a function as a client would; `kind` defaults to what the app registered."""
    if kind is None:
        kind = dep.app.functions[path if ":" in path else f"{path}:default"].kind
    return await dep.call(path, args or {}, kind=kind, auth=auth)


async def ok(dep: Deployment, path: str, args: dict[str, Any] | None = None, *, auth: Auth = NOBODY) -> Any:
    outcome = await call(dep, path, args, auth=auth)
    assert outcome.success, f"{path} failed: {outcome.error_message}"
    return outcome.value


async def fails(dep: Deployment, path: str, args: dict[str, Any] | None = None, *, auth: Auth = NOBODY) -> str:
    """The error line of a call that must fail (the message minus its request-id line and frames);
    asserts the failure committed nothing."""
    before = dep.latest_ts()
    outcome = await call(dep, path, args, auth=auth)
    assert not outcome.success, f"{path} unexpectedly succeeded: {outcome.value!r}"
    assert dep.latest_ts() == before, f"{path} failed but committed"
    assert outcome.error_message is not None
    head, _, rest = outcome.error_message.partition(" Server Error\n")
    assert head.startswith("[Request ID: ") and rest.endswith("\n"), outcome.error_message
    return rest.split("\n")[0]


async def read(dep: Deployment, body: Callable[[DatabaseReader], Awaitable[Any]], *,
               limits: Limits = DEFAULT_LIMITS) -> Any:
    """`await body(db)` on a fresh read-only transaction (what a query's ctx.db is)."""
    txn = Transaction(dep.catalog, await dep.persistence.snapshot(), writable=False, limits=limits)
    try:
        return await body(DatabaseReader(txn))
    finally:
        txn.close()


async def read_error(dep: Deployment, body: Callable[[DatabaseReader], Awaitable[Any]], *,
                     limits: Limits = DEFAULT_LIMITS) -> EngineError:
    with pytest.raises(EngineError) as info:
        await read(dep, body, limits=limits)
    return info.value
