"""Mutations as transactions: own writes visible, all-or-nothing, schema and id checks, limits,
OCC under contention, visibility of internal functions, and log capture."""

from __future__ import annotations

import asyncio

import pytest

from engine.committer import Conflict
from engine.deployment import MISSING, Auth, Deployment
from engine.ids import new_id
from engine.index_keys import encode_value
from engine.transaction import Limits, Transaction

from test_core_support import ADMIN, NOBODY, call, dep, db_path, fails, ok, read, read_error  # noqa: F401  (fixtures)


async def test_a_mutation_reads_its_own_writes_through_get_and_index_scans(dep: Deployment) -> None:
    assert await ok(dep, "misc:ryow") == {
        "get_after_insert": 1.0,
        "scan_after_insert": [1.0, 2.0],
        "get_after_patch": 3.0,
        "scan_after_patch": [2.0, 3.0],  # re-ordered: the patch moved the key inside by_group_rank
        "scan_after_replace": [3.0],  # the replaced document left the "ryow" range
        "get_after_delete": None,
        "scan_after_delete": [],
        "desc_full_scan": [9.0],
    }
    # ...and exactly that state was committed.
    assert [d["rank"] for d in await read(dep, lambda db: db.query("items").collect())] == [9.0]


async def test_insert_then_delete_in_one_mutation_leaves_nothing(dep: Deployment) -> None:
    doc_id = await ok(dep, "misc:insertThenDelete", {"group": "gone"})
    assert await ok(dep, "misc:get", {"id": doc_id}) is None
    assert await read(dep, lambda db: db.query("items").collect()) == []
    assert await fails(dep, "items:remove", {"id": doc_id})  # nothing to delete either


async def test_a_convex_error_after_writes_leaves_no_trace(dep: Deployment) -> None:
    outcome = await call(dep, "items:failAfterWrite", {"group": "x"})
    assert not outcome.success
    assert outcome.error_data == {"code": "NOPE", "group": "x"}
    assert outcome.error_message.startswith("[Request ID: ")
    assert ' Server Error\nUncaught ConvexError: {"code":"NOPE","group":"x"}\n    at failAfterWrite (functions/items.py:' \
        in outcome.error_message
    assert await read(dep, lambda db: db.query("items").collect()) == []


async def test_an_exception_after_writes_leaves_no_trace(dep: Deployment) -> None:
    item = await ok(dep, "items:add", {"group": "g", "rank": 5.0})
    message = await fails(dep, "misc:patchThenFail", {"id": item})
    assert "Uncaught RuntimeError: boom after writes" in message
    assert [(d["group"], d["rank"]) for d in await read(dep, lambda db: db.query("items").collect())] == [("g", 5.0)]


async def test_a_schema_violation_is_refused_naming_table_and_field(dep: Deployment) -> None:
    cases = [  # (document, how the message names the field)
        ({"group": 1.0, "rank": 0.0}, "Expected string, got float64 (1.0) at $.group"),
        ({"group": "g"}, "missing the required field `rank` at $"),
        ({"group": "g", "rank": 0.0, "extra": True}, "extra field `extra` that is not in the validator at $"),
        ({"group": "g", "rank": 0.0, "tags": ["a", 2.0]}, "Expected string, got float64 (2.0) at $.tags[1]"),
    ]
    for doc, ending in cases:
        message = await fails(dep, "items:insertRaw", {"doc": doc})
        assert message.startswith('Uncaught Error: Failed to insert or update a document in table "items" because '
                                  "it does not match the schema: "), message
        assert message.endswith(ending), message
    assert await read(dep, lambda db: db.query("items").collect()) == []


async def test_an_id_of_the_wrong_table_is_refused_by_v_id(dep: Deployment) -> None:
    account = await ok(dep, "accounts:open", {"owner": "a", "balance": 1})
    message = await fails(dep, "items:remove", {"id": account})
    assert "ArgumentValidationError" in message and "$.id" in message, message
    # A schema field typed v.id("counters") refuses it too.
    message = await fails(dep, "items:insertRaw", {"doc": {"group": "g", "rank": 0.0, "ref": account}})
    assert "does not match the schema" in message and message.endswith("at $.ref"), message
    counter = new_id(dep.catalog.table("counters").number)
    assert await ok(dep, "items:insertRaw", {"doc": {"group": "g", "rank": 0.0, "ref": counter}})


# -- limits -------------------------------------------------------------------------------------

async def test_reading_too_many_documents_fails_with_convex_code(dep: Deployment) -> None:
    await ok(dep, "items:fill", {"group": "g", "start": 0.0, "count": 10.0})
    small = Limits(documents_read=5)
    error = await read_error(dep, lambda db: db.query("items").collect(), limits=small)
    assert error.code == "TooManyDocumentsRead" and "limit: 5" in error.message
    # Reading within the limit is fine, whichever way it is cut.
    assert len(await read(dep, lambda db: db.query("items").take(5), limits=small)) == 5


async def test_too_many_index_ranges_fails(dep: Deployment) -> None:
    item = await ok(dep, "items:add", {"group": "g", "rank": 0.0})

    async def many_gets(db):
        for _ in range(4):
            await db.get(item)

    error = await read_error(dep, many_gets, limits=Limits(index_ranges_read=3))
    assert error.code == "TooManyIndexRangesRead"


async def test_a_document_over_one_mebibyte_is_refused(dep: Deployment) -> None:
    message = await fails(dep, "items:insertRaw", {"doc": {"group": "x" * (1024 * 1024), "rank": 0.0}})
    assert message == 'Uncaught Error: Document in table "items" is 1048661 bytes; the limit is 1048576.', message


async def test_a_document_nested_too_deep_is_refused(dep: Deployment) -> None:
    def nested(depth: int) -> dict:
        value: dict = {}
        for _ in range(depth):
            value = {"x": value}
        return value

    # The document is level 0; values may nest 16 levels below it.
    message = await fails(dep, "items:insertRaw", {"doc": {"group": "g", "rank": 0.0, "deep": nested(16)}})
    assert message == 'Uncaught Error: Document in table "items" is nested more than 16 levels deep.', message
    # One level less passes the shape check and then meets the schema (which has no "deep" field).
    message = await fails(dep, "items:insertRaw", {"doc": {"group": "g", "rank": 0.0, "deep": nested(15)}})
    assert "does not match the schema" in message and "extra field `deep`" in message, message


# -- concurrency -------------------------------------------------------------------------------

async def test_occ_as_a_script(dep: Deployment) -> None:
    """Two transactions on the same snapshot: the second to commit re-runs if it read what the
    first wrote, and commits if their reads and writes are disjoint."""
    a = await ok(dep, "items:add", {"group": "a", "rank": 1.0})
    b = await ok(dep, "items:add", {"group": "b", "rank": 1.0})
    items = dep.catalog.table("items")

    async def begin() -> Transaction:
        return Transaction(dep.catalog, await dep.persistence.snapshot(), writable=True)

    t1, t2, t3 = await begin(), await begin(), await begin()
    try:
        await t1.get(a)
        await t1.patch(b, {"rank": 2.0})  # t1: reads a, writes b
        await t2.get(b)
        await t2.patch(a, {"rank": 3.0})  # t2: reads b (which t1 writes)
        ix = items.indexes["by_group"]
        lo = encode_value("c")
        [row async for row in t3.scan(items, ix, lo, lo + b"\xff", False)]
        t3.flush_scans()
        await t3.insert(items, {"group": "d", "rank": 0.0})  # t3: reads group "c", writes group "d"

        _, durable = dep.committer.sequence(t1)
        ts1 = await durable  # the commit ts (a cluster store assigns it when it commits)
        with pytest.raises(Conflict) as conflict:
            dep.committer.sequence(t2)
        assert conflict.value.ts == ts1
        _, durable = dep.committer.sequence(t3)
        ts3 = await durable
        assert ts3 > ts1
    finally:
        for t in (t1, t2, t3):
            t.close()
    assert (await ok(dep, "misc:get", {"id": a}))["rank"] == 1.0  # t2 never landed
    assert (await ok(dep, "misc:get", {"id": b}))["rank"] == 2.0
    assert [d["group"] for d in await read(dep, lambda db: db.query("items").collect())] == ["a", "b", "d"]


async def test_a_write_into_a_scanned_range_conflicts(dep: Deployment) -> None:
    items = dep.catalog.table("items")
    ix = items.indexes["by_group"]
    reader = Transaction(dep.catalog, await dep.persistence.snapshot(), writable=True)
    try:
        lo = encode_value("c")
        assert [row async for row in reader.scan(items, ix, lo, lo + b"\xff", False)] == []
        reader.flush_scans()  # an empty range is still read: inserting into it must conflict
        await reader.insert(items, {"group": "elsewhere", "rank": 0.0})
        await ok(dep, "items:add", {"group": "c", "rank": 5.0})
        with pytest.raises(Conflict):
            dep.committer.sequence(reader)
    finally:
        reader.close()



async def test_200_concurrent_increments_of_one_counter_all_apply(dep: Deployment) -> None:
    outcomes = await asyncio.gather(*(call(dep, "counters:increment", {"name": "hot"}) for _ in range(200)))
    assert all(o.success for o in outcomes), [o.error_message for o in outcomes if not o.success][:3]
    assert await ok(dep, "counters:get", {"name": "hot"}) == 200.0
    # Each increment saw a distinct predecessor: the returned values are exactly 1..200, and
    # commit order agrees with them.
    assert sorted(o.value for o in outcomes) == [float(i) for i in range(1, 201)]
    by_ts = sorted(outcomes, key=lambda o: o.ts)
    assert [o.value for o in by_ts] == [float(i) for i in range(1, 201)]


# -- visibility and logs -----------------------------------------------------------------------

async def test_internal_functions_are_refused_for_non_admin_callers(dep: Deployment) -> None:
    refused = await call(dep, "misc:secret", auth=NOBODY)
    assert not refused.success
    assert refused.error_message.endswith(" Server Error\nCould not find public function for 'misc:secret'.\n")
    assert refused.error_data is MISSING
    signed_in = Auth(identity={"subject": "u", "issuer": "https://i", "tokenIdentifier": "https://i|u"})
    user = await dep.call("misc:secret", {}, kind="query", auth=signed_in)
    assert not user.success
    assert await ok(dep, "misc:secret", auth=ADMIN) == "internal"
    assert (await call(dep, "counters:reset", auth=NOBODY)).success is False
    assert (await call(dep, "counters:reset", auth=ADMIN)).success is True


async def test_print_inside_a_function_becomes_log_lines(dep: Deployment) -> None:
    outcome = await call(dep, "misc:hello", {"name": "world"})
    assert outcome.success
    assert outcome.log_lines == ["[LOG] 'hello' 'world' 2", "[LOG] { a: 1.5 }"]


async def test_a_scan_after_deleting_in_the_same_transaction_skips_the_deleted(dep: Deployment) -> None:
    """Own writes that are only deletions still shape an index walk (the page fast path must not
    skip them)."""
    a = await ok(dep, "items:add", {"group": "g", "rank": 1.0})
    b = await ok(dep, "items:add", {"group": "g", "rank": 2.0})
    items = dep.catalog.table("items")
    ix = items.indexes["by_group"]
    lo = encode_value("g")
    txn = Transaction(dep.catalog, await dep.persistence.snapshot(), writable=True)
    try:
        await txn.delete(a)
        seen = [doc["_id"] async for _, doc in txn.scan(items, ix, lo, lo + b"\xff", False)]
        assert seen == [b]
    finally:
        txn.close()


def test_the_write_log_remembers_the_last_commit_per_index_past_trimming() -> None:
    """Commit listeners that care about one index (the scheduler's jobs, file storage's keys) ask
    `last_written` instead of walking every key of every commit; it must outlive trimming."""
    from engine.write_log import WriteLog

    log = WriteLog(10)
    assert log.last_written.get(1, 0) <= 10
    log.append(11, [(1, b"a"), (2, b"b")])
    log.append(12, [(2, b"c")])
    log.append(13, [(3, b"d"), (2, b"e")])
    assert log.last_written == {1: 11, 2: 13, 3: 13}
    log.trim(13, max_entries=10)
    assert len(log) == 0 and log.last_written == {1: 11, 2: 13, 3: 13}
    log.append(14, [(1, b"f")])
    assert log.last_written[1] == 14 and [ts for ts, _ in log.since(11)] == [14]
