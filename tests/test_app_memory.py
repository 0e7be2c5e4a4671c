"""Agent memory: the spec's WORKING.md and daily-note examples, replayed through the app's functions."""

import re
from datetime import datetime, timezone

from app_harness import ALICE, BOB, nova, app_env  # noqa: F401  (fixtures)

WORKING_MD = """# Current Task
Fix authentication token refresh bug

# Status
In progress - found the issue, writing fix

# Context
- Bug report: tokens expire but cached version returned
- File: src/api/auth.ts line 142
- Fix: add expiry check before return

# Next Steps
1. ✅ Locate the bug
2. 🔄 Write the fix
3. ⬜ Test locally
4. ⬜ Deploy to staging
5. ⬜ Notify Shuri for testing
"""

DAILY_NOTE = """# January 31, 2026

## 09:15 UTC
- Started auth token fix task
- Found issue in auth.ts

## 09:32 UTC
- Fix written and committed
- Deployed to staging
- Notified @Shuri for testing

## 10:45 UTC
- Shuri approved
- Deployed to production
- Closed task
"""


def at(hour: int, minute: int) -> float:
    return datetime(2026, 1, 31, hour, minute, 7, tzinfo=timezone.utc).timestamp() * 1000


async def test_working_memory_round_trips(nova):
    ids = await nova.seed("t1")
    friday = ids["Friday"]
    assert await nova.query("memory:getWorking", {"agentId": friday}) is None
    first = await nova.mutation("memory:setWorking", {"agentId": friday, "content": WORKING_MD})
    assert await nova.query("memory:getWorking", {"agentId": friday}) == WORKING_MD
    # Replacing keeps one `working` document per agent.
    updated = WORKING_MD.replace("2. 🔄 Write the fix", "2. ✅ Write the fix")
    assert await nova.mutation("memory:setWorking", {"agentId": friday, "content": updated}) == first
    assert await nova.query("memory:getWorking", {"agentId": friday}) == updated
    assert await nova.query("memory:getWorking", {"agentId": ids["Shuri"]}) is None


async def test_daily_note_replays_the_spec_example(nova, monkeypatch):
    friday = (await nova.seed("t1"))["Friday"]
    entries = [
        ((9, 15), "- Started auth token fix task\n- Found issue in auth.ts"),
        ((9, 32), "- Fix written and committed\n- Deployed to staging\n- Notified @Shuri for testing\n"),
        ((10, 45), "- Shuri approved\n- Deployed to production\n- Closed task"),
    ]
    results = []
    for (hour, minute), content in entries:
        nova.freeze_clock(monkeypatch, at(hour, minute))
        results.append(await nova.mutation("memory:appendDaily", {"agentId": friday, "content": content}))
    assert [r["time"] for r in results] == ["09:15", "09:32", "10:45"]
    assert {r["date"] for r in results} == {"2026-01-31"}
    assert len({r["id"] for r in results}) == 1  # one note per (agent, day)
    assert await nova.query("memory:getDaily", {"agentId": friday, "date": "2026-01-31"}) == DAILY_NOTE

    # The next day starts a new note; the list is newest first.
    nova.freeze_clock(monkeypatch, at(9, 0) + 86_400_000)
    await nova.mutation("memory:appendDaily", {"agentId": friday, "content": "- New day"})
    notes = await nova.query("memory:listDaily", {"agentId": friday})
    assert [n["date"] for n in notes] == ["2026-02-01", "2026-01-31"]
    assert notes[0]["content"] == "# February 1, 2026\n\n## 09:00 UTC\n- New day\n"
    assert await nova.query("memory:getDaily", {"agentId": friday, "date": "2026-01-30"}) is None


async def test_daily_note_uses_the_real_utc_clock(nova):
    friday = (await nova.seed("t1"))["Friday"]
    before = datetime.now(timezone.utc)
    result = await nova.mutation("memory:appendDaily", {"agentId": friday, "content": "- Woke up"})
    after = datetime.now(timezone.utc)
    assert result["date"] in {before.strftime("%Y-%m-%d"), after.strftime("%Y-%m-%d")}
    assert re.fullmatch(r"[0-2][0-9]:[0-5][0-9]", result["time"])
    note = await nova.query("memory:getDaily", {"agentId": friday, "date": result["date"]})
    assert note.endswith(f"\n\n## {result['time']} UTC\n- Woke up\n")


async def test_long_term_memory_and_bad_input(nova):
    ids = await nova.seed("t1")
    nova_id = ids["Nova"]
    assert await nova.query("memory:getLongTerm", {"agentId": nova_id}) is None
    await nova.mutation("memory:setLongTerm", {"agentId": nova_id, "content": "# MEMORY\n- Ship small"})
    assert await nova.query("memory:getLongTerm", {"agentId": nova_id}) == "# MEMORY\n- Ship small"

    assert await nova.error_code("mutation", "memory:appendDaily", {"agentId": nova_id, "content": " \n"}) == "EMPTY_CONTENT"
    assert await nova.error_code("query", "memory:getDaily", {"agentId": nova_id, "date": "31/01/2026"}) == "INVALID_DATE"
    assert await nova.error_code("mutation", "memory:setWorking",
                                 {"agentId": ids["#general"], "content": "x"}) == "NOT_AN_AGENT"
    # Another tenant cannot read or write this agent's memory.
    await nova.seed("t2")
    assert await nova.error_code("query", "memory:getLongTerm", {"agentId": nova_id}, auth=BOB) == "NOT_AN_AGENT"
    assert await nova.error_code("mutation", "memory:setWorking",
                                 {"agentId": nova_id, "content": "pwned"}, auth=BOB) == "NOT_AN_AGENT"
    assert await nova.query("memory:getWorking", {"agentId": nova_id}, auth=ALICE) is None
