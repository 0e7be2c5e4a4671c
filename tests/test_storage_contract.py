"""The persistence contract (engine.storage.base), run against every store: SQLite (a file) and a
real PostgreSQL database. What the engine relies on, stated directly on the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from engine.errors import EngineError
from engine.storage import CommitRecord, Persistence, open_persistence


@pytest.fixture(params=["sqlite", "postgres"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgres":
        return request.getfixturevalue("pg_url")
    return str(tmp_path / "contract.sqlite3")


@pytest.fixture
async def store(location: str) -> AsyncIterator[Persistence]:
    s = open_persistence(location)
    await s.open()
    yield s
    await s.close()


def doc(n: int) -> bytes:
    return b'{"n":%d}' % n


async def test_an_empty_store_has_an_empty_catalog_and_clock_zero(store: Persistence) -> None:
    assert await store.load_catalog() == (0, {}, {})
    snap = await store.snapshot()
    try:
        assert snap.ts == 0
        assert await snap.get("nothing") is None
        assert await snap.scan_page(1, b"", b"\xff", False, 10) == ([], None)
        assert await snap.mutation_result("s", 1) is None
    finally:
        snap.close()


async def test_the_catalog_survives_a_reopen(location: str) -> None:
    s = open_persistence(location)
    await s.open()
    await s.add_table("items", 10001)
    await s.add_index(7, "items", "by_x", ["x", "_creationTime", "_id"])
    await s.add_index(8, "items", "by_y", ["y"])
    await s.drop_index(8)
    await s.write([CommitRecord(5, doc_puts=[("a", 10001, doc(1))], entry_puts=[(7, b"k1", "a")])])
    await s.close()
    again = open_persistence(location)
    await again.open()
    try:
        ts, tables, indexes = await again.load_catalog()
        assert ts == 5
        assert tables == {"items": 10001}
        assert indexes == {("items", "by_x"): (7, ["x", "_creationTime", "_id"])}
        snap = await again.snapshot()
        try:
            assert await snap.get("a") == (10001, doc(1))
        finally:
            snap.close()
    finally:
        await again.close()


async def test_timestamps_are_64_bit_nanoseconds(store: Persistence) -> None:
    ts = 1_796_000_000_123_456_789  # far past 2**31
    await store.write([CommitRecord(ts, doc_puts=[("a", 10001, doc(1))], mutation_results=[("sess", 2**40, b"1")])])
    snap = await store.snapshot()
    try:
        assert snap.ts == ts
        assert await snap.mutation_result("sess", 2**40) == (ts, b"1")
    finally:
        snap.close()
    assert (await store.load_catalog())[0] == ts


async def test_index_pages_come_in_byte_order_with_resume_keys(store: Persistence) -> None:
    keys = [bytes([b]) + b"x" for b in (0x00, 0x01, 0x7F, 0x80, 0xFE)] + [b"\xff\xff"]
    puts = [(f"d{i}", 10001, doc(i)) for i in range(len(keys))]
    await store.write([CommitRecord(1, doc_puts=puts, entry_puts=[(3, k, f"d{i}") for i, k in enumerate(keys)])])
    snap = await store.snapshot()
    try:
        rows = [row async for row in snap.scan(3, b"", b"\xff\xff\xff", first_page=2)]
        assert [r[0] for r in rows] == keys
        assert [r[1] for r in rows] == [f"d{i}" for i in range(len(keys))]
        assert rows[2][2] == doc(2)
        page, resume = await snap.scan_page(3, b"", b"\xff\xff\xff", False, 2)
        assert [r[0] for r in page] == keys[:2] and resume == keys[1]
        page, resume = await snap.scan_page(3, b"", b"\xff\xff\xff", True, 4)
        assert [r[0] for r in page] == keys[::-1][:4] and resume == keys[::-1][3]
        page, resume = await snap.scan_page(3, b"\x01", b"\x80", False, 10)
        assert [r[0] for r in page] == keys[1:3] and resume is None  # [lo, hi)
        assert (await snap.scan_page(4, b"", b"\xff", False, 10)) == ([], None)  # another index
    finally:
        snap.close()


async def test_a_snapshot_never_changes_and_later_ones_see_each_write(store: Persistence) -> None:
    await store.write([CommitRecord(10, doc_puts=[("a", 10001, doc(1))], entry_puts=[(3, b"a", "a")])])
    before = await store.snapshot()
    try:
        await store.write([CommitRecord(11, doc_puts=[("a", 10001, doc(2)), ("b", 10001, doc(3))],
                                        entry_puts=[(3, b"b", "b")])])
        await store.write([CommitRecord(12, doc_deletes=["a"], entry_deletes=[(3, b"a")])])
        assert before.ts == 10
        assert await before.get("a") == (10001, doc(1))
        assert await before.get("b") is None
        assert [r[1] for r in (await before.scan_page(3, b"", b"\xff", False, 10))[0]] == ["a"]
        after = await store.snapshot()
        try:
            assert after.ts == 12
            assert await after.get("a") is None
            assert await after.get("b") == (10001, doc(3))
            assert [r[1] for r in (await after.scan_page(3, b"", b"\xff", False, 10))[0]] == ["b"]
        finally:
            after.close()
    finally:
        before.close()


async def test_a_group_applies_its_commits_in_order(store: Persistence) -> None:
    """Within a group, a later commit's delete of a key an earlier one put wins, and the other way
    round; a document deleted then re-created exists."""
    await store.write([
        CommitRecord(1, doc_puts=[("a", 10001, doc(1))], entry_puts=[(3, b"ka", "a")]),
        CommitRecord(2, doc_deletes=["a"], entry_deletes=[(3, b"ka")]),
        CommitRecord(3, doc_puts=[("b", 10001, doc(2))], entry_puts=[(3, b"kb", "b")]),
        CommitRecord(4, doc_puts=[("b", 10001, doc(3))], entry_deletes=[(3, b"kb")], entry_puts=[(3, b"kb2", "b")]),
        CommitRecord(5, doc_puts=[("c", 10001, doc(4))], entry_puts=[(3, b"kc", "c")]),
        CommitRecord(6, doc_deletes=["c"], entry_deletes=[(3, b"kc")]),
        CommitRecord(7, doc_puts=[("c", 10001, doc(5))], entry_puts=[(3, b"kc", "c")]),
    ])
    snap = await store.snapshot()
    try:
        assert snap.ts == 7
        assert await snap.get("a") is None
        assert await snap.get("b") == (10001, doc(3))
        assert await snap.get("c") == (10001, doc(5))
        rows, _ = await snap.scan_page(3, b"", b"\xff", False, 10)
        assert [(k, d) for k, d, _ in rows] == [(b"kb2", "b"), (b"kc", "c")]
    finally:
        snap.close()


async def test_mutation_results_keep_the_first_value(store: Persistence) -> None:
    await store.write([CommitRecord(1, mutation_results=[("s", 1, b"first")])])
    await store.write([CommitRecord(2, mutation_results=[("s", 1, b"second"), ("s", 2, b"other")])])
    snap = await store.snapshot()
    try:
        assert await snap.mutation_result("s", 1) == (1, b"first")
        assert await snap.mutation_result("s", 2) == (2, b"other")
    finally:
        snap.close()


async def test_table_documents_in_id_order_and_emptiness(store: Persistence) -> None:
    ids = ["B", "a", "Z", "_x", "b0", "b"]
    await store.write([CommitRecord(1, doc_puts=[(i, 10002, doc(n)) for n, i in enumerate(ids)]
                                    + [("other", 10003, doc(9))])])
    got = [d async for d, _ in store.table_documents(10002)]
    assert got == sorted(ids)  # byte order ("B" < "Z" < "_x" < "a"), whatever the locale
    assert not await store.table_is_empty(10002)
    assert await store.table_is_empty(10004)
    assert await store.index_is_empty(9)
    await store.put_entries([(9, b"k", "a")])
    assert not await store.index_is_empty(9)
    await store.add_table("t", 10002)
    await store.add_index(9, "t", "by_k", ["k"])
    await store.drop_index(9)
    assert await store.index_is_empty(9)


async def test_many_concurrent_reads_on_one_snapshot(store: Persistence) -> None:
    await store.write([CommitRecord(1, doc_puts=[(f"d{i}", 10001, doc(i)) for i in range(50)])])
    snap = await store.snapshot()
    try:
        got = await asyncio.gather(*[snap.get(f"d{i}") for i in range(50)])
        assert got == [(10001, doc(i)) for i in range(50)]
    finally:
        snap.close()


async def test_restore_replaces_everything_at_once(store: Persistence) -> None:
    await store.add_table("old", 10001)
    await store.write([CommitRecord(3, doc_puts=[("o", 10001, doc(0))], mutation_results=[("s", 1, b"r")])])
    await store.restore(9, {"new": 10005}, [(4, "new", "by_n", ["n"])], [("n1", 10005, doc(1))], [(4, b"k", "n1")])
    ts, tables, indexes = await store.load_catalog()
    assert (ts, tables, indexes) == (9, {"new": 10005}, {("new", "by_n"): (4, ["n"])})
    snap = await store.snapshot()
    try:
        assert await snap.get("o") is None
        assert await snap.get("n1") == (10005, doc(1))
        assert await snap.mutation_result("s", 1) is None
        assert [r[1] for r in (await snap.scan_page(4, b"", b"\xff", False, 10))[0]] == ["n1"]
    finally:
        snap.close()


async def test_renumber_tables(store: Persistence) -> None:
    await store.add_table("a", 10001)
    await store.add_table("b", 10002)
    await store.renumber_tables({"a": 10002, "b": 10001})
    assert (await store.load_catalog())[1] == {"a": 10002, "b": 10001}


@pytest.mark.parametrize("url, reason", [
    ("postgresql://u:pw@127.0.0.1:1/db", "Connect call failed"),
    ("postgresql://u:pw@127.0.0.1/", "names no database"),
    ("postgresql://u:pw@127.0.0.1:notaport/db", "Port could not be cast"),
    ("mysql://u:pw@h/db", "give a SQLite file path or a postgresql://"),
])
async def test_an_unusable_url_is_refused_with_the_reason_and_without_the_password(url: str, reason: str) -> None:
    with pytest.raises(EngineError) as info:
        store = open_persistence(url)
        await store.open()
    assert reason in info.value.message, info.value.message
    assert "pw" not in info.value.message.replace("postgresql", ""), info.value.message


async def test_a_wrong_password_is_refused_without_showing_it(pg_server) -> None:
    url = pg_server.create_database()
    wrong = url.replace(":engine-test-pw@", ":not-the-password@")
    with pytest.raises(EngineError) as info:
        await open_persistence(wrong).open()
    assert "password authentication failed" in info.value.message
    assert "not-the-password" not in info.value.message
