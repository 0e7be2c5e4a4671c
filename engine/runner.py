"""Running functions: contexts, argument/return validation, OCC retries, log capture, failures.

`Runner.execute(fn, args, auth)` runs one registered function and returns its value or raises; the
deployment turns that into an `Outcome` for clients. Queries run on one snapshot and return their
read set (the subscription layer keeps it); mutations re-run on a fresh snapshot when the committer
reports a conflict — after the first conflict they run one at a time, each after everything sequenced
before it is durable, so a hot document converges instead of thrashing; actions get no database,
only `run_query` / `run_mutation` / `run_action`.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

from msgspec.json import encode as _enc

from .committer import Busy, CommitAborted, Conflict
from .database import DatabaseReader, DatabaseWriter
from .errors import EngineError
from .execution import (ACTION_LIMIT_S, ACTION_STEP_LIMIT_S, QUERY_MUTATION_LIMIT_S, QUERY_MUTATION_WALL_S,
                        run_user_code)
from . import metrics
from .executions import executions
from .function_errors import NestedFunctionError, error_text, nested_error
from .index_keys import encode_key
from .logs import capture, current_request_id, current_sink, new_request_id
from .reads import ReadSet, point
from .registration import RegisteredFunction, function_name
from .storage import Snapshot
from .transaction import IDEMPOTENCY_KEYS, Transaction, _copy
from .validators import ValidationError
from .values import decode_json, to_wire, value_size

if TYPE_CHECKING:
    from .deployment import Deployment

__all__ = ["Auth", "Runner", "QueryRun", "MAX_MUTATION_ATTEMPTS", "EXCLUSIVE_AFTER_CONFLICTS"]

log = logging.getLogger("engine.functions")
# A mutation that conflicted this many times runs next with the sequencer to itself, so it commits.
EXCLUSIVE_AFTER_CONFLICTS = 2
# Only commit failures (a disk that keeps failing) can use these up: exclusivity ends conflicts.
MAX_MUTATION_ATTEMPTS = 64
MAX_VALUE_SIZE = 16 * 1024 * 1024
_OCC_RETRIES: contextvars.ContextVar[int] = contextvars.ContextVar("occ_retries", default=0)


class Idempotency(NamedTuple):
    """A sync-socket mutation's key: it runs at most once per (session, request), its result
    stored in the same commit and returned to a repeat (a client re-sends after a reconnect).
    `may_have_run` is False on a session's first connection (`connectionCount` 0): nothing of it
    can be stored yet, so the first attempt skips the lookup. The key is still in its read set: a
    replay on a newer socket that commits first makes it conflict, and the retry looks it up."""

    session_id: str
    request_id: int
    may_have_run: bool = True


@dataclass(frozen=True, slots=True)
class Auth:
    """Who is calling: a verified user identity (Convex's UserIdentity object), the admin, or nobody."""

    identity: dict[str, Any] | None = None
    admin: bool = False


class AuthView:
    """`ctx.auth`. Notes whether the function looked at the identity (queries that never do can be
    shared between users)."""

    __slots__ = ("_identity", "_admin", "used")

    def __init__(self, auth: Auth) -> None:
        self._identity = auth.identity
        self._admin = auth.admin
        self.used = False

    async def get_user_identity(self) -> dict[str, Any] | None:
        self.used = True
        return dict(self._identity) if self._identity is not None else None

    def is_admin(self) -> bool:
        """Whether the caller holds the deployment's admin key (an engine extension; Convex has no
        equivalent). Counts as looking at the caller: the result differs between callers."""
        self.used = True
        return self._admin


class _SchedulerStub:
    """`ctx.scheduler` until the scheduler lands: a clear error instead of a silent no-op."""

    def _unavailable(self, *_: Any, **__: Any) -> Any:
        raise EngineError("SchedulerUnavailable", "ctx.scheduler is not available yet in this engine version.")

    run_after = run_at = cancel = _unavailable


@dataclass(slots=True)
class QueryCtx:
    db: DatabaseReader
    auth: AuthView
    storage: Any = None  # engine.file_storage.StorageReader


class MutationCtx:
    """`ctx` of a mutation. `scheduler` is made on first use (most mutations never schedule)."""

    __slots__ = ("db", "auth", "storage", "_scheduler", "_make_scheduler")

    def __init__(self, db: DatabaseWriter, auth: AuthView, scheduler: Any = None, storage: Any = None, *,
                 make_scheduler: Callable[[], Any] | None = None) -> None:
        self.db = db
        self.auth = auth
        self.storage = storage  # engine.file_storage.StorageWriter
        self._scheduler = scheduler
        self._make_scheduler = make_scheduler

    @property
    def scheduler(self) -> Any:
        if self._scheduler is None:
            make = self._make_scheduler
            self._scheduler = make() if make is not None else _SchedulerStub()
        return self._scheduler


class ActionCtx:
    def __init__(self, runner: Runner, auth: Auth) -> None:
        self._runner = runner
        self._auth = auth
        self.auth = AuthView(auth)
        self.scheduler = runner.scheduler_for(None)
        storage = getattr(runner.dep, "file_storage", None)
        self.storage = storage.for_action() if storage is not None else None

    async def run_query(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return await self._runner.call_nested("query", ref, args, self._auth)

    async def run_mutation(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return await self._runner.call_nested("mutation", ref, args, self._auth)

    async def run_action(self, ref: Any, args: dict[str, Any] | None = None) -> Any:
        return await self._runner.call_nested("action", ref, args, self._auth)

    async def vector_search(self, table_name: str, index_name: str, query: dict[str, Any]) -> list[dict[str, Any]]:
        """Convex's `ctx.vectorSearch`: [{"_id", "_score"}] most similar first (engine.search.vector)."""
        from .search.vector import vector_search

        return await vector_search(self._runner.dep, table_name, index_name, query)

    def admin_key_matches(self, candidate: str) -> bool:
        """Whether `candidate` is this deployment's admin key (constant-time; False when the
        deployment has none). An engine extension for HTTP actions that operators trigger with the
        admin key (`Authorization: Convex <key>`); the key itself is never exposed."""
        import hmac  # only this extension needs it

        expected = getattr(self._runner.dep, "admin_key", None)
        if not expected or not isinstance(candidate, str) or not candidate:
            return False
        return hmac.compare_digest(candidate.encode("utf-8"), expected.encode("utf-8"))


@dataclass(slots=True)
class QueryRun:
    """A query's value and everything the subscription layer needs to keep it fresh."""

    value: Any
    wire: Any
    ts: int
    reads: ReadSet
    journal: str | None
    used_auth: bool


@dataclass(slots=True)
class QueryEvaluation:
    ok: bool
    value: Any
    wire: Any
    error: BaseException | None
    log_lines: list[str]
    reads: ReadSet
    journal: str | None
    used_auth: bool
    ts: int


def request_id() -> str:
    return new_request_id()


class Runner:
    def __init__(self, deployment: Deployment) -> None:
        self.dep = deployment

    # -- validation ----------------------------------------------------------------------------
    def _check_args(self, fn: RegisteredFunction, args: Any) -> dict[str, Any]:
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise EngineError("ArgumentValidationError",
                              f"Arguments of {fn.path} must be an object, got {type(args).__name__}.")
        if fn.args is not None:
            try:
                fn.args.check(args, self.dep.catalog, "$")
            except ValidationError as e:
                raise EngineError("ArgumentValidationError", f"{e}") from None
        return args

    def _check_result(self, fn: RegisteredFunction, value: Any) -> Any:
        if fn.returns is not None:
            try:
                fn.returns.check(value, self.dep.catalog, "$")
            except ValidationError as e:
                raise EngineError("ReturnsValidationError", f"Return value of {fn.path} is invalid: {e}") from None
        try:
            wire = to_wire(value)
        except (ValueError, TypeError) as e:
            raise EngineError("InvalidReturnValue", f"{fn.path} returned a value that is not a Convex value: {e}") from None
        if value_size(value) > MAX_VALUE_SIZE:
            raise EngineError("ResultTooLarge", f"{fn.path} returned more than {MAX_VALUE_SIZE} bytes.")
        return wire

    # -- queries -------------------------------------------------------------------------------
    async def run_query(self, fn: RegisteredFunction, args: Any, auth: Auth, *,
                        snapshot: Snapshot | None = None, journal: str | None = None,
                        request_id: str | None = None) -> tuple[QueryRun, list[str]]:
        """Run a query at `snapshot` (or a fresh one, closed after) for a caller: raises on failure."""
        snap = await self.dep.persistence.snapshot() if snapshot is None else snapshot
        try:
            ev = await self.evaluate_query(fn, args, auth, snap, journal, request_id=request_id)
        finally:
            if snapshot is None:
                snap.close()
        if ev.error is not None:
            _keep_lines(ev.error, ev.log_lines)
            raise ev.error
        return QueryRun(ev.value, ev.wire, ev.ts, ev.reads, ev.journal, ev.used_auth), ev.log_lines

    async def evaluate_query(self, fn: RegisteredFunction, args: Any, auth: Auth, snapshot: Snapshot,
                             journal: str | None, *, request_id: str | None = None) -> QueryEvaluation:
        """Run a query, never raising: a failure keeps the read set it had made, so a subscription
        re-runs when what it read changes. The one place a query executes."""
        txn = Transaction(self.dep.catalog, snapshot, writable=False)
        txn.journal_end = _journal_end(journal)
        authv = AuthView(auth)
        error: BaseException | None = None
        value: Any = None
        wire: Any = None
        started = time.perf_counter()
        with capture(fn.path, kind=fn.kind, request_id=request_id) as lines:
            rid = current_request_id() or ""
            try:
                checked = self._check_args(fn, args)
                value = await run_user_code(fn.handler(QueryCtx(DatabaseReader(txn), authv, self._storage(txn, False)),
                                                       checked),
                                            limit=QUERY_MUTATION_LIMIT_S, wall_limit=QUERY_MUTATION_WALL_S)
                txn.flush_scans()
                wire = self._check_result(fn, value)
            except Exception as e:  # a QueryFailed for subscribers; raised by run_query
                txn.flush_scans()
                error = e
        _executed(fn, started, error, rid, lines)
        return QueryEvaluation(error is None, value, wire, error, lines, txn.reads, _journal(txn),
                               authv.used, txn.ts)

    # -- mutations -----------------------------------------------------------------------------
    async def run_mutation(self, fn: RegisteredFunction, args: Any, auth: Auth, *,
                           extra: Any = None, request_id: str | None = None,
                           before_commit: Any = None,
                           idempotency: Idempotency | None = None) -> tuple[Any, Any, int, list[str]]:
        """(value, wire, commit ts, log lines). `extra(record)` may add rows to the commit;
        `before_commit(txn)` runs after the handler succeeded, on each attempt, and may read and
        write in the same transaction (the scheduler marks its job done atomically this way).

        Each attempt runs on the latest sequenced state (engine.tail): a handler that never
        suspends cannot conflict. One that does and conflicts re-runs; after
        EXCLUSIVE_AFTER_CONFLICTS conflicts it runs with the sequencer to itself, so every mutation
        that only reads and writes the database commits. One entry in the execution log, whatever
        the number of attempts."""
        started = time.perf_counter()
        # One id for every attempt and the log entry; a nested call keeps its call tree's, as in Convex.
        request_id = request_id or current_request_id() or new_request_id()
        _OCC_RETRIES.set(0)
        try:
            value, wire, ts, lines = await self._run_mutation(fn, args, auth, extra=extra, request_id=request_id,
                                                              before_commit=before_commit, idempotency=idempotency)
        except BaseException as e:
            _executed(fn, started, e, request_id, getattr(e, "log_lines", ()), _OCC_RETRIES.get())
            raise
        _executed(fn, started, None, request_id, lines, _OCC_RETRIES.get())
        return value, wire, ts, lines

    async def _run_mutation(self, fn: RegisteredFunction, args: Any, auth: Auth, *,
                            extra: Any = None, request_id: str | None = None,
                            before_commit: Any = None,
                            idempotency: Idempotency | None = None) -> tuple[Any, Any, int, list[str]]:
        args = self._check_args(fn, args)
        committer = self.dep.committer
        conflicts = 0
        owner: object | None = None
        try:
            while True:
                if conflicts and idempotency is not None and not idempotency.may_have_run:
                    # It conflicted: a replay from a reconnected socket may have committed it meanwhile.
                    idempotency = idempotency._replace(may_have_run=True)
                if conflicts >= EXCLUSIVE_AFTER_CONFLICTS and owner is None:
                    owner = object()
                    while (busy := committer.acquire_exclusive(owner)) is not None:
                        await busy
                try:
                    value, wire, ts, durable, lines = await self._mutation_attempt(
                        fn, args, auth, extra, request_id, before_commit=before_commit,
                        idempotency=idempotency, owner=owner)
                    if owner is not None:  # sequenced: others may build on it right away
                        committer.release_exclusive(owner)
                        owner = None
                    sequenced = time.perf_counter()
                    committed = await durable
                    if isinstance(durable, asyncio.Future):  # a commit (read-only runs wait on a view)
                        metrics.commit_latency(time.perf_counter() - sequenced)
                        if isinstance(committed, int):
                            ts = committed  # the final commit ts (a cluster store assigns it at commit)
                except Conflict:  # CommitAborted too: nothing of the attempt was persisted
                    conflicts += 1
                    _OCC_RETRIES.set(conflicts)
                    metrics.occ_retry(fn.path)
                    if conflicts >= MAX_MUTATION_ATTEMPTS:
                        raise EngineError("OptimisticConcurrencyControlFailure",
                                          f"{fn.path} could not commit: {conflicts} attempts were refused "
                                          "(commits before it failed to persist).", status=503) from None
                    continue
                return value, wire, ts, lines
        finally:
            if owner is not None:
                committer.release_exclusive(owner)

    async def _mutation_attempt(self, fn: RegisteredFunction, args: dict[str, Any], auth: Auth, extra: Any,
                                request_id: str | None = None, *, before_commit: Any = None,
                                idempotency: Idempotency | None = None, owner: object | None = None):
        """One run of the handler on a fresh latest view, sequenced if it wrote. Returns
        (value, wire, ts, awaitable that completes once ts is durable, log lines); raises Conflict."""
        committer = self.dep.committer
        view = await committer.latest_view(owner)
        txn = Transaction(self.dep.catalog, view, writable=True)
        try:
            if idempotency is not None:
                session_id, request_no, may_have_run = idempotency
                key = encode_key([session_id, request_no])
                txn.reads.add(IDEMPOTENCY_KEYS, *point(key))  # a replay committing first is a conflict
                if may_have_run:
                    stored = await view.mutation_result(session_id, request_no)
                    if stored is not None:  # ran before (a client re-sent it after a reconnect)
                        value = decode_json(stored[1])
                        return value, to_wire(value), stored[0], self._durable_view(view.generation, stored[0]), []
                txn.extra_keys.append((IDEMPOTENCY_KEYS, key))
                extra = _store_result(session_id, request_no, extra)
            with capture(fn.path, kind=fn.kind, request_id=request_id) as lines:
                try:
                    ctx = MutationCtx(DatabaseWriter(txn), AuthView(auth), None, self._storage(txn, True),
                                      make_scheduler=lambda: self.scheduler_for(txn))
                    value = await run_user_code(fn.handler(ctx, _copy_args(args)), limit=QUERY_MUTATION_LIMIT_S,
                                                wall_limit=QUERY_MUTATION_WALL_S, on_suspend=view.freeze)
                    txn.flush_scans()
                    wire = self._check_result(fn, value)
                except Exception as e:
                    _keep_lines(e, lines)
                    raise
            if before_commit is not None:
                done = before_commit(txn)
                if inspect.isawaitable(done):
                    await done
            if txn.writes or extra is not None:
                hook = (lambda rec: extra(rec, wire)) if extra is not None else None
                while True:
                    try:
                        ts, future = committer.sequence(txn, hook, owner=owner)
                        break
                    except Busy as busy:  # another mutation runs exclusively: then validate again
                        await busy.released
                return value, wire, ts, future, lines
            # Read-only: serializable at its view, which may hold commits not yet durable.
            return value, wire, txn.ts, self._durable_view(view.generation, txn.ts), lines
        finally:
            txn.close()

    async def _durable_view(self, generation: int, ts: int) -> None:
        """Complete once everything up to `ts` is durable; Conflict if some of it failed."""
        committer = self.dep.committer
        await committer.wait_settled(ts)
        if committer.generation != generation:
            raise CommitAborted(ts)

    def _storage(self, txn: Transaction, writable: bool) -> Any:
        """`ctx.storage` for a query or mutation, bound to its transaction."""
        storage = getattr(self.dep, "file_storage", None)
        if storage is None:
            return None
        return storage.for_mutation(txn) if writable else storage.for_query(txn)

    def scheduler_for(self, txn: Transaction | None) -> Any:
        """`ctx.scheduler`: bound to the mutation's transaction, or (txn None) for an action."""
        scheduler = getattr(self.dep, "scheduler", None)
        if scheduler is None:
            return _SchedulerStub()
        return scheduler.for_mutation(txn) if txn is not None else scheduler.for_action()

    # -- actions -------------------------------------------------------------------------------
    async def run_action(self, fn: RegisteredFunction, args: Any, auth: Auth, *,
                         request_id: str | None = None) -> tuple[Any, Any, list[str]]:
        started = time.perf_counter()
        rid = request_id or ""
        try:
            with capture(fn.path, kind=fn.kind, request_id=request_id) as lines:
                rid = current_request_id() or rid
                try:
                    args = self._check_args(fn, args)
                    value = await run_user_code(fn.handler(ActionCtx(self, auth), args), limit=ACTION_LIMIT_S,
                                                wall_limit=ACTION_LIMIT_S, step_limit=ACTION_STEP_LIMIT_S)
                    wire = self._check_result(fn, value)
                except Exception as e:
                    _keep_lines(e, lines)
                    raise
        except BaseException as e:
            _executed(fn, started, e, rid, getattr(e, "log_lines", ()))
            raise
        _executed(fn, started, None, rid, lines)
        return value, wire, lines

    # -- nested calls from actions ---------------------------------------------------------------
    async def call_nested(self, kind: str, ref: Any, args: Any, auth: Auth) -> Any:
        """`ctx.run_query` / `run_mutation` / `run_action` from an action. A failure of the called
        function is raised in the caller as Convex does: a ConvexError keeping its data, else an
        Error, whose message is the called function's whole error text (engine.function_errors)."""
        from .deployment import _NotFound  # (deployment imports this module)

        path = function_name(ref)
        try:
            fn = self.dep.lookup(path, kind=kind, auth=auth, internal_ok=True)
        except _NotFound as e:
            raise NestedFunctionError(e.text + "\n") from None
        parent = current_sink()
        try:
            if kind == "query":
                run, lines = await self.run_query(fn, args, auth)
                value = run.value
            elif kind == "mutation":
                value, _, _, lines = await self.run_mutation(fn, args, auth)
            else:
                value, _, lines = await self.run_action(fn, args, auth)
        except Exception as e:
            if parent is not None:
                parent.extend(getattr(e, "log_lines", ()))
            raise nested_error(e, self.dep.app.root) from e
        if parent is not None:
            parent.extend(lines)
        return value


def _executed(fn: RegisteredFunction, started: float, error: BaseException | None, request_id: str,
              lines: Any, occ_retries: int = 0) -> None:
    """One entry in the execution log (and the function metrics) per execution."""
    executions.record(fn.kind, fn.path, success=error is None, duration=time.perf_counter() - started,
                      error=error_text(error).rstrip("\n") if error is not None else None, request_id=request_id,
                      log_lines=lines, occ_retries=occ_retries)


def _keep_lines(error: BaseException, lines: list[str]) -> None:
    """A failed function's log lines travel with its error (callers report them with it)."""
    if getattr(error, "log_lines", None) is None:
        try:
            error.log_lines = lines  # type: ignore[attr-defined]
        except AttributeError:  # an exception type with __slots__
            pass


def _store_result(session_id: str, request_no: int, extra: Any) -> Any:
    """A commit hook that also records the mutation's result under its (session, request) key."""

    def hook(record: Any, wire: Any) -> None:
        record.mutation_results.append((session_id, request_no, _enc(wire)))
        if extra is not None:
            extra(record, wire)

    return hook


def _copy_args(args: dict[str, Any]) -> dict[str, Any]:
    # A retried mutation must see the arguments as they came, even if an attempt mutated them.
    return _copy(args)


def _journal_end(journal: str | None) -> str | None:
    # A journal is the end cursor of the query's paginated read (already opaque); "" means none.
    return journal or None


def _journal(txn: Transaction) -> str | None:
    return txn.journal_out
