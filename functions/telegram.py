"""Daily standups to Telegram: the nightly tick (generate → key decisions → send) and the sender.

Flow, every 15 minutes (crons.py, job STANDUP_JOB → `standupTick`):
  1. Is the standup moment due? The moment is $NOVA_STANDUP_TIME (default 23:30) in
     $NOVA_STANDUP_TIMEZONE (an IANA zone, default UTC). The tick reads its own run in `_cron_jobs`
     (planned time P, start time N, previous run) and fires for the latest moment S <= N with S >= P
     that the previous successful run did not already cover. Every real zone offset is a multiple
     of 15 minutes, so S falls on a tick; a tick that came late (the server was down over S) still
     fires once, when it runs. The date of the standup is S's local date. Daylight-saving changes
     need nothing: local time is computed at every tick.
  2. `standups:generateDailyStandup {date}` (a mutation, every tenant, idempotent per date/tenant).
  3. per tenant: `decisions:pick` (an action: Claude or the rule, see functions/decisions.py) over
     the local day [00:00, 24:00) in the zone, then `finalizeStandup` writes the decisions and the
     tasks completed during that local day (generateDailyStandup counts the UTC day of `date`).
  4. per tenant: the send (below). Then failed deliveries are retried, at most
     $TELEGRAM_MAX_ATTEMPTS (default 6) claims per standup, one per tick.
`POST /standup/generate` (steps 2-3, optionally 4) and `POST /standup/send` (step 4) run the same
code on demand (functions/_http/standup.py).

The send (`send_one`), with python-telegram-bot's `Bot(token, base_url=$TELEGRAM_API_BASE_URL)`:
- the standup is rendered as MarkdownV2 (every piece of text escaped with
  `telegram.helpers.escape_markdown(version=2)`) and split into parts of at most 4096 UTF-16 code
  units each (Telegram's limit, counted before entity parsing, so with room to spare), at line
  boundaries, long lines cut at spaces; parts are numbered "(i/n)";
- `claimDelivery` (a mutation) claims the standup before anything is sent: the first claim stores
  the parts in `standupDeliveries`; a second sender while the claim's lease runs gets "busy" and
  sends nothing; a standup already sent gets "already_sent";
- each part Telegram accepts is recorded at once (`recordPart`, which also renews the lease), so a
  retry after a partial failure sends only the parts not yet accepted, from the stored text;
- RetryAfter (HTTP 429) is honoured: the sender waits `retry_after` seconds and tries again, at
  most MAX_TRIES_PER_PART times and never a wait over $TELEGRAM_MAX_RETRY_AFTER_SECONDS (default
  30); beyond that the attempt stops and is recorded "failed" for the next tick;
- `finishDelivery` sets `standups.sentToTelegram` in the same transaction that records the last
  part as accepted — never before.
Limit: Telegram has no idempotency key, so a part whose request timed out after Telegram took it,
or a crash between Telegram's answer and `recordPart`, can show that one part twice on the retry.

Settings (engine.env): TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, TELEGRAM_CHAT_IDS (optional JSON object
tenant → chat id, overriding TELEGRAM_CHAT_ID per tenant), TELEGRAM_API_BASE_URL (default
https://api.telegram.org/bot, the shape of PTB's `base_url`: the token and method are appended),
TELEGRAM_MAX_RETRY_AFTER_SECONDS, TELEGRAM_MAX_ATTEMPTS, NOVA_STANDUP_TIMEZONE, NOVA_STANDUP_TIME.
The token never appears in a log line, an error or a stored document.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import secrets
import warnings
from datetime import date as Date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine import UNDEFINED, env, internal, internal_action, internal_mutation, internal_query, v

from ._clock import now_ms, parse_date
from ._docs import doc
from ._errors import app_error

STANDUP_JOB = "nightly standup"   # the cron job's name (crons.py); the tick reads its own run
TOKEN_ENV = "TELEGRAM_BOT_TOKEN"
CHAT_ENV = "TELEGRAM_CHAT_ID"
CHATS_ENV = "TELEGRAM_CHAT_IDS"
BASE_URL_ENV = "TELEGRAM_API_BASE_URL"
MAX_RETRY_AFTER_ENV = "TELEGRAM_MAX_RETRY_AFTER_SECONDS"
MAX_ATTEMPTS_ENV = "TELEGRAM_MAX_ATTEMPTS"
ZONE_ENV = "NOVA_STANDUP_TIMEZONE"
TIME_ENV = "NOVA_STANDUP_TIME"

DEFAULT_BASE_URL = "https://api.telegram.org/bot"
DEFAULT_TIME = "23:30"
DEFAULT_MAX_RETRY_AFTER_S = 30.0
DEFAULT_MAX_ATTEMPTS = 6
MAX_TRIES_PER_PART = 5
LEASE_MS = 10 * 60 * 1000         # a claim older than this (crashed sender) can be taken over
MESSAGE_LIMIT = 4096              # Telegram's limit for one message's text
COUNTER_RESERVE = 40              # room for the "(i/n)" line and the truncation note
MAX_PARTS = 20                    # a standup longer than this is cut (a note says so)

send_status = v.union(*(v.literal(s) for s in (
    "sent", "already_sent", "busy", "failed", "exhausted", "not_configured", "missing")))
send_result = v.object({
    "tenantId": v.string(),
    "standupId": v.string(),
    "status": send_status,
    "parts": v.number(),           # parts of the message
    "partsSent": v.number(),       # parts Telegram accepted during this call
    "error": v.optional(v.string()),
})
generate_result = v.object({
    "date": v.string(),
    "timeZone": v.string(),
    "standups": v.array(v.object({
        "tenantId": v.string(),
        "standupId": v.id("standups"),
        "created": v.boolean(),        # false: that date's standup was refreshed
        "decisions": v.number(),       # how many key decisions it has
        "decisionSource": v.union(v.literal("claude"), v.literal("rule")),
    })),
    "sends": v.optional(v.array(send_result)),
})
claim_result = v.object({
    "status": v.union(*(v.literal(s) for s in ("claimed", "already_sent", "busy", "exhausted", "missing"))),
    "deliveryId": v.optional(v.id("standupDeliveries")),
    "claimId": v.optional(v.string()),
    "chatId": v.optional(v.string()),
    "parts": v.optional(v.array(v.object({"text": v.string(), "sent": v.boolean()}))),
    "error": v.optional(v.string()),
})


# -- settings and local time ---------------------------------------------------------------------

def standup_zone() -> ZoneInfo:
    name = env.get(ZONE_ENV) or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise app_error("CONFIG_INVALID", f"{ZONE_ENV} must be an IANA time zone such as "
                        f"\"Europe/Berlin\"; {name!r} is not one.") from None


def standup_time() -> tuple[int, int]:
    raw = env.get(TIME_ENV) or DEFAULT_TIME
    try:
        parsed = datetime.strptime(raw, "%H:%M")
    except ValueError:
        raise app_error("CONFIG_INVALID", f"{TIME_ENV} must be a time like \"23:30\".") from None
    return parsed.hour, parsed.minute


def _number_env(name: str, default: float, lo: float, hi: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:
        raise app_error("CONFIG_INVALID", f"{name} must be a number from {lo:g} to {hi:g}.")
    return value


def max_attempts() -> int:
    return int(_number_env(MAX_ATTEMPTS_ENV, DEFAULT_MAX_ATTEMPTS, 1, 1000))


def local_day_bounds(date: str, zone: ZoneInfo) -> tuple[float, float]:
    """[start, end) in ms of the local day `date` in `zone` (23 or 25 hours on DST days)."""
    day = parse_date(date).date()
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    nxt = day + timedelta(days=1)
    end = datetime(nxt.year, nxt.month, nxt.day, tzinfo=zone)
    return start.timestamp() * 1000, end.timestamp() * 1000


def local_date(ms: float, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=zone).strftime("%Y-%m-%d")


def latest_moment(at_ms: float, zone: ZoneInfo, hm: tuple[int, int]) -> tuple[float, str]:
    """The latest standup moment (local hh:mm in `zone`) at or before `at_ms`, and its local date."""
    day: Date = datetime.fromtimestamp(at_ms / 1000, tz=zone).date()
    for back in (0, 1, 2):
        d = day - timedelta(days=back)
        moment = datetime(d.year, d.month, d.day, hm[0], hm[1], tzinfo=zone).timestamp() * 1000
        if moment <= at_ms:
            return moment, d.isoformat()
    raise AssertionError("unreachable: a day always has its moment")


def chat_for(tenant_id: str) -> str | None:
    raw = env.get(CHATS_ENV)
    if raw:
        try:
            chats = json.loads(raw)
        except ValueError:
            chats = None
        if not isinstance(chats, dict):
            raise app_error("CONFIG_INVALID", f"{CHATS_ENV} must be a JSON object of tenant → chat id.")
        chat = chats.get(tenant_id)
        if chat is not None:
            return str(chat)
    return env.get(CHAT_ENV) or None


# -- rendering -----------------------------------------------------------------------------------

def tg_len(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def escape(text: str) -> str:
    from telegram.helpers import escape_markdown

    return escape_markdown(text, version=2)


def wrap_escaped(raw: str, budget: int) -> list[str]:
    """`raw` escaped, as one line or as several lines of at most `budget` code units each, cut at
    spaces when possible (never inside an escape sequence)."""
    whole = escape(raw)
    if tg_len(whole) <= budget:
        return [whole]
    lines: list[str] = []
    cur: list[str] = []
    cur_len = 0
    last_space = -1  # index in `cur` just after the last space
    for ch in raw:
        piece = escape(ch)
        n = tg_len(piece)
        if cur_len + n > budget:
            rest = cur[last_space:] if 0 < last_space < len(cur) else []
            if sum(tg_len(p) for p in rest) + n > budget:
                rest = []  # no space to cut at that leaves room: cut here
            lines.append("".join(cur[:len(cur) - len(rest)]).rstrip())
            cur = rest
            cur_len = sum(tg_len(p) for p in cur)
            last_space = -1
        cur.append(piece)
        cur_len += n
        if ch == " ":
            last_space = len(cur)
    if cur:
        lines.append("".join(cur))
    return [line for line in lines if line]


def standup_lines(standup: dict[str, Any], names: dict[str, str], budget: int) -> list[str]:
    """The standup as MarkdownV2 lines, each at most `budget` code units; "" separates sections."""
    def who(agent_id: str) -> str:
        return names.get(agent_id, "(unknown agent)")

    def one_line(text: str) -> str:
        return " ".join(text.split())

    title = f"📋 Daily standup · {standup['date']}"
    if standup["tenantId"] != "default":
        title += f" · {standup['tenantId']}"
    lines = [f"*{escape(title)}*"]
    sections = [
        ("✅ Completed", [f"• {who(c['agentId'])}: {c['taskTitle']}" for c in standup["completed"]]),
        ("🔄 In progress", [f"• {who(c['agentId'])}: {c['taskTitle']} ({round(c['progress'])}%)"
                           for c in standup["inProgress"]]),
        ("🚫 Blocked", [f"• {who(c['agentId'])}: {c['reason']}" for c in standup["blocked"]]),
        ("👀 Needs review", [f"• {c['taskTitle']}" for c in standup["needsReview"]]),
        ("🧭 Key decisions", [f"• {d}" for d in standup["decisions"]]),
    ]
    if not any(items for _, items in sections):
        lines += ["", escape("Quiet day: nothing completed, in progress, blocked or waiting for review.")]
    for header, items in sections:
        if items:
            lines += ["", f"*{escape(header)}*"]
            for item in items:
                lines += wrap_escaped(one_line(item), budget)
    return lines


def split_message(lines: list[str], limit: int = MESSAGE_LIMIT, max_parts: int = MAX_PARTS) -> list[str]:
    """Pack lines (each already within `limit - COUNTER_RESERVE`) into parts of at most `limit`
    code units; with several parts each ends with an italic "(i/n)"; beyond `max_parts` the rest is
    dropped and the last part says so."""
    budget = limit - COUNTER_RESERVE
    parts: list[list[str]] = []
    cur: list[str] = []
    cur_len = 0
    for line in lines:
        add = tg_len(line) + (1 if cur else 0)
        if cur and cur_len + add > budget:
            parts.append(cur)
            cur, cur_len, add = [], 0, tg_len(line)
        if not cur and line == "":
            continue  # no part starts with a blank line
        cur.append(line)
        cur_len += add
    if cur:
        parts.append(cur)
    truncated = len(parts) > max_parts
    parts = parts[:max_parts]
    texts = ["\n".join(p).strip("\n") for p in parts]
    if truncated:
        texts[-1] += "\n" + escape("… (truncated)")
    if len(texts) > 1:
        texts = [f"{t}\n_{escape(f'({i}/{len(texts)})')}_" for i, t in enumerate(texts, 1)]
    return texts


def render_standup(standup: dict[str, Any], names: dict[str, str]) -> list[str]:
    return split_message(standup_lines(standup, names, MESSAGE_LIMIT - COUNTER_RESERVE))


# -- database side: reads, the claim, progress ---------------------------------------------------

@internal_query(args={"standupId": v.id("standups")},
                returns=v.union(v.null(), v.object({"standup": doc("standups"),
                                                    "names": v.record(v.string(), v.string())})))
async def standupView(ctx, args):
    """The standup and its agents' names (None if the standup does not exist)."""
    standup = await ctx.db.get(args["standupId"])
    if standup is None:
        return None
    names: dict[str, str] = {}
    for item in standup["completed"] + standup["inProgress"] + standup["blocked"]:
        if item["agentId"] not in names:
            agent = await ctx.db.get(item["agentId"])
            names[item["agentId"]] = agent["name"] if agent is not None else "(unknown agent)"
    return {"standup": standup, "names": names}


@internal_query(args={"date": v.string()}, returns=v.array(v.object({
    "standupId": v.id("standups"), "tenantId": v.string(), "sentToTelegram": v.boolean()})))
async def standupsForDate(ctx, args):
    """Every tenant's standup of `date`."""
    parse_date(args["date"])
    found = await ctx.db.query("standups").with_index("by_date", lambda r: r.eq("date", args["date"])).collect()
    return [{"standupId": s["_id"], "tenantId": s["tenantId"], "sentToTelegram": s["sentToTelegram"]} for s in found]


@internal_mutation(args={"standupId": v.id("standups"), "decisions": v.array(v.string()),
                         "dayStartMs": v.number(), "dayEndMs": v.number()}, returns=v.null())
async def finalizeStandup(ctx, args):
    """Write the picked decisions, and the tasks completed during the standup's local day."""
    standup = await ctx.db.get(args["standupId"])
    if standup is None:
        raise app_error("NOT_FOUND", "No such standup.", id=args["standupId"])
    tenant = standup["tenantId"]
    done = await (ctx.db.query("tasks")
                  .with_index("by_completed", lambda q: q.eq("tenantId", tenant)
                              .gte("completedAt", args["dayStartMs"]).lt("completedAt", args["dayEndMs"]))
                  .collect())
    completed = [{"agentId": t["assigneeIds"][0], "taskTitle": t["title"]}
                 for t in done if t["status"] == "done" and t["assigneeIds"]]
    await ctx.db.patch(standup["_id"], {"decisions": args["decisions"], "completed": completed})
    return None


async def _delivery(ctx, standup_id: str) -> dict[str, Any] | None:
    return await ctx.db.query("standupDeliveries").with_index("by_standup", lambda q: q.eq("standupId", standup_id)).first()


@internal_query(args={"standupId": v.id("standups")}, returns=v.union(doc("standupDeliveries"), v.null()))
async def deliveryOf(ctx, args):
    """The standup's Telegram delivery (status, attempts, lastError, parts with their messageId), or None."""
    return await _delivery(ctx, args["standupId"])


def _claimed(delivery_id: str, claim: str, chat: str, parts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"status": "claimed", "deliveryId": delivery_id, "claimId": claim, "chatId": chat,
            "parts": [{"text": p["text"], "sent": "messageId" in p} for p in parts]}


@internal_mutation(args={"standupId": v.id("standups"), "chatId": v.string(), "parts": v.array(v.string()),
                         "force": v.boolean(), "maxAttempts": v.number()}, returns=claim_result)
async def claimDelivery(ctx, args):
    """Claim the standup for one sender. Returns {"status": "claimed", deliveryId, claimId, chatId,
    parts: [{text, sent}]} or {"status": "already_sent" | "busy" | "exhausted" | "missing"}.
    The parts of the first claim are kept until one of them is accepted; from then on every retry
    sends the stored parts, to the stored chat."""
    standup = await ctx.db.get(args["standupId"])
    if standup is None:
        return {"status": "missing"}
    delivery = await _delivery(ctx, standup["_id"])
    if standup["sentToTelegram"]:
        return {"status": "already_sent"}
    now = now_ms()
    claim = secrets.token_hex(8)
    if delivery is None:
        parts = [{"text": t} for t in args["parts"]]
        delivery_id = await ctx.db.insert("standupDeliveries", {
            "standupId": standup["_id"], "date": standup["date"], "chatId": args["chatId"],
            "status": "sending", "claimId": claim, "claimedAt": now, "parts": parts, "attempts": 1.0,
            "tenantId": standup["tenantId"],
        })
        return _claimed(delivery_id, claim, args["chatId"], parts)
    if delivery["status"] == "sent":  # sentToTelegram lost? never: both are written together
        await ctx.db.patch(standup["_id"], {"sentToTelegram": True})
        return {"status": "already_sent"}
    if delivery["status"] == "sending" and delivery.get("claimedAt", 0) + LEASE_MS > now:
        return {"status": "busy"}
    if not args["force"] and delivery["attempts"] >= args["maxAttempts"]:
        return {"status": "exhausted", "error": delivery.get("lastError", "")}
    patch: dict[str, Any] = {"status": "sending", "claimId": claim, "claimedAt": now,
                             "attempts": delivery["attempts"] + 1}
    parts, chat = delivery["parts"], delivery["chatId"]
    if not any("messageId" in p for p in parts):  # nothing went out yet: send the current standup
        parts, chat = [{"text": t} for t in args["parts"]], args["chatId"]
        patch.update(parts=parts, chatId=chat)
    await ctx.db.patch(delivery["_id"], patch)
    return _claimed(delivery["_id"], claim, chat, parts)


async def _held(ctx, delivery_id: str, claim: str) -> dict[str, Any] | None:
    delivery = await ctx.db.get(delivery_id)
    if delivery is None or delivery["status"] != "sending" or delivery.get("claimId") != claim:
        return None
    return delivery


@internal_mutation(args={"deliveryId": v.id("standupDeliveries"), "claimId": v.string(), "index": v.number(),
                         "messageId": v.number()}, returns=v.boolean())
async def recordPart(ctx, args):
    """Telegram accepted part `index`; renews the lease. False if the claim was lost."""
    delivery = await _held(ctx, args["deliveryId"], args["claimId"])
    if delivery is None:
        return False
    parts = delivery["parts"]
    i = int(args["index"])
    parts[i] = {**parts[i], "messageId": args["messageId"]}
    await ctx.db.patch(delivery["_id"], {"parts": parts, "claimedAt": now_ms()})
    return True


@internal_mutation(args={"deliveryId": v.id("standupDeliveries"), "claimId": v.string()}, returns=v.boolean())
async def finishDelivery(ctx, args):
    """Every part was accepted: the delivery is sent and the standup `sentToTelegram`, together."""
    delivery = await _held(ctx, args["deliveryId"], args["claimId"])
    if delivery is None or not all("messageId" in p for p in delivery["parts"]):
        return False
    now = now_ms()
    await ctx.db.patch(delivery["_id"], {"status": "sent", "sentAt": now, "lastError": UNDEFINED})
    await ctx.db.patch(delivery["standupId"], {"sentToTelegram": True})
    return True


@internal_mutation(args={"deliveryId": v.id("standupDeliveries"), "claimId": v.string(), "error": v.string()},
                   returns=v.boolean())
async def releaseDelivery(ctx, args):
    """The attempt stopped (error, or rate limited for too long): recorded for a later retry."""
    delivery = await _held(ctx, args["deliveryId"], args["claimId"])
    if delivery is None:
        return False
    await ctx.db.patch(delivery["_id"], {"status": "failed", "lastError": args["error"][:500]})
    return True


@internal_query(args={"maxAttempts": v.number()}, returns=v.array(v.id("standups")))
async def retryableDeliveries(ctx, args):
    """Standups whose delivery failed (with attempts left) or whose sender's lease ran out."""
    failed = await (ctx.db.query("standupDeliveries")
                    .with_index("by_status", lambda q: q.eq("status", "failed").lt("attempts", args["maxAttempts"]))
                    .take(100))
    stale_before = now_ms() - LEASE_MS
    stuck = await (ctx.db.query("standupDeliveries")
                   .with_index("by_status", lambda q: q.eq("status", "sending"))
                   .filter(lambda q: q.lt(q.field("claimedAt"), stale_before))
                   .take(100))
    return [d["standupId"] for d in failed + stuck]


# -- the send ------------------------------------------------------------------------------------

class _Stop(Exception):
    """This attempt ends here; the message says why (no secrets)."""


def _retry_seconds(error: Any) -> float:
    from telegram.warnings import PTBDeprecationWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)  # int vs timedelta migration notice
        value = error.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


async def _send_part(bot: Any, chat: str, text: str, max_wait: float) -> Any:
    from telegram.error import RetryAfter

    for _ in range(MAX_TRIES_PER_PART):
        try:
            return await bot.send_message(chat_id=chat, text=text, parse_mode="MarkdownV2")
        except RetryAfter as e:
            wait = _retry_seconds(e)
            if wait > max_wait:
                raise _Stop(f"rate limited: Telegram asked to wait {wait:g} s (over the {max_wait:g} s bound)") from None
            await asyncio.sleep(wait)
    raise _Stop(f"rate limited: still throttled after {MAX_TRIES_PER_PART} tries")


def _result(standup: dict[str, Any] | None, standup_id: str, status: str, parts: int = 0, sent: int = 0,
            error: str | None = None) -> dict[str, Any]:
    out = {"tenantId": standup["tenantId"] if standup else "", "standupId": standup_id, "status": status,
           "parts": float(parts), "partsSent": float(sent)}
    if error:
        out["error"] = error
    return out


async def send_one(ctx, standup_id: str, force: bool) -> dict[str, Any]:
    """Send one standup (see the module docstring); never raises for Telegram's failures."""
    view = await ctx.run_query(internal.telegram.standupView, {"standupId": standup_id})
    if view is None:
        return _result(None, standup_id, "missing")
    standup = view["standup"]
    if standup["sentToTelegram"]:
        return _result(standup, standup_id, "already_sent")
    token, chat = env.get(TOKEN_ENV), chat_for(standup["tenantId"])
    if not token or not chat:
        missing = TOKEN_ENV if not token else CHAT_ENV
        return _result(standup, standup_id, "not_configured", error=f"{missing} is not set")
    # The first import of python-telegram-bot costs noticeable CPU: not on the event loop.
    await asyncio.to_thread(importlib.import_module, "telegram.helpers")
    max_wait = _number_env(MAX_RETRY_AFTER_ENV, DEFAULT_MAX_RETRY_AFTER_S, 0, 3600)
    claim = await ctx.run_mutation(internal.telegram.claimDelivery, {
        "standupId": standup_id, "chatId": chat, "parts": render_standup(standup, view["names"]),
        "force": force, "maxAttempts": float(max_attempts())})
    if claim["status"] != "claimed":
        return _result(standup, standup_id, claim["status"], error=claim.get("error") or None)
    parts = claim["parts"]
    held = {"deliveryId": claim["deliveryId"], "claimId": claim["claimId"]}
    sent = 0
    try:
        from telegram import Bot
        from telegram.error import TelegramError

        bot = Bot(token, base_url=env.get(BASE_URL_ENV) or DEFAULT_BASE_URL)
        try:
            async with bot:  # getMe first: a bad token fails before any message
                for i, part in enumerate(parts):
                    if part["sent"]:
                        continue
                    message = await _send_part(bot, claim["chatId"], part["text"], max_wait)
                    if not await ctx.run_mutation(internal.telegram.recordPart,
                                                  {**held, "index": float(i), "messageId": float(message.message_id)}):
                        raise _Stop("the claim was taken over by another sender")
                    sent += 1
        except TelegramError as e:
            raise _Stop(f"{type(e).__name__}: {e}") from None
        if not await ctx.run_mutation(internal.telegram.finishDelivery, held):
            raise _Stop("the claim was taken over by another sender")
    except (_Stop, OSError) as e:
        error = str(e).replace(token, "<token>")
        await ctx.run_mutation(internal.telegram.releaseDelivery, {**held, "error": error})
        print(f"telegram: standup {standup['date']} ({standup['tenantId']}) not sent: {error}")
        return _result(standup, standup_id, "failed", len(parts), sent, error)
    return _result(standup, standup_id, "sent", len(parts), sent)


@internal_action(args={"standupId": v.id("standups"), "force": v.optional(v.boolean())}, returns=send_result)
async def sendStandup(ctx, args):
    return await send_one(ctx, args["standupId"], args.get("force", True))


@internal_action(args={"date": v.optional(v.string()), "force": v.optional(v.boolean())},
                 returns=v.object({"date": v.string(), "results": v.array(send_result)}))
async def sendStandups(ctx, args):
    """Send every tenant's standup of `date` (default: today in the standup time zone)."""
    date = args["date"] if "date" in args else local_date(now_ms(), standup_zone())
    found = await ctx.run_query(internal.telegram.standupsForDate, {"date": date})
    return {"date": date, "results": [await send_one(ctx, s["standupId"], args.get("force", True)) for s in found]}


# -- generation ----------------------------------------------------------------------------------

async def generate(ctx, date: str, zone: ZoneInfo, send: bool) -> dict[str, Any]:
    start, end = local_day_bounds(date, zone)
    generated = await ctx.run_mutation(internal.standups.generateDailyStandup, {"date": date})
    standups = []
    for s in generated["standups"]:
        picked = await ctx.run_action(internal.decisions.pick,
                                      {"standupId": s["standupId"], "startMs": start, "endMs": end})
        await ctx.run_mutation(internal.telegram.finalizeStandup, {
            "standupId": s["standupId"], "decisions": picked["decisions"], "dayStartMs": start, "dayEndMs": end})
        standups.append({**s, "decisions": float(len(picked["decisions"])), "decisionSource": picked["source"]})
    out: dict[str, Any] = {"date": date, "timeZone": zone.key, "standups": standups}
    if send:
        out["sends"] = [await send_one(ctx, s["standupId"], False) for s in standups]
    return out


@internal_action(args={"date": v.optional(v.string()), "send": v.optional(v.boolean())}, returns=generate_result)
async def generateStandups(ctx, args):
    """Generate (and with `send`, send) every tenant's standup of `date` (default: today in the
    standup time zone), with key decisions. What `POST /standup/generate` runs."""
    zone = standup_zone()
    date = args["date"] if "date" in args else local_date(now_ms(), zone)
    parse_date(date)
    return await generate(ctx, date, zone, args.get("send", False))


@internal_action(args={"trigger": v.optional(v.string())}, returns=v.object({
    "moment": v.number(),                          # the latest standup moment (ms) at this tick
    "date": v.string(),                            # its local date
    "generated": v.union(generate_result, v.null()),  # set when this tick made that date's standups
    "retried": v.array(send_result),               # failed sends retried by this tick
}))
async def standupTick(ctx, args):
    """The 15-minute cron: generate and send when the standup moment is due, retry failed sends."""
    run = await ctx.run_query(internal.maintenance.cronRun, {"name": STANDUP_JOB}) \
        if args.get("trigger") == "cron" else None
    now = now_ms()
    planned, started = (run["planned"], run["started"]) if run else (now, now)
    zone, hm = standup_zone(), standup_time()
    moment, date = latest_moment(max(planned, started), zone, hm)
    previous = run["previous"] if run else None
    covered = previous is not None and previous["ok"] and previous["planned"] <= moment <= previous["started"]
    out: dict[str, Any] = {"moment": moment, "date": date, "generated": None, "retried": []}
    handled: set[str] = set()
    if moment >= planned and not covered:
        out["generated"] = await generate(ctx, date, zone, send=True)
        handled = {s["standupId"] for s in out["generated"]["standups"]}
    for standup_id in await ctx.run_query(internal.telegram.retryableDeliveries, {"maxAttempts": float(max_attempts())}):
        if standup_id not in handled:
            handled.add(standup_id)
            out["retried"].append(await send_one(ctx, standup_id, False))
    return out
