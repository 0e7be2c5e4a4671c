"""Cron jobs: the app's `crons.py` registry (Convex's `cronJobs()`) and the loop that runs them.

    from engine import cron_jobs, internal

    crons = cron_jobs()
    crons.interval("heartbeat", {"seconds": 30}, internal.agents.heartbeat)
    crons.cron("sync", "2,17,32,47 * * * *", internal.sync.run, {"full": False})
    crons.daily("standup", {"hourUTC": 23, "minuteUTC": 30}, internal.standups.generate)
    crons.weekly("digest", {"dayOfWeek": "sunday", "hourUTC": 3, "minuteUTC": 0}, internal.digest.send)

All schedules are UTC. Registration errors (a name used twice, a malformed expression or field)
raise `EngineError` while `crons.py` loads, naming the job. Cron expressions are parsed by croniter.

Each job is a document of the system table `_cron_jobs` (readable through `ctx.db.system`): `name`,
`function`, `args`, `schedule`, `state` (pending / inProgress), `nextRun` (ms), `lastRun` (`ts`,
`scheduledTime`, `outcome` success / failed, `error`) and `skippedRuns`. Semantics (Convex's):
- Interval jobs first run when they are first deployed, then every interval after the previous
  planned run; expression jobs run at the expression's next minute.
- At most one run of a job at a time. After a run, the next run is the first planned time after the
  previous one that is not already past; planned times that passed meanwhile (a run took longer
  than the interval, or the server was down) are skipped and counted in `skippedRuns`, never piled
  up. A job that came due while the server was down runs once when it comes back.
- A mutation run records its outcome in the same transaction as its writes; an action run is
  marked inProgress first, and one found inProgress at start is recorded failed, not re-run.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TYPE_CHECKING, cast

from croniter import croniter

from .catalog import define_system_table
from .errors import EngineError
from .loader import canonicalize_path
from .registration import function_name
from .runner import Auth
from .scheduler import INTERRUPTED, NODE_LOST, DueLoop, error_text, system_transaction
from .transaction import Transaction, _copy
from .values import decode_json, to_wire

if TYPE_CHECKING:
    from .deployment import Deployment

__all__ = ["cron_jobs", "cronJobs", "Crons", "CronJob", "CronSchedule", "CronService", "CRON_JOBS"]

log = logging.getLogger("engine.cron")

CRON_JOBS = "_cron_jobs"
define_system_table(CRON_JOBS, 2, {"by_name": ["name"], "by_next_run": ["nextRun"]})

MAX_COUNTED_SKIPS = 10_000  # skipped expression runs counted one by one (beyond that: a lower bound)
DAYS_OF_WEEK = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5,
                "saturday": 6}


# -- schedules -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CronSchedule:
    """Either a fixed interval in seconds or a five-field cron expression (UTC). `spec` is the
    Convex-shaped description stored in `_cron_jobs.schedule` ({"type": "daily", "hourUTC": 23, ...})."""

    spec: dict[str, Any]
    seconds: float | None = None
    expression: str | None = None

    def first_run(self, now_ms: float) -> float:
        return now_ms if self.seconds is not None else self.next_after(now_ms)

    def next_after(self, prev_ms: float) -> float:
        if self.seconds is not None:
            return prev_ms + self.seconds * 1000
        it = croniter(cast(str, self.expression), datetime.fromtimestamp(prev_ms / 1000, tz=timezone.utc))
        nxt = it.get_next(float) * 1000
        while nxt <= prev_ms:  # sub-second starts: croniter may round down onto `prev_ms`
            nxt = it.get_next(float) * 1000
        return nxt

    def advance(self, prev_ms: float, now_ms: float) -> tuple[float, int]:
        """(the first planned time after `prev_ms` that is not before `now_ms`, how many planned
        times were passed over)."""
        nxt = self.next_after(prev_ms)
        if nxt >= now_ms:
            return nxt, 0
        if self.seconds is not None:
            behind = math.ceil((now_ms - nxt) / (self.seconds * 1000))
            return nxt + behind * self.seconds * 1000, behind
        skipped = 0
        while nxt < now_ms and skipped < MAX_COUNTED_SKIPS:
            skipped += 1
            nxt = self.next_after(nxt)
        if nxt < now_ms:  # down for ages: stop counting, jump
            nxt = self.next_after(now_ms - 1)
        return nxt, skipped

    @classmethod
    def from_spec(cls, spec: dict[str, Any], job: str = "?") -> CronSchedule:
        kind = spec.get("type")
        if kind == "interval":
            return cls(dict(spec), seconds=float(spec["seconds"]))
        if kind == "cron":
            return cls(dict(spec), expression=_check_expression(job, spec["cron"]))
        if kind == "hourly":
            return cls(dict(spec), expression=f"{spec['minuteUTC']} * * * *")
        if kind == "daily":
            return cls(dict(spec), expression=f"{spec['minuteUTC']} {spec['hourUTC']} * * *")
        if kind == "weekly":
            return cls(dict(spec), expression=f"{spec['minuteUTC']} {spec['hourUTC']} * * "
                                              f"{DAYS_OF_WEEK[spec['dayOfWeek']]}")
        if kind == "monthly":
            return cls(dict(spec), expression=f"{spec['minuteUTC']} {spec['hourUTC']} {spec['day']} * *")
        raise EngineError("InvalidCronSchedule", f'Cron job "{job}" has an unknown schedule type {kind!r}.')


def _check_expression(job: str, expression: Any) -> str:
    if not isinstance(expression, str) or len(expression.split()) != 5 or not croniter.is_valid(expression):
        raise EngineError("InvalidCronExpression",
                          f'Cron job "{job}": "{expression}" is not a valid cron expression '
                          '(five fields: minute hour day-of-month month day-of-week, UTC).')
    return expression


def _integer(job: str, field: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) \
            or not lo <= value <= hi:
        raise EngineError("InvalidCronSchedule",
                          f'Cron job "{job}": {field} must be an integer from {lo} to {hi}, got {value!r}.')
    return int(value)


def _fields(job: str, schedule: Any, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(schedule, dict):
        raise EngineError("InvalidCronSchedule", f'Cron job "{job}": the schedule must be an object.')
    unknown = set(schedule) - allowed
    if unknown:
        raise EngineError("InvalidCronSchedule",
                          f'Cron job "{job}": unknown schedule field(s) {", ".join(sorted(unknown))}.')
    missing = allowed - set(schedule)
    if missing:
        raise EngineError("InvalidCronSchedule",
                          f'Cron job "{job}": missing schedule field(s) {", ".join(sorted(missing))}.')
    return schedule


# -- the registry (crons.py) ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CronJob:
    name: str
    schedule: CronSchedule
    function: Any  # a reference: "mod:fn", api.mod.fn, or the registered function
    args: dict[str, Any]

    def path(self) -> str:
        return canonicalize_path(function_name(self.function))


class Crons:
    """What `cron_jobs()` returns; the app's `crons.py` exports it as `crons`."""

    def __init__(self) -> None:
        self.jobs: dict[str, CronJob] = {}

    def interval(self, name: str, schedule: dict[str, Any], fn: Any, args: dict[str, Any] | None = None) -> None:
        """Every `{"seconds": n}`, `{"minutes": n}` or `{"hours": n}` (exactly one of them)."""
        if not isinstance(schedule, dict):
            raise EngineError("InvalidCronSchedule", f'Cron job "{name}": the schedule must be an object.')
        units = {"seconds": 1, "minutes": 60, "hours": 3600}
        given = [k for k in schedule if schedule[k] is not None]
        if len(given) != 1 or given[0] not in units:
            raise EngineError("InvalidCronSchedule",
                              f'Cron job "{name}": an interval needs exactly one of seconds, minutes or hours.')
        amount = schedule[given[0]]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount) \
                or amount <= 0:
            raise EngineError("InvalidCronSchedule",
                              f'Cron job "{name}": the interval must be a positive number, got {amount!r}.')
        seconds = float(amount * units[given[0]])
        self._add(name, CronSchedule({"type": "interval", "seconds": seconds}, seconds=seconds), fn, args)

    def cron(self, name: str, expression: str, fn: Any, args: dict[str, Any] | None = None) -> None:
        """A five-field cron expression, UTC: `"2,17,32,47 * * * *"`."""
        expression = _check_expression(name, expression)
        self._add(name, CronSchedule({"type": "cron", "cron": expression}, expression=expression), fn, args)

    def hourly(self, name: str, schedule: dict[str, Any], fn: Any, args: dict[str, Any] | None = None) -> None:
        s = _fields(name, schedule, {"minuteUTC"})
        spec = {"type": "hourly", "minuteUTC": _integer(name, "minuteUTC", s["minuteUTC"], 0, 59)}
        self._add(name, CronSchedule.from_spec(spec, name), fn, args)

    def daily(self, name: str, schedule: dict[str, Any], fn: Any, args: dict[str, Any] | None = None) -> None:
        s = _fields(name, schedule, {"hourUTC", "minuteUTC"})
        spec = {"type": "daily", "hourUTC": _integer(name, "hourUTC", s["hourUTC"], 0, 23),
                "minuteUTC": _integer(name, "minuteUTC", s["minuteUTC"], 0, 59)}
        self._add(name, CronSchedule.from_spec(spec, name), fn, args)

    def weekly(self, name: str, schedule: dict[str, Any], fn: Any, args: dict[str, Any] | None = None) -> None:
        s = _fields(name, schedule, {"dayOfWeek", "hourUTC", "minuteUTC"})
        day = s["dayOfWeek"]
        if day not in DAYS_OF_WEEK:
            raise EngineError("InvalidCronSchedule", f'Cron job "{name}": dayOfWeek must be one of '
                              f'{", ".join(DAYS_OF_WEEK)}, got {day!r}.')
        spec = {"type": "weekly", "dayOfWeek": day, "hourUTC": _integer(name, "hourUTC", s["hourUTC"], 0, 23),
                "minuteUTC": _integer(name, "minuteUTC", s["minuteUTC"], 0, 59)}
        self._add(name, CronSchedule.from_spec(spec, name), fn, args)

    def monthly(self, name: str, schedule: dict[str, Any], fn: Any, args: dict[str, Any] | None = None) -> None:
        """On `day` (1-31; months without that day are skipped) at hourUTC:minuteUTC."""
        s = _fields(name, schedule, {"day", "hourUTC", "minuteUTC"})
        spec = {"type": "monthly", "day": _integer(name, "day", s["day"], 1, 31),
                "hourUTC": _integer(name, "hourUTC", s["hourUTC"], 0, 23),
                "minuteUTC": _integer(name, "minuteUTC", s["minuteUTC"], 0, 59)}
        self._add(name, CronSchedule.from_spec(spec, name), fn, args)

    def _add(self, name: str, schedule: CronSchedule, fn: Any, args: dict[str, Any] | None) -> None:
        if not isinstance(name, str) or not name:
            raise EngineError("InvalidCronJob", f"A cron job needs a non-empty string name, got {name!r}.")
        if name in self.jobs:
            raise EngineError("DuplicateCronJob", f'Cron job "{name}" is registered twice; names must be unique.')
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise EngineError("InvalidCronJob", f'Cron job "{name}": args must be an object.')
        try:
            to_wire(args)
        except (TypeError, ValueError) as e:
            raise EngineError("InvalidCronJob", f'Cron job "{name}": args are not Convex values: {e}') from None
        if not isinstance(fn, str):
            try:
                function_name(fn)
            except TypeError as e:
                raise EngineError("InvalidCronJob", f'Cron job "{name}": {e}') from None
            except ValueError:
                pass  # a registered function the loader has not named yet; resolved at start
        self.jobs[name] = CronJob(name, schedule, fn, _copy(args))


def cron_jobs() -> Crons:
    """Convex's `cronJobs()`."""
    return Crons()


cronJobs = cron_jobs


# -- running them --------------------------------------------------------------------------------
class _RunChanged(Exception):
    """The job document changed (resynced, removed) since the run was launched: do not record."""


class CronService(DueLoop):
    """Keeps `_cron_jobs` in step with the app's registry and runs jobs when due."""

    name = "crons"

    def _table(self):
        return self.dep.catalog.by_name[CRON_JOBS]

    async def start(self) -> None:
        await self.sync()
        await super().start()

    async def sync(self) -> None:
        """Make `_cron_jobs` match `dep.app.crons` (at start, and after a code reload): add new
        jobs, update changed ones (a new schedule starts over from now), delete removed ones, and
        record runs that a restart cut off. Raises EngineError naming a job whose function is
        missing or not a mutation/action."""
        registry = self.dep.app.crons
        if registry is not None and not isinstance(registry, Crons):
            raise EngineError("InvalidCronJob", "crons.py must export `crons = cron_jobs()`.")
        jobs = dict(registry.jobs) if registry is not None else {}
        paths = {}
        for job in jobs.values():
            try:
                path = job.path()
            except (TypeError, ValueError, EngineError) as e:
                raise EngineError("InvalidCronJob", f'Cron job "{job.name}": {e}') from None
            fn = self.dep.app.functions.get(path)
            if fn is None or fn.kind not in ("mutation", "action"):
                what = "does not exist" if fn is None else f"is a {fn.kind}"
                raise EngineError("InvalidCronJob", f'Cron job "{job.name}" runs {path}, which {what}; '
                                  "a cron job runs a mutation or an action.")
            paths[job.name] = path
        # A run in progress on another node serving this database is not a run a restart cut off.
        alone = not await self.dep.persistence.live_peers()
        async with self._lock:
            await system_transaction(self.dep, lambda txn: self._sync_in(txn, jobs, paths, alone))
        self.wake()

    async def _sync_in(self, txn: Transaction, jobs: dict[str, CronJob], paths: dict[str, str],
                       alone: bool = True) -> None:
        table = self._table()
        ix = table.indexes["by_name"]
        now = self.clock.now_ms()
        scan = txn.scan(table, ix, b"", b"\xff", False)
        existing = {doc["name"]: doc async for _, doc in scan}
        scan.finish()  # the whole range is in the read set: nodes starting together add each job once
        for name, doc in existing.items():
            if name not in jobs:
                await txn.delete(doc["_id"])
        for name, job in jobs.items():
            fields = {"name": name, "function": paths[name], "args": job.args, "schedule": job.schedule.spec}
            doc = existing.get(name)
            if doc is None:
                await txn.insert(table, {**fields, "state": {"kind": "pending"},
                                   "nextRun": job.schedule.first_run(now), "skippedRuns": 0.0})
                continue
            patch: dict[str, Any] = {}
            if doc["state"]["kind"] == "inProgress" and doc["_id"] not in self._running and alone:
                log.warning('cron job "%s": its run was interrupted by a restart', name)
                patch.update(_after_run(doc, job.schedule, now, doc.get("startedAt", now), "failed", INTERRUPTED))
            patch.update({k: v for k, v in fields.items() if doc.get(k) != v})
            if "schedule" in patch:
                patch["nextRun"] = job.schedule.first_run(now)
            if patch:
                await txn.patch(doc["_id"], patch)

    async def _pass(self, now: float) -> float | None:
        table = self._table()
        ix = table.indexes["by_next_run"]
        next_due = math.inf
        waiting = 0  # due and not started (see Scheduler._pass); a cron has one document per job
        snapshot = await self.dep.persistence.snapshot()
        try:
            async for _, doc_id, raw in snapshot.scan(ix.id, b"", b"\xff", False):
                doc = decode_json(raw)
                if doc["nextRun"] > now:
                    next_due = min(next_due, doc["nextRun"])
                    break
                if doc["state"]["kind"] != "pending":
                    continue  # running here; or cut off by a restart, which `sync` records
                blocked = self._blocked_until(doc_id, now)
                if blocked is not None:
                    if blocked != math.inf:
                        waiting += 1
                    next_due = min(next_due, blocked)
                    continue
                if not self._has_room():
                    waiting += 1
                    continue
                self._launch(doc_id, lambda doc=doc: self._execute(doc))
        finally:
            snapshot.close()
        self.due_waiting = waiting
        return next_due if next_due != math.inf else None

    async def in_progress(self) -> list[tuple[str, Any]]:
        table = self._table()
        snapshot = await self.dep.persistence.snapshot()
        try:
            return [(doc_id, (doc["nextRun"], doc.get("startedAt")))
                    async for _, doc_id, raw in snapshot.scan(table.indexes["by_name"].id, b"", b"\xff", False)
                    if (doc := decode_json(raw))["state"]["kind"] == "inProgress"]
        finally:
            snapshot.close()

    async def record_lost(self, key: str, marker: Any) -> bool:
        async def body(txn: Transaction) -> bool:
            cur = await txn.get(key)
            if cur is None or cur["state"]["kind"] != "inProgress" or (cur["nextRun"], cur.get("startedAt")) != marker:
                return False
            schedule = CronSchedule.from_spec(cur["schedule"], cur["name"])
            now = self.clock.now_ms()
            await txn.patch(key, _after_run(cur, schedule, now, cur.get("startedAt", now), "failed", NODE_LOST))
            return True

        lost = await system_transaction(self.dep, body)
        if lost:
            log.warning("cron job %s: the node running it stopped; its run is recorded failed", key)
            self.wake()
        return lost

    async def _execute(self, doc: dict[str, Any]) -> None:
        job_id, planned = doc["_id"], doc["nextRun"]
        schedule = CronSchedule.from_spec(doc["schedule"], doc["name"])
        started = self.clock.now_ms()

        async def current(txn: Transaction, kind: str) -> dict[str, Any]:
            cur = await txn.get(job_id)
            if cur is None or cur["nextRun"] != planned or cur["state"]["kind"] != kind:
                raise _RunChanged
            return cur

        def record(kind: str, outcome: str, error: str | None = None):
            async def body(txn: Transaction) -> None:
                cur = await txn.get(job_id)
                if cur is None or cur["state"]["kind"] != kind:
                    raise _RunChanged
                if cur.get("lastRun", {}).get("scheduledTime", -math.inf) >= planned:
                    raise _RunChanged  # this planned run happened already (another node ran it)
                patch = _after_run(cur, schedule, self.clock.now_ms(), started, outcome, error)
                if cur["nextRun"] != planned:  # re-planned meanwhile (a code reload): keep the new plan
                    del patch["nextRun"], patch["skippedRuns"]
                await txn.patch(job_id, patch)
            return body

        fn = self.dep.app.functions.get(doc["function"])
        try:
            if fn is None or fn.kind not in ("mutation", "action"):
                reason = f"Could not find mutation or action '{doc['function']}'."
                await system_transaction(self.dep, record("pending", "failed", reason))
            elif fn.kind == "mutation":
                try:
                    await self.dep.runner.run_mutation(fn, doc["args"], Auth(),
                                                       before_commit=record("pending", "success"))
                except _RunChanged:
                    raise
                except Exception as e:
                    log.warning('cron job "%s" failed: %s', doc["name"], error_text(e, self.dep.app.root))
                    await system_transaction(self.dep, record("pending", "failed", error_text(e, self.dep.app.root)))
            else:
                async def begin(txn: Transaction) -> None:
                    await current(txn, "pending")
                    await txn.patch(job_id, {"state": {"kind": "inProgress"}, "startedAt": started})

                await system_transaction(self.dep, begin)
                try:
                    await self.dep.runner.run_action(fn, doc["args"], Auth())
                    outcome, error = "success", None
                except Exception as e:
                    log.warning('cron job "%s" failed: %s', doc["name"], error_text(e, self.dep.app.root))
                    outcome, error = "failed", error_text(e, self.dep.app.root)
                await system_transaction(self.dep, record("inProgress", outcome, error))
        except _RunChanged:
            return


def _after_run(doc: dict[str, Any], schedule: CronSchedule, now: float, started: float, outcome: str,
               error: str | None) -> dict[str, Any]:
    """The fields a finished run writes: its record, and the next planned time not already past
    (planned times that passed meanwhile are skipped and counted)."""
    nxt, skipped = schedule.advance(doc["nextRun"], now)
    if skipped:
        log.info('cron job "%s": skipping %d run(s) whose time passed', doc["name"], skipped)
    last: dict[str, Any] = {"ts": started, "scheduledTime": doc["nextRun"], "outcome": outcome}
    if error is not None:
        last["error"] = error
    return {"lastRun": last, "nextRun": nxt, "state": {"kind": "pending"},
            "skippedRuns": float(doc.get("skippedRuns", 0.0)) + skipped}
