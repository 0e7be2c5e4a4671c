"""Key decisions of a day, for the standup: Claude picks them when `ANTHROPIC_API_KEY` is set, a
documented rule picks them otherwise (and whenever Claude fails).

    result = await ctx.run_action(internal.decisions.pick, {"standupId": sid, "startMs": s, "endMs": e})
    # {"decisions": ["Ship the auth fix on Friday", ...], "source": "claude" | "rule"}

Flow (functions/telegram.py): the nightly tick calls `standups:generateDailyStandup` (a mutation: no
I/O), then this action per tenant, then `telegram:finalizeStandup` writes the decisions into the
standup, then the send. `pick` only reads; it never writes.

Input: the activity feed and task comments of the standup's tenant created in [startMs, endMs) (the
standup's local day), newest first, at most MAX_ACTIVITIES + MAX_COMMENTS entries (`digest`).

The rule (`pick_by_rule`), newest first within each class, classes in this order, duplicates
dropped, at most $NOVA_DECISIONS_MAX (default 5):
  1. explicit decisions: the "Decision: ..." lines of comments (tasks:addComment records them in the
     comment activity's `metadata.decisions`);
  2. comment lines saying "decided", "decision", "we will", "we'll" or "agreed" (the line, trimmed);
  3. completed tasks (`task_completed` activities, and `task_moved` to done): "Completed: <title>".

Claude (`anthropic` package, `AsyncAnthropic`): the digest goes out as one bounded text
(MAX_DIGEST_CHARS), the reply must be a JSON array of strings (a ```json fence is tolerated);
anything else — a network error, an API error, a reply that is not such an array — falls back to the
rule. Settings: ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL (default: the SDK's), NOVA_DECISIONS_MODEL
(default DEFAULT_MODEL), NOVA_DECISIONS_MAX. The key never reaches a log line.
"""

from __future__ import annotations

import asyncio
import builtins
import importlib
import json
import re
from datetime import datetime, timezone
from typing import Any

from engine import env, internal, internal_action, internal_query, v

from ._errors import app_error

API_KEY_ENV = "ANTHROPIC_API_KEY"
BASE_URL_ENV = "ANTHROPIC_BASE_URL"
MODEL_ENV = "NOVA_DECISIONS_MODEL"
MAX_ENV = "NOVA_DECISIONS_MAX"
DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_MAX = 5
MAX_ACTIVITIES = 200
MAX_COMMENTS = 100
MAX_COMMENT_CHARS = 600           # per comment in the digest
MAX_DIGEST_CHARS = 12_000         # the whole digest sent to Claude
MAX_DECISION_CHARS = 300          # one decision, as stored in the standup
CLAUDE_TIMEOUT_S = 30.0
CLAUDE_MAX_TOKENS = 600

KEYWORDS = re.compile(r"\b(decided|decision|we will|we'll|agreed)\b", re.IGNORECASE)
DECISION_LINE = re.compile(r"^\s*decision:", re.IGNORECASE)
COMPLETED_TITLE = re.compile(r'"(.*)"')


def max_decisions() -> int:
    raw = env.get(MAX_ENV)
    if not raw:
        return DEFAULT_MAX
    try:
        n = int(raw)
    except ValueError:
        n = -1
    if not 0 <= n <= 50:
        raise app_error("CONFIG_INVALID", f"{MAX_ENV} must be an integer from 0 to 50.")
    return n


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- the digest ----------------------------------------------------------------------------------

window_args = {"standupId": v.id("standups"), "startMs": v.number(), "endMs": v.number()}
digest_result = v.object({
    "activities": v.array(v.object({
        "type": v.string(), "message": v.string(), "time": v.number(),
        "decisions": v.optional(v.array(v.string())), "to": v.optional(v.string()),
    })),
    "comments": v.array(v.object({"author": v.string(), "task": v.string(), "content": v.string(),
                                  "time": v.number()})),
})


@internal_query(args=window_args, returns=digest_result)
async def digest(ctx, args):
    """The day's activities and comments of the standup's tenant, newest first, bounded."""
    standup = await ctx.db.get(args["standupId"])
    if standup is None:
        raise app_error("NOT_FOUND", "No such standup.", id=args["standupId"])
    tenant, start, end = standup["tenantId"], args["startMs"], args["endMs"]
    activities = await (ctx.db.query("activities")
                        .with_index("by_tenant", lambda q: q.eq("tenantId", tenant)
                                    .gte("_creationTime", start).lt("_creationTime", end))
                        .order("desc").take(MAX_ACTIVITIES))
    comments = await (ctx.db.query("taskComments")
                      .with_index("by_tenant", lambda q: q.eq("tenantId", tenant)
                                  .gte("_creationTime", start).lt("_creationTime", end))
                      .order("desc").take(MAX_COMMENTS))
    names: dict[str, str] = {}
    titles: dict[str, str] = {}

    async def author(c: dict[str, Any]) -> str:
        if c["authorType"] != "agent":
            return c["authorId"]
        if c["authorId"] not in names:
            agent_id = ctx.db.normalize_id("agents", c["authorId"])
            agent = await ctx.db.get(agent_id) if agent_id is not None else None
            names[c["authorId"]] = agent["name"] if agent is not None else c["authorId"]
        return names[c["authorId"]]

    async def title(task_id: str) -> str:
        if task_id not in titles:
            task = await ctx.db.get(task_id)
            titles[task_id] = task["title"] if task is not None else "(deleted task)"
        return titles[task_id]

    out_activities = []
    for a in activities:
        entry: dict[str, Any] = {"type": a["type"], "message": a["message"], "time": a["_creationTime"]}
        meta = a.get("metadata")
        if isinstance(meta, dict):
            if isinstance(meta.get("decisions"), builtins.list):
                entry["decisions"] = [d for d in meta["decisions"] if isinstance(d, str)]
            if isinstance(meta.get("to"), str):
                entry["to"] = meta["to"]
        out_activities.append(entry)
    out_comments = [{"author": await author(c), "task": await title(c["taskId"]),
                     "content": c["content"][:MAX_COMMENT_CHARS], "time": c["_creationTime"]}
                    for c in comments]
    return {"activities": out_activities, "comments": out_comments}


def digest_text(day: dict[str, Any], limit: int = MAX_DIGEST_CHARS) -> str:
    """The digest as lines for Claude, newest first, cut at `limit` characters (whole lines)."""
    rows: list[tuple[float, str]] = []
    for a in day["activities"]:
        if a["type"] == "comment":
            continue  # the comment itself is listed below, in full
        rows.append((a["time"], f"activity {a['type']}: {a['message']}"))
    for c in day["comments"]:
        rows.append((c["time"], f'comment by {c["author"]} on "{c["task"]}": {_clip(c["content"], MAX_COMMENT_CHARS)}'))
    rows.sort(key=lambda r: r[0], reverse=True)
    lines: list[str] = []
    used = 0
    for when, text in rows:
        stamp = datetime.fromtimestamp(when / 1000, tz=timezone.utc).strftime("%H:%M")
        line = f"[{stamp} UTC] {text}"
        if used + len(line) + 1 > limit:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(lines)


# -- the rule ------------------------------------------------------------------------------------

def pick_by_rule(day: dict[str, Any], limit: int) -> list[str]:
    explicit: list[str] = []
    said: list[str] = []
    completed: list[str] = []
    for a in day["activities"]:  # newest first
        explicit += a.get("decisions", [])
        if a["type"] == "task_completed" or (a["type"] == "task_moved" and a.get("to") == "done"):
            found = COMPLETED_TITLE.search(a["message"])
            completed.append(f"Completed: {found.group(1) if found else a['message']}")
    for c in day["comments"]:  # newest first
        for line in c["content"].splitlines():
            if KEYWORDS.search(line) and not DECISION_LINE.match(line):
                said.append(line.strip(" -*•\t"))
    picked: list[str] = []
    seen: set[str] = set()
    for text in explicit + said + completed:
        text = _clip(text, MAX_DECISION_CHARS)
        key = text.casefold()
        if text and key not in seen:
            seen.add(key)
            picked.append(text)
        if len(picked) >= limit:
            break
    return picked


# -- Claude --------------------------------------------------------------------------------------

PROMPT = """You are preparing the daily standup of a software team of humans and AI agents.
Below is the team's activity feed and task comments for the day, newest first.
Pick at most {limit} KEY DECISIONS made today: choices that change what the team does next
(a plan, a technology, a priority, a deadline, a scope cut). Not routine progress.
Write each as one short sentence in plain text. If there were none, answer [].
Answer with ONLY a JSON array of strings, nothing else.

<feed>
{feed}
</feed>"""


def parse_reply(text: str, limit: int) -> list[str]:
    """The JSON array of strings in Claude's reply; ValueError if there is none."""
    body = text.strip()
    fence = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    if fence:
        body = fence.group(1)
    try:
        value = json.loads(body)
    except ValueError:
        start, end = body.find("["), body.rfind("]")
        if start < 0 or end <= start:
            raise ValueError("the reply holds no JSON array") from None
        value = json.loads(body[start:end + 1])
    if not isinstance(value, builtins.list) or not all(isinstance(x, str) for x in value):
        raise ValueError("the reply is not a JSON array of strings")
    out: list[str] = []
    for item in value:
        item = _clip(item, MAX_DECISION_CHARS)
        if item and item not in out:
            out.append(item)
    return out[:limit]


async def ask_claude(feed: str, limit: int, api_key: str) -> list[str]:
    # Imported on first use, in a worker thread: the SDK takes seconds of CPU to import, which must
    # not stall the server's event loop (deployments without a key never load it).
    anthropic = await asyncio.to_thread(importlib.import_module, "anthropic")
    client = anthropic.AsyncAnthropic(api_key=api_key, base_url=env.get(BASE_URL_ENV) or None,
                                      timeout=CLAUDE_TIMEOUT_S, max_retries=1)
    try:
        reply = await client.messages.create(
            model=env.get(MODEL_ENV) or DEFAULT_MODEL,
            max_tokens=CLAUDE_MAX_TOKENS,
            messages=[{"role": "user", "content": PROMPT.format(limit=limit, feed=feed)}],
        )
    finally:
        await client.close()
    text = "".join(getattr(block, "text", "") for block in reply.content if getattr(block, "type", "") == "text")
    return parse_reply(text, limit)


@internal_action(args=window_args,
                 returns=v.object({"decisions": v.array(v.string()),
                                   "source": v.union(v.literal("claude"), v.literal("rule"))}))
async def pick(ctx, args):
    """The key decisions of [startMs, endMs) for the standup's tenant (nothing is written)."""
    limit = max_decisions()
    day = await ctx.run_query(internal.decisions.digest, args)
    api_key = env.get(API_KEY_ENV)
    if api_key and limit > 0:
        feed = digest_text(day)
        if not feed:
            return {"decisions": [], "source": "claude"}  # nothing happened: no call needed
        try:
            return {"decisions": await ask_claude(feed, limit, api_key), "source": "claude"}
        except Exception as e:  # any failure of the model falls back to the rule
            print(f"decisions: Claude failed ({type(e).__name__}: {_clip(str(e), 200)}); using the rule")
    return {"decisions": pick_by_rule(day, limit), "source": "rule"}
