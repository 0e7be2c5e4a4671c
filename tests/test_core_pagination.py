"""paginate() with Convex's semantics (convex-protocol.md §8), driven the way a reactive client
drives it: each page is its own query, re-run with the journal its previous run produced."""

from __future__ import annotations

import itertools
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.deployment import Deployment
from engine.runner import QueryRun

from test_core_support import NOBODY, call, dep, db_path, ok  # noqa: F401  (fixtures)


async def run_page(dep: Deployment, group: str, opts: dict[str, Any], *, journal: str | None = None,
                   order: str = "asc") -> QueryRun:
    fn = dep.lookup("items:page", kind="query", auth=NOBODY)
    result, _ = await dep.runner.run_query(fn, {"group": group, "paginationOpts": opts, "order": order},
                                           NOBODY, journal=journal)
    return result


class PaginatedClient:
    """What usePaginatedQuery does: page k+1 starts at page k's continueCursor; every page re-runs
    with its own journal when data changes."""

    def __init__(self, dep: Deployment, group: str, num_items: int, order: str = "asc") -> None:
        self.dep, self.group, self.num_items, self.order = dep, group, num_items, order
        self.pages: list[tuple[str | None, QueryRun]] = []  # (cursor, latest run)

    async def load_more(self) -> dict[str, Any]:
        cursor = self.pages[-1][1].value["continueCursor"] if self.pages else None
        assert not self.pages or not self.pages[-1][1].value["isDone"]
        result = await run_page(self.dep, self.group, {"numItems": float(self.num_items), "cursor": cursor},
                                order=self.order)
        self.pages.append((cursor, result))
        return result.value

    async def load_all(self) -> None:
        while not self.pages or not self.pages[-1][1].value["isDone"]:
            await self.load_more()

    async def refresh(self) -> None:
        for i, (cursor, previous) in enumerate(self.pages):
            opts = {"numItems": float(self.num_items), "cursor": cursor}
            self.pages[i] = (cursor, await run_page(self.dep, self.group, opts, journal=previous.journal,
                                                    order=self.order))

    def ranks(self) -> list[float]:
        return [d["rank"] for _, r in self.pages for d in r.value["page"]]


async def all_ranks(dep: Deployment, group: str, order: str = "asc") -> list[float]:
    ranks = [d["rank"] for d in await ok(dep, "items:byRank", {"group": group})]
    return ranks if order == "asc" else ranks[::-1]


async def fill(dep: Deployment, group: str, ranks: list[float]) -> dict[float, str]:
    ids = await ok(dep, "items:addMany", {"docs": [{"group": group, "rank": r} for r in ranks]})
    return dict(zip(ranks, ids))


async def test_pages_stay_gapless_across_inserts_and_deletes(dep: Deployment) -> None:
    ids = await fill(dep, "g", [float(r) for r in range(0, 100, 10)])
    client = PaginatedClient(dep, "g", 3)
    await client.load_all()
    assert [len(r.value["page"]) for _, r in client.pages] == [3, 3, 3, 1]
    boundaries = [r.value["continueCursor"] for _, r in client.pages]

    async def insert(rank: float) -> None:
        ids.update(await fill(dep, "g", [rank]))

    async def delete(rank: float) -> None:
        await ok(dep, "items:remove", {"id": ids.pop(rank)})

    for change in [insert(5.0), insert(25.0), delete(20.0), delete(30.0), insert(-1.0), insert(95.0),
                   insert(21.0), delete(0.0), delete(90.0), insert(1000.0)]:
        await change
        await client.refresh()
        assert client.ranks() == await all_ranks(dep, "g")
        # The journals pin every page's end: boundaries never move, pages grow and shrink instead.
        assert [r.value["continueCursor"] for _, r in client.pages] == boundaries
    assert [len(r.value["page"]) for _, r in client.pages] == [3, 4, 3, 2]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.lists(st.integers(0, 50), max_size=12), num_items=st.integers(1, 4),
       order=st.sampled_from(["asc", "desc"]),
       changes=st.lists(st.tuples(st.booleans(), st.integers(0, 50)), max_size=8))
async def test_any_changes_keep_pages_gapless(dep: Deployment, initial: list[int], num_items: int, order: str,
                                              changes: list[tuple[bool, int]]) -> None:
    group = f"h{next(_groups)}"  # one deployment serves every example: each gets its own group
    live: list[str] = list((await fill(dep, group, [float(r) for r in initial])).values()) if initial else []
    client = PaginatedClient(dep, group, num_items, order)
    await client.load_all()
    assert client.ranks() == await all_ranks(dep, group, order)
    for is_insert, n in changes:
        if is_insert or not live:
            live.extend((await fill(dep, group, [float(n)])).values())
        else:
            await ok(dep, "items:remove", {"id": live.pop(n % len(live))})
        await client.refresh()
        assert client.ranks() == await all_ranks(dep, group, order)
        assert client.pages[-1][1].value["isDone"]
        assert not any(r.value["isDone"] for _, r in client.pages[:-1])


_groups = itertools.count()


async def test_end_cursor_bounds_the_page_and_ignores_num_items(dep: Deployment) -> None:
    await fill(dep, "g", [1.0, 2.0, 3.0, 4.0, 5.0])
    first = (await run_page(dep, "g", {"numItems": 3.0, "cursor": None})).value
    bounded = (await run_page(dep, "g", {"numItems": 1.0, "cursor": None,
                                         "endCursor": first["continueCursor"]})).value
    assert [d["rank"] for d in bounded["page"]] == [1.0, 2.0, 3.0]
    assert bounded["continueCursor"] == first["continueCursor"] and bounded["isDone"] is False
    rest = (await run_page(dep, "g", {"numItems": 1.0, "cursor": first["continueCursor"],
                                      "endCursor": first["continueCursor"]})).value
    assert rest["page"] == [] and rest["continueCursor"] == first["continueCursor"]


async def test_continue_cursor_is_always_a_string_and_is_done_marks_the_end(dep: Deployment) -> None:
    empty = (await run_page(dep, "nobody", {"numItems": 5.0, "cursor": None})).value
    assert empty == {"page": [], "isDone": True, "continueCursor": empty["continueCursor"],
                     "splitCursor": None, "pageStatus": None}
    assert isinstance(empty["continueCursor"], str)

    await fill(dep, "g", [1.0, 2.0, 3.0])
    # As in Convex, a page that fills exactly does not know the range ended: not done, and the next
    # page is empty and done.
    exact = (await run_page(dep, "g", {"numItems": 3.0, "cursor": None})).value
    assert len(exact["page"]) == 3 and exact["isDone"] is False and isinstance(exact["continueCursor"], str)
    after = (await run_page(dep, "g", {"numItems": 3.0, "cursor": exact["continueCursor"]})).value
    assert after["page"] == [] and after["isDone"] is True and isinstance(after["continueCursor"], str)
    # Resuming at the end cursor yields an empty, finished page too.
    again = (await run_page(dep, "g", {"numItems": 3.0, "cursor": after["continueCursor"]})).value
    assert again["page"] == [] and again["isDone"] is True
    whole = (await run_page(dep, "g", {"numItems": 4.0, "cursor": None})).value
    assert len(whole["page"]) == 3 and whole["isDone"] is True

    partial = (await run_page(dep, "g", {"numItems": 2.0, "cursor": None})).value
    assert partial["isDone"] is False
    assert (await run_page(dep, "g", {"numItems": 2.0, "cursor": partial["continueCursor"]})).value["isDone"]


async def test_a_cursor_from_another_index_is_invalid(dep: Deployment) -> None:
    await fill(dep, "g", [1.0, 2.0, 3.0])
    cursor = (await run_page(dep, "g", {"numItems": 1.0, "cursor": None})).value["continueCursor"]
    outcome = await call(dep, "items:pageAll", {"paginationOpts": {"numItems": 1.0, "cursor": cursor}})
    assert not outcome.success and ("Uncaught ConvexError: InvalidCursor: Tried to run a query starting from a "
                                    "cursor, but it looks like this cursor is from a different query."
                                    in outcome.error_message)
    assert outcome.error_data == {"isConvexSystemError": True, "paginationError": "InvalidCursor"}
    for garbage in ["!!!", "", "AAAA"]:
        outcome = await call(dep, "items:pageAll", {"paginationOpts": {"numItems": 1.0, "cursor": garbage}})
        assert not outcome.success and "InvalidCursor" in outcome.error_message, garbage


async def test_a_grown_page_recommends_a_split_that_the_client_can_follow(dep: Deployment) -> None:
    await fill(dep, "g", [0.0, 10.0, 20.0, 30.0])
    first = await run_page(dep, "g", {"numItems": 2.0, "cursor": None})
    assert first.value["splitCursor"] is None and first.value["pageStatus"] is None
    await fill(dep, "g", [1.0, 2.0, 3.0, 4.0, 5.0])
    grown = (await run_page(dep, "g", {"numItems": 2.0, "cursor": None}, journal=first.journal)).value
    ranks = [d["rank"] for d in grown["page"]]
    assert ranks == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 10.0]  # > 2 * numItems: pinned by the journal
    # Far from Convex's read limits: no pageStatus, but a split cursor in the middle of the rows
    # read, which the client follows because the page holds more than 2 * initialNumItems.
    assert grown["pageStatus"] is None and isinstance(grown["splitCursor"], str)
    # The client replaces the page by two bounded halves; together they are exactly the page.
    left = (await run_page(dep, "g", {"numItems": 2.0, "cursor": None, "endCursor": grown["splitCursor"]})).value
    right = (await run_page(dep, "g", {"numItems": 2.0, "cursor": grown["splitCursor"],
                                       "endCursor": grown["continueCursor"]})).value
    assert [d["rank"] for d in left["page"]] == [0.0, 1.0, 2.0, 3.0]
    assert [d["rank"] for d in right["page"]] == [4.0, 5.0, 10.0]


async def test_only_one_paginated_query_per_function(dep: Deployment) -> None:
    outcome = await call(dep, "items:twoPages", {"group": "g", "paginationOpts": {"numItems": 1.0, "cursor": None}})
    assert not outcome.success and ("Uncaught Error: This query or mutation function ran multiple paginated "
                                    "queries. Convex only supports a single paginated query in each function."
                                    in outcome.error_message)


async def test_num_items_zero_is_refused(dep: Deployment) -> None:
    outcome = await call(dep, "items:page", {"group": "g", "paginationOpts": {"numItems": 0.0, "cursor": None}})
    assert not outcome.success and "Uncaught Error: Must request at least 1 document while paginating" \
        in outcome.error_message


# -- Convex's page statuses (read_page_from_query, IndexRange) --------------------------------------


def ranks_of(value: dict[str, Any]) -> list[float]:
    return [d["rank"] for d in value["page"]]


async def test_maximum_rows_read_cuts_the_page_with_split_required(dep: Deployment) -> None:
    await fill(dep, "g", [float(i) for i in range(10)])
    cut = (await run_page(dep, "g", {"numItems": 10.0, "cursor": None, "maximumRowsRead": 4.0})).value
    assert ranks_of(cut) == [0.0, 1.0, 2.0, 3.0]
    assert cut["pageStatus"] == "SplitRequired" and cut["isDone"] is False
    # The split cursor is the middle of the rows read; the halves are bounded, so no limit applies.
    left = (await run_page(dep, "g", {"numItems": 10.0, "cursor": None, "endCursor": cut["splitCursor"],
                                      "maximumRowsRead": 4.0})).value
    right = (await run_page(dep, "g", {"numItems": 10.0, "cursor": cut["splitCursor"],
                                       "endCursor": cut["continueCursor"], "maximumRowsRead": 4.0})).value
    assert (ranks_of(left), ranks_of(right)) == ([0.0, 1.0, 2.0], [3.0])
    assert left["pageStatus"] is None and right["pageStatus"] is None
    # A bounded page is never cut, but the soft limit still applies: 3 rows read > 3/4 of 1.
    tight = (await run_page(dep, "g", {"numItems": 10.0, "cursor": None, "endCursor": cut["splitCursor"],
                                       "maximumRowsRead": 1.0})).value
    assert ranks_of(tight) == [0.0, 1.0, 2.0] and tight["pageStatus"] == "SplitRecommended"
    # The next page continues right after the last row read.
    nxt = (await run_page(dep, "g", {"numItems": 10.0, "cursor": cut["continueCursor"], "maximumRowsRead": 4.0})).value
    assert ranks_of(nxt) == [4.0, 5.0, 6.0, 7.0]
    last = (await run_page(dep, "g", {"numItems": 10.0, "cursor": nxt["continueCursor"], "maximumRowsRead": 4.0})).value
    assert ranks_of(last) == [8.0, 9.0] and last["isDone"] is True and last["pageStatus"] is None


async def test_split_recommended_past_three_quarters_of_a_read_limit(dep: Deployment) -> None:
    await fill(dep, "g", [float(i) for i in range(10)])
    soft = (await run_page(dep, "g", {"numItems": 7.0, "cursor": None, "maximumRowsRead": 8.0})).value
    assert ranks_of(soft) == [float(i) for i in range(7)] and soft["pageStatus"] == "SplitRecommended"
    under = (await run_page(dep, "g", {"numItems": 6.0, "cursor": None, "maximumRowsRead": 8.0})).value
    assert len(under["page"]) == 6 and under["pageStatus"] is None  # 6 rows read: exactly 3/4, not past it
    # maximumBytesRead: checked before each row, so a page always holds at least one.
    one = (await run_page(dep, "g", {"numItems": 5.0, "cursor": None, "maximumBytesRead": 1.0})).value
    assert ranks_of(one) == [0.0] and one["pageStatus"] == "SplitRequired" and one["splitCursor"] is None
    for zero in ({"maximumRowsRead": 0.0}, {"maximumBytesRead": 0.0}):
        outcome = await call(dep, "items:page", {"group": "g", "paginationOpts": {"numItems": 1.0, "cursor": None,
                                                                                **zero}})
        assert "Uncaught Error: maximumRowsRead and maximumBytesRead must be greater than 0" in outcome.error_message
    outcome = await call(dep, "items:page", {"group": "g", "paginationOpts": {"numItems": 32001.0, "cursor": None}})
    assert "Uncaught Error: Requested too many items: 32001" in outcome.error_message


async def test_a_page_of_more_than_6144_items_recommends_a_split(dep: Deployment) -> None:
    for start in range(0, 6200, 2000):
        await ok(dep, "items:addMany", {"docs": [{"group": "big", "rank": float(i)}
                                                 for i in range(start, min(start + 2000, 6200))]})
    big = (await run_page(dep, "big", {"numItems": 6200.0, "cursor": None})).value
    assert len(big["page"]) == 6200 and big["pageStatus"] == "SplitRecommended"
    exactly = (await run_page(dep, "big", {"numItems": 6144.0, "cursor": None})).value
    assert len(exactly["page"]) == 6144 and exactly["pageStatus"] is None
