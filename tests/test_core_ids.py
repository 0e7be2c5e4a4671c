"""Document ids carry their table: decode_id finds it, and anything else is not an id of that table."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.deployment import Deployment
from engine.ids import FIRST_USER_TABLE_NUMBER, decode_id, new_id

from test_core_support import NOBODY, dep, db_path, ok  # noqa: F401  (fixtures)


@given(st.integers(min_value=1, max_value=2**32))
def test_an_id_decodes_to_its_table_number(number: int) -> None:
    assert decode_id(new_id(number)) == number


def test_ids_are_unique_lowercase_base32() -> None:
    ids = {new_id(FIRST_USER_TABLE_NUMBER) for _ in range(1000)}
    assert len(ids) == 1000
    assert all(set(i) <= set("0123456789abcdefghjkmnpqrstvwxyz") for i in ids)


def test_garbage_is_not_an_id() -> None:
    good = new_id(10001)
    flipped = good[:5] + ("a" if good[5] != "a" else "b") + good[6:]
    for text in ["", "abc", good + "0", good[:-1], good.upper(), flipped, "i" * len(good),
                 "0" * len(good), None, 12345, b"bytes", [good]]:
        assert decode_id(text) is None, text


def test_every_single_character_change_is_detected() -> None:
    good = new_id(10042)
    alphabet = "0123456789abcdefghjkmnpqrstvwxyz"
    wrong = [good[:i] + c + good[i + 1:] for i in range(len(good)) for c in alphabet if c != good[i]]
    # The checksum catches a changed character; the rare survivor must at least not claim 10042.
    assert sum(decode_id(w) == 10042 for w in wrong) <= len(wrong) // 1000


async def test_an_id_of_one_table_is_not_an_id_of_another(dep: Deployment) -> None:
    counter = await ok(dep, "misc:normalize", {"table": "counters", "id": new_id(1)})
    assert counter is None
    item_id = await ok(dep, "items:add", {"group": "g", "rank": 1.0})
    assert dep.catalog.table_of_id(item_id) == "items"
    assert await ok(dep, "misc:normalize", {"table": "items", "id": item_id}) == item_id
    assert await ok(dep, "misc:normalize", {"table": "counters", "id": item_id}) is None
    assert await ok(dep, "misc:normalize", {"table": "items", "id": "not-an-id"}) is None
    # An id of a table number this deployment never assigned belongs to no table.
    assert dep.catalog.table_of_id(new_id(FIRST_USER_TABLE_NUMBER + 999)) is None


async def test_db_get_rejects_garbage_and_misses_unknown_ids(dep: Deployment) -> None:
    outcome = await dep.call("misc:get", {"id": "garbage"}, kind="query", auth=NOBODY)
    assert not outcome.success
    assert "Uncaught Error: Invalid argument `id` for `db.get`: 'garbage' is not a document ID." \
        in outcome.error_message
    # Well-formed but never inserted: not found, no error.
    assert await ok(dep, "misc:get", {"id": new_id(dep.catalog.table("items").number)}) is None

