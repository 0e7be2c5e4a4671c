"""The scheduler: `ctx.scheduler.run_after / run_at / cancel`, and the loop that runs due jobs.

    job_id = await ctx.scheduler.run_after(5_000, internal.messages.destruct, {"id": message_id})
    await ctx.scheduler.cancel(job_id)

Jobs are documents of the system table `_scheduled_functions` (Convex's shape: `name`, `args` as a
one-element array, `scheduledTime` in ms, `completedTime`, `state.kind` in pending / inProgress /
success / failed / canceled, with `state.error` when failed). Apps read them through `ctx.db.system`.

Invariants:
- From a mutation, a job is inserted in the mutation's own transaction: it exists iff the mutation
  committed. From an action, scheduling commits at once in a small transaction of its own.
- A scheduled mutation runs exactly once: its job turns `success` in the same transaction as the
  mutation's writes (`Runner.run_mutation(before_commit=...)`), after re-reading the job, so a
  concurrent cancel makes it conflict and re-run into "canceled, do nothing". A crash before that
  commit leaves the job pending, and it runs again at start.
- A scheduled action runs at most once: the job turns `inProgress` in a committed transaction before
  the action starts; one found `inProgress` at start is failed ("Action interrupted by a restart").
- Time is injected (`Clock`): the loop sleeps until the next due job, or until a commit writes to
  `_scheduled_functions` (a committer listener reading the write log), whichever comes first.
  Tests use `ManualClock` and `await scheduler.drain()`; nothing sleeps on the real clock.

`DueLoop` (the loop, task tracking, `poll`/`drain`) is shared with engine.cron.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .catalog import define_system_table
from .committer import Busy, Conflict
from .errors import CONVEX_MISSING_ADVICE, EngineError
from .function_errors import error_text as function_error_text
from .index_keys import encode_key
from .loader import canonicalize_path
from .registration import function_name
from .runner import Auth
from .transaction import Transaction, _copy
from .values import decode_json, to_wire, value_size

if TYPE_CHECKING:
    from .deployment import Deployment

__all__ = ["Clock", "RealClock", "ManualClock", "Scheduler", "DueLoop", "system_transaction", "to_ms", "NODE_LOST",
           "error_text", "SCHEDULED_FUNCTIONS"]

log = logging.getLogger("engine.scheduler")

SCHEDULED_FUNCTIONS = "_scheduled_functions"
define_system_table(SCHEDULED_FUNCTIONS, 1, {"by_state": ["state.kind", "scheduledTime"]})

MAX_SCHEDULED_PER_FUNCTION = 1000  # Convex: one function may schedule at most 1000 jobs ...
MAX_SCHEDULED_ARGS_BYTES = 8 * 1024 * 1024  # ... with at most 8 MiB of arguments in total
MAX_SYSTEM_TXN_ATTEMPTS = 32
INTERRUPTED = "Action interrupted by a restart"
# Recorded by another node when the node running an action stops being heard from (engine.cluster).
NODE_LOST = "Action interrupted: the engine node running it stopped"
RETRY_PAUSE_MS = 5000.0
BACKLOG_COUNT_LIMIT = 100  # due jobs counted past a full loop, per pass (convex_scheduled_functions_due)
T = TypeVar("T")


# -- time ----------------------------------------------------------------------------------------
class Clock(Protocol):
    """Wall-clock time in ms since the epoch, and a way to wait for a moment of it."""

    def now_ms(self) -> float: ...

    async def sleep_until(self, ms: float) -> None: ...


class RealClock:
    def now_ms(self) -> float:
        return time.time_ns() / 1e6

    async def sleep_until(self, ms: float) -> None:
        # In slices, so a wall-clock jump (NTP, suspend) is noticed within a minute.
        while (remaining := ms - self.now_ms()) > 0:
            await asyncio.sleep(min(remaining / 1000, 60.0))


class ManualClock:
    """A clock that moves only when told to: `advance(minutes=15)`, `set(ms)`. Sleepers whose
    moment has come wake on the next event-loop turn."""

    def __init__(self, start: float | datetime = 0.0) -> None:
        self._now = to_ms(start)
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now_ms(self) -> float:
        return self._now

    def set(self, moment: float | datetime) -> None:
        ms = to_ms(moment)
        if ms < self._now:
            raise ValueError("a ManualClock only moves forward")
        self._now = ms
        waiting = []
        for deadline, fut in self._sleepers:
            if deadline <= ms:
                if not fut.done():
                    fut.set_result(None)
            else:
                waiting.append((deadline, fut))
        self._sleepers = waiting

    def advance(self, ms: float = 0.0, *, seconds: float = 0, minutes: float = 0, hours: float = 0,
                days: float = 0) -> None:
        self.set(self._now + ms + 1000 * (seconds + 60 * minutes + 3600 * hours + 86400 * days))

    async def sleep_until(self, ms: float) -> None:
        if ms <= self._now:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (ms, fut)
        self._sleepers.append(entry)
        try:
            await fut
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)


def to_ms(moment: Any) -> float:
    """Milliseconds since the epoch from a number (already ms) or a datetime (naive = UTC)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp() * 1000
    if isinstance(moment, bool) or not isinstance(moment, (int, float)) or not math.isfinite(moment):
        raise EngineError("InvalidTimestamp", f"Expected a timestamp in milliseconds or a datetime, got {moment!r}.")
    return float(moment)


# -- small engine transactions -------------------------------------------------------------------
async def system_transaction(dep: Deployment, body: Callable[[Transaction], Any]) -> Any:
    """Run `body(txn)` (a function or a coroutine function) on a fresh snapshot and commit what it
    wrote, re-running it on conflicts (found when it is sequenced, or, on a store several nodes
    share, when it commits)."""
    for _ in range(MAX_SYSTEM_TXN_ATTEMPTS):
        txn = Transaction(dep.catalog, await dep.persistence.snapshot(), writable=True)
        future = None
        busy = None
        try:
            result = body(txn)
            if inspect.isawaitable(result):
                result = await result
            txn.flush_scans()  # the ranges its scans walked are in the read set
            if txn.writes:
                _, future = dep.committer.sequence(txn)
        except Busy as e:  # a mutation has the sequencer to itself for a moment
            busy = e.released
        except Conflict:
            continue
        finally:
            txn.close()
        if busy is not None:
            await busy
            continue
        if future is not None:
            try:
                await future
            except Conflict:  # another node's commit got there first
                continue
        return result  # type: ignore[possibly-undefined]  # bound: every other path continued
    raise EngineError("OptimisticConcurrencyControlFailure", "A system transaction kept conflicting.", status=503)


def error_text(error: BaseException, app_root: Any = None) -> str:
    """How a failed job or cron run records its error: the text Convex clients see minus the
    request id line (Convex stores the error's whole text, frames included)."""
    return function_error_text(error, app_root)


# -- the loop ------------------------------------------------------------------------------------
class DueLoop:
    """Runs `_pass` whenever it may have work: at the next due time it returned, on `wake()`, and
    whenever a task it launched finishes. At most `max_running` tasks at once; a key (a document
    id) is never launched twice concurrently."""

    name = "due-loop"
    max_running = 16
    due_waiting = 0  # due at the last pass and not started (see _pass)

    def __init__(self, dep: Deployment, clock: Clock) -> None:
        self.dep = dep
        self.clock = clock
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._not_before: dict[str, float] = {}  # keys whose bookkeeping failed: retry after a pause
        self._task: asyncio.Task[None] | None = None

    # lifecycle
    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._running.values()) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._running.clear()

    def wake(self) -> None:
        self._wake.set()

    # for tests and tools
    async def poll(self) -> None:
        """Run one pass now: launch whatever is due at the clock's current time."""
        async with self._lock:
            await self._pass(self.clock.now_ms())

    async def drain(self) -> None:
        """Run everything due at the clock's current time, including what those runs schedule for
        now, and wait until nothing is running."""
        while True:
            await self.poll()
            if not self._running:
                return
            await asyncio.gather(*list(self._running.values()), return_exceptions=True)

    # internals
    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                async with self._lock:
                    next_due = await self._pass(self.clock.now_ms())
            except asyncio.CancelledError:
                raise
            except Exception:  # a storage hiccup must not end the loop; try again shortly
                log.exception("%s pass failed", self.name)
                next_due = self.clock.now_ms() + 1000
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
            if next_due is not None:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(next_due)))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    def _launch(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        # A factory, so a task canceled before it starts leaves no never-awaited coroutine behind.
        task = asyncio.create_task(self._guard(key, work), name=f"{self.name}:{key}")
        self._running[key] = task

    async def _guard(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        try:
            await work()
            self._not_before.pop(key, None)
        except asyncio.CancelledError:
            raise
        except Exception:  # recording the outcome failed (storage trouble): retry in a while
            log.exception("%s: running %s failed", self.name, key)
            self._not_before[key] = self.clock.now_ms() + RETRY_PAUSE_MS
        finally:
            self._running.pop(key, None)
            self._wake.set()

    def _has_room(self) -> bool:
        return len(self._running) < self.max_running

    # several nodes on one store (engine.cluster.NodeLiveness)
    def running_keys(self) -> list[str]:
        """The keys (document ids) this node is running now."""
        return list(self._running)

    async def in_progress(self) -> list[tuple[str, Any]]:
        """(key, marker of the run) of every run the store records in progress, on any node."""
        return []

    async def record_lost(self, key: str, marker: Any) -> bool:
        """Record the run `marker` of `key` failed because its node stopped (if it is still that
        run, still in progress); whether it did."""
        return False

    def _blocked_until(self, key: str, now: float) -> float | None:
        """None if `key` may be launched now, else when it may (running ones: on wake)."""
        if key in self._running:
            return math.inf
        retry = self._not_before.get(key)
        return retry if retry is not None and retry > now else None

    async def _pass(self, now: float) -> float | None:
        """Launch due work; return the next time there will be some (None: only on wake)."""
        raise NotImplementedError


# -- the scheduler -------------------------------------------------------------------------------
class _JobChanged(Exception):
    """The job is no longer pending (canceled meanwhile): its mutation must not commit."""


class Scheduler(DueLoop):
    name = "scheduler"

    def __init__(self, dep: Deployment, clock: Clock) -> None:
        super().__init__(dep, clock)
        self._seen_ts = 0

    def _table(self):
        return self.dep.catalog.by_name[SCHEDULED_FUNCTIONS]

    async def start(self) -> None:
        # Actions found in progress were cut off by a crash or a stop: at most once means failing
        # them, never running them again.
        await self._recover_interrupted()
        self._seen_ts = self.dep.committer.durable_ts
        self.dep.committer.listeners.append(self._on_commit)
        self.dep.committer.watermarks.append(self._watermark)
        await super().start()

    async def stop(self) -> None:
        if self._on_commit in self.dep.committer.listeners:
            self.dep.committer.listeners.remove(self._on_commit)
        if self._watermark in self.dep.committer.watermarks:
            self.dep.committer.watermarks.remove(self._watermark)
        await super().stop()

    def for_mutation(self, txn: Transaction) -> MutationScheduler:
        return MutationScheduler(self, txn)

    def for_action(self) -> ActionScheduler:
        return ActionScheduler(self)

    def _watermark(self) -> int:
        return self._seen_ts

    # waking on new jobs
    def _on_commit(self, durable_ts: int) -> None:
        by_id = self._table().by_id.id
        seen, self._seen_ts = self._seen_ts, durable_ts
        write_log = self.dep.committer.write_log
        if not write_log.covers(seen):  # cut at its size bound: look for work anyway
            self._wake.set()
            return
        if write_log.last_written.get(by_id, 0) <= seen:
            return  # no commit since `seen` wrote a job
        for _, keys in write_log.since(seen, durable_ts):
            if any(index_id == by_id for index_id, _ in keys):
                self._wake.set()
                return

    # finding work
    async def _scan(self, kind: str):  # -> AsyncIterator[dict] of jobs in `kind`, by scheduledTime
        table = self._table()
        ix = table.indexes["by_state"]
        lo = encode_key([kind])
        snapshot = await self.dep.persistence.snapshot()
        try:
            async for _, _, raw in snapshot.scan(ix.id, lo, lo + b"\xff", False):
                yield decode_json(raw)
        finally:
            snapshot.close()

    async def _pass(self, now: float) -> float | None:
        next_due = math.inf
        waiting = 0  # due and not started (blocked, or no room): the backlog gauge
        jobs = self._scan("pending")
        try:
            async for job in jobs:
                if job["scheduledTime"] > now:
                    next_due = min(next_due, job["scheduledTime"])
                    break
                blocked = self._blocked_until(job["_id"], now)
                if blocked is not None:
                    if blocked != math.inf:  # a retry pause (a running one is not waiting)
                        waiting += 1
                    next_due = min(next_due, blocked)
                    continue
                if not self._has_room():  # a finishing job wakes the loop; count the rest, up to a cap
                    waiting += 1
                    if waiting >= BACKLOG_COUNT_LIMIT:
                        break
                    continue
                self._launch(job["_id"], lambda job=job: self._execute(job))
        finally:
            await jobs.aclose()
        self.due_waiting = waiting
        return next_due if next_due != math.inf else None

    async def _recover_interrupted(self) -> None:
        if await self.dep.persistence.live_peers():
            # Another node serves this database: an action in progress may be running there.
            # (Only a node starting alone records the ones a crash cut off; see the README.)
            return
        ids = [job["_id"] async for job in self._scan("inProgress")]
        for job_id in ids:
            await system_transaction(self.dep, lambda txn, job_id=job_id: _transition(
                txn, job_id, ("inProgress",), {"kind": "failed", "error": INTERRUPTED}, self.clock.now_ms()))
            log.warning("scheduled action %s was interrupted by a restart; marked failed", job_id)

    def _missing_function(self, path: str) -> str:
        """Convex's texts for a job whose function is gone (model/src/modules/user_error.rs): its
        module is gone, or the module no longer exports it."""
        module, _, export = path.partition(":")
        if self._module_exists(module):
            return f'Couldn\'t find "{export}" in module "{module}.js".'
        return f"Couldn't find JavaScript module '{module}.js'. {CONVEX_MISSING_ADVICE}"

    @staticmethod
    def _unsupported(name: str, kind: str) -> str:
        """Convex's text for a job whose function is a query (scheduled_jobs/mod.rs, a format string
        spanning two source lines, its quotes, newline and indentation included)."""
        module, _, export = _function_path(name).partition(":")
        return (f'Unsupported function type. FunctionName("{export}") in module "{module}.js" is defined as a '
                f'{kind.capitalize()}. "\n{" " * 28}"Only Mutation and Action can be scheduled.')

    async def in_progress(self) -> list[tuple[str, Any]]:
        return [(job["_id"], job["state"].get("executionId")) async for job in self._scan("inProgress")]

    async def record_lost(self, key: str, marker: Any) -> bool:
        async def body(txn: Transaction) -> bool:
            job = await txn.get(key)
            if job is None or job["state"]["kind"] != "inProgress" or job["state"].get("executionId") != marker:
                return False
            return await _transition(txn, key, ("inProgress",), {"kind": "failed", "error": NODE_LOST},
                                     self.clock.now_ms())

        lost = await system_transaction(self.dep, body)
        if lost:
            log.warning("scheduled action %s: the node running it stopped; marked failed", key)
        return lost

    # running a job
    async def _execute(self, job: dict[str, Any]) -> None:
        job_id, name = job["_id"], job["name"]
        args = job["args"][0] if job["args"] else {}
        fn = self.dep.app.functions.get(_function_path(name))
        if fn is None or fn.kind == "query":
            reason = self._missing_function(_function_path(name)) if fn is None else self._unsupported(name, fn.kind)
            log.warning("scheduled job %s failed: %s", job_id, reason)
            await self._finish(job_id, ("pending",), {"kind": "failed", "error": reason})
            return
        root = self.dep.app.root
        if fn.kind == "mutation":
            running = _in_progress()

            async def handler(ctx: Any, args: dict[str, Any]) -> Any:
                # As in Convex, the mutation sees its own job `inProgress` (a write of its own
                # transaction: everyone else sees it pending until the outcome commits).
                if not await _transition(ctx.db._txn, job_id, ("pending",), running, None):
                    raise _JobChanged  # canceled (or run) meanwhile: do nothing
                return await fn.handler(ctx, args)

            async def mark_success(txn: Transaction) -> None:
                # A mutation that canceled its own job commits its writes and the job stays canceled.
                if not await _transition(txn, job_id, ("inProgress",), {"kind": "success"}, self.clock.now_ms()):
                    job_now = await txn.get(job_id)
                    if job_now is None or job_now["state"]["kind"] != "canceled":
                        raise _JobChanged

            try:
                await self.dep.runner.run_mutation(replace(fn, handler=handler), args, Auth(),
                                                   before_commit=mark_success)
            except _JobChanged:
                return
            except Exception as e:
                # The mutation's writes are discarded; only the failure is recorded.
                await self._finish(job_id, ("pending",), {"kind": "failed", "error": error_text(e, root)})
            return
        started = await system_transaction(self.dep, lambda txn: _transition(
            txn, job_id, ("pending",), _in_progress(), None))
        if not started:
            return
        try:
            await self.dep.runner.run_action(fn, args, Auth())
            state: dict[str, Any] = {"kind": "success"}
        except Exception as e:
            state = {"kind": "failed", "error": error_text(e, root)}
        # A job canceled while its action ran stays canceled (Convex does the same).
        await self._finish(job_id, ("inProgress",), state)

    async def _finish(self, job_id: str, from_kinds: tuple[str, ...], state: dict[str, Any]) -> None:
        await system_transaction(self.dep, lambda txn: _transition(txn, job_id, from_kinds, state,
                                                                   self.clock.now_ms()))

    # scheduling (from the API objects)
    def _job_document(self, when: Any, ref: Any, args: Any) -> dict[str, Any]:
        try:
            path = canonicalize_path(function_name(ref))
        except (TypeError, ValueError) as e:
            raise EngineError("InvalidFunctionReference", f"ctx.scheduler needs a function reference: {e}") from None
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise EngineError("InvalidScheduledArgs",
                              f"Arguments scheduled for {path} must be an object, got {type(args).__name__}.")
        try:
            to_wire(args)
        except (TypeError, ValueError) as e:
            raise EngineError("InvalidScheduledArgs", f"Arguments scheduled for {path} are not Convex values: {e}") from None
        module, export = path.split(":")
        if path not in self.dep.app.functions:  # Convex checks at scheduling time (udf/src/validation.rs)
            if not self._module_exists(module):
                raise EngineError("InvalidScheduledFunction",
                                  f"Attempted to schedule function at nonexistent path: {module}.js")
            raise EngineError("InvalidScheduledFunction",
                              f"Attempted to schedule function, but no exported function {export} found in the "
                              f"file: {module}.js. Did you forget to export it?")
        # Convex names the function "module.js:export" in `_scheduled_functions.name`.
        return {"name": f"{module}.js:{export}", "args": [_copy(args)], "scheduledTime": when,
                "state": {"kind": "pending"}}

    def _module_exists(self, module: str) -> bool:
        return (self.dep.app.root / "functions" / f"{module}.py").is_file() or any(
            p.startswith(module + ":") for p in self.dep.app.functions)


def _function_path(name: str) -> str:
    """A job's `name` ("tasks.js:list", or "tasks:list" as older versions stored it) -> "tasks:list"."""
    try:
        return canonicalize_path(name)
    except EngineError:
        return name


def _in_progress() -> dict[str, Any]:
    """Convex's inProgress state: the request and execution ids of the run (ScheduledJobState)."""
    return {"kind": "inProgress", "requestId": secrets.token_hex(8), "executionId": str(uuid.uuid4())}


async def _transition(txn: Transaction, job_id: str, from_kinds: tuple[str, ...], state: dict[str, Any],
                      completed_ms: float | None) -> bool:
    """Move a job to `state` if it is in one of `from_kinds`; False (and no write) otherwise."""
    job = await txn.get(job_id)
    if job is None or job["state"]["kind"] not in from_kinds:
        return False
    fields: dict[str, Any] = {"state": state}
    if completed_ms is not None:
        fields["completedTime"] = completed_ms
    await txn.patch(job_id, fields)
    return True


class _SchedulerApi:
    """`ctx.scheduler`. Convex's `runAfter` / `runAt` / `cancel`, snake_cased and awaitable."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._count = 0
        self._bytes = 0

    async def run_after(self, delay_ms: float, fn: Any, args: dict[str, Any] | None = None) -> str:
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, (int, float)) or not math.isfinite(delay_ms):
            raise EngineError("InvalidScheduledTime", f"run_after needs a delay in milliseconds, got {delay_ms!r}.")
        return await self._schedule(self._scheduler.clock.now_ms() + max(float(delay_ms), 0.0), fn, args)

    async def run_at(self, timestamp: float | datetime, fn: Any, args: dict[str, Any] | None = None) -> str:
        return await self._schedule(to_ms(timestamp), fn, args)

    async def _schedule(self, when: float, fn: Any, args: Any) -> str:
        doc = self._scheduler._job_document(when, fn, args)
        self._count += 1
        self._bytes += value_size(doc["args"])
        if self._count > MAX_SCHEDULED_PER_FUNCTION:
            raise EngineError("TooManyFunctionsScheduled",
                              f"One function may schedule at most {MAX_SCHEDULED_PER_FUNCTION} functions.")
        if self._bytes > MAX_SCHEDULED_ARGS_BYTES:
            raise EngineError("ScheduledFunctionsArgumentsTooLarge",
                              f"Functions scheduled by one function may take at most {MAX_SCHEDULED_ARGS_BYTES} "
                              "bytes of arguments in total.")
        return await self._insert(doc)

    def _check_job_id(self, job_id: Any) -> str:
        if self._scheduler.dep.catalog.table_of_id(job_id) != SCHEDULED_FUNCTIONS:
            raise EngineError("InvalidId", f"ctx.scheduler.cancel needs an id of {SCHEDULED_FUNCTIONS}, got {job_id!r}.")
        return job_id

    async def _cancel_in(self, txn: Transaction, job_id: str) -> None:
        # Pending jobs never run; a running action keeps running (as in Convex) but is recorded canceled.
        await _transition(txn, job_id, ("pending", "inProgress"), {"kind": "canceled"}, self._scheduler.clock.now_ms())

    async def _insert(self, doc: dict[str, Any]) -> str:
        raise NotImplementedError

    async def cancel(self, job_id: str) -> None:
        raise NotImplementedError


class MutationScheduler(_SchedulerApi):
    """Scheduling inside a mutation: the job is part of the mutation's transaction."""

    def __init__(self, scheduler: Scheduler, txn: Transaction) -> None:
        super().__init__(scheduler)
        self._txn = txn

    async def _insert(self, doc: dict[str, Any]) -> str:
        return await self._txn.insert(self._scheduler._table(), doc)

    async def cancel(self, job_id: str) -> None:
        await self._cancel_in(self._txn, self._check_job_id(job_id))


class ActionScheduler(_SchedulerApi):
    """Scheduling from an action: each call commits on its own, before it returns."""

    async def _insert(self, doc: dict[str, Any]) -> str:
        table = self._scheduler._table()
        return await system_transaction(self._scheduler.dep, lambda txn: txn.insert(table, doc))

    async def cancel(self, job_id: str) -> None:
        job_id = self._check_job_id(job_id)
        await system_transaction(self._scheduler.dep, lambda txn: self._cancel_in(txn, job_id))
