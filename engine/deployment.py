"""A deployment: one loaded app on one database — what the server, the CLI and tests drive.

    dep = await Deployment.open("path/to/app", "data/convex.sqlite3", admin_key="...")
    outcome = await dep.call("tasks:list", {}, kind="query", auth=Auth())
    await dep.close()

`call` is the single entry point for running a function by path on behalf of a client: it resolves
the path (Convex's rules: "tasks" == "tasks:default"), enforces visibility (internal functions only
for the admin or other functions), runs the function and returns an `Outcome` — function failures
included, formatted as Convex formats them. Infrastructure problems raise `EngineError`.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import env as env_module
from . import metrics
from .auth import AuthProviders
from .blobs import BlobStore, LocalBlobStore
from .catalog import Catalog
from .committer import Committer, sane_start_ts
from .cron import CronService
from .errors import CONVEX_MISSING_ADVICE, ConvexError, EngineError
from .file_storage import FileStorage, blob_dir_for
from .function_errors import NestedFunctionError, client_message, error_text
from .loader import App, canonicalize_path, load_app
from .logs import install as install_logs
from .registration import RegisteredFunction
from .reload import reload_app
from .runner import Auth, Idempotency, Runner, request_id
from .scheduler import Clock, RealClock, Scheduler
from .search.manager import SearchIndexes
from .session_cleanup import SessionCleanup, frequency_from_env, retention_from_env
from .storage import CommitRecord, Persistence, is_url, open_persistence
from .subscriptions import SubscriptionManager
from .transfers import Transfers
from .write_log import WriteLog

__all__ = ["Deployment", "Auth", "Outcome", "MISSING"]

log = logging.getLogger("engine.functions")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(slots=True)
class Outcome:
    success: bool
    value: Any = None
    error_message: str | None = None
    error_data: Any = MISSING
    log_lines: list[str] = field(default_factory=list)
    ts: int | None = None
    wire: Any = MISSING  # the value in convex_encoded_json form, when already computed


def failure_outcome(error: BaseException, rid: str, path: str, lines: list[str],
                    app_root: Path | str | None = None) -> Outcome:
    """Convex's client-facing error text: '[Request ID: …] Server Error' then the uncaught error with
    its frames (engine.function_errors); `errorData` for a ConvexError."""
    text = error_text(error, app_root)
    if isinstance(error, ConvexError):
        return Outcome(False, error_message=client_message(rid, text), error_data=error.data, log_lines=lines)
    if not isinstance(error, (EngineError, NestedFunctionError)):
        log.warning("%s failed (request %s): %s", path, rid, text.splitlines()[0], exc_info=error)
    return Outcome(False, error_message=client_message(rid, text), log_lines=lines)


class Deployment:
    def __init__(self, app: App, persistence: Persistence, admin_key: str | None,
                 clock: Clock | None = None) -> None:
        self.app = app
        self.persistence = persistence
        self.admin_key = admin_key
        self.catalog = Catalog(persistence, app.schema)
        self.committer: Committer = None  # type: ignore[assignment]
        self.subscriptions: SubscriptionManager | None = None  # live queries (the sync layer)
        self.runner = Runner(self)
        self.auth_providers = AuthProviders()  # Deployment.open loads auth_config.py + $CONVEX_AUTH_PROVIDERS
        self.clock: Clock = clock or RealClock()  # wall time for the scheduler and crons (tests inject one)
        self.scheduler = Scheduler(self, self.clock)
        self.crons = CronService(self, self.clock)
        self._reload_lock = asyncio.Lock()  # dev mode: one code reload at a time
        self.transfers = Transfers(self)  # snapshot exports and imports through the running deployment
        self.search_indexes = SearchIndexes(self)  # search and vector indexes (engine.search.manager)
        self.cloud_url = ""  # the API URL `serve` listens on (`_system/cli/convexUrl:cloudUrl`)
        self.site_url = ""  # the HTTP-actions URL
        self.log_polls_closed = False  # set when the server stops: log long polls answer at once
        self.file_storage: FileStorage | None = None  # Deployment.open sets it up
        self.liveness: Any = None  # engine.cluster.NodeLiveness, on a store several nodes share
        # Expires stored mutation results (idempotency records) after Convex's window (two weeks)
        self.session_cleanup = SessionCleanup(persistence, retention_from_env(), frequency_from_env())
        self._env_owner = False  # this deployment put a shared store's variables into engine.env
        self._temp_blob_dir: str | None = None

    @classmethod
    async def open(cls, app_dir: str | Path, db_path: str | Path, *, admin_key: str | None = None,
                   persistence: Persistence | None = None, clock: Clock | None = None,
                   blobs: BlobStore | None = None, node_timeout: float | None = None) -> Deployment:
        """`blobs` keeps stored files' bytes; by default a folder beside the database
        ("<db>.storage"; a temporary one for ":memory:", removed on close). `node_timeout` (a store
        several nodes share): seconds without a heartbeat after which a node counts as stopped and
        another node records its actions in progress failed (engine.cluster.NodeLiveness)."""
        install_logs()
        app = load_app(app_dir)
        auth_providers = AuthProviders.load(app)  # before the store opens: a bad config fails fast
        store = persistence or open_persistence(db_path)
        await store.open()
        dep = cls(app, store, admin_key, clock)
        dep.auth_providers = auth_providers
        try:
            async with store.startup_lock():  # a shared store: nodes starting together take turns
                max_ts = await dep.catalog.load()
                start_ts = sane_start_ts(max_ts)
                if start_ts != max_ts:
                    log.warning("The stored commit clock was %.0f days ahead of this machine's clock (a client "
                                "moved it with an engine version that trusted client timestamps); continuing "
                                "from the current time.", (max_ts - start_ts) / 86_400e9)
                    await store.write([CommitRecord(start_ts)])  # every snapshot from now on reads this ts
        except BaseException:
            await store.close()
            raise
        if store.shared:  # the variables are the database's, for every node (engine.env)
            try:
                await dep._watch_shared_env()
            except BaseException:
                await store.close()
                raise
        dep.committer = _committer_for(store, start_ts)
        dep.committer.start()
        dep.subscriptions = SubscriptionManager(dep)
        dep.subscriptions.start()
        try:
            # Search and vector indexes of the schema: registered, then backfilled in the background.
            await dep.search_indexes.open()
        except BaseException:
            await dep.close()
            raise
        metrics.attach(dep)
        if blobs is None:
            blobs = dep.persistence.blob_store()  # PostgreSQL: in the database, shared by every node
        if blobs is None:
            folder = blob_dir_for(db_path) if not is_url(db_path) else None
            if folder is None:
                folder = dep._temp_blob_dir = tempfile.mkdtemp(prefix="engine-storage-")
            blobs = LocalBlobStore(folder)
        dep.file_storage = FileStorage(dep, blobs)
        try:
            await dep.file_storage.start()
            # Jobs and crons that came due while the server was down run now.
            await dep.scheduler.start()
            await dep.crons.start()
            dep.session_cleanup.start()
            if store.shared:
                from .cluster import NODE_TIMEOUT_S, NodeLiveness

                dep.liveness = NodeLiveness(dep, node_timeout or NODE_TIMEOUT_S)
                dep.liveness.start()
        except BaseException:
            await dep.close()
            raise
        return dep

    async def _watch_shared_env(self) -> None:
        """Load the database's environment variables and re-read them whenever a node changes
        them (a notification; also after the listening connection reconnects)."""
        store = self.persistence
        env_module.use_shared(await store.env_vars())
        self._env_owner = True
        reading: asyncio.Task[None] | None = None
        again = False  # a change was notified while `reading` ran: read once more

        async def reload() -> None:
            nonlocal again
            while True:
                again = False
                try:
                    env_module.use_shared(await store.env_vars())
                except Exception as e:  # the database is away: the reconnect re-reads them
                    log.warning("could not re-read the environment variables: %s", e)
                    return
                if not again:
                    return

        def changed() -> None:
            nonlocal reading, again
            if reading is not None and not reading.done():
                again = True
                return
            reading = asyncio.get_running_loop().create_task(reload())

        store.on_env_change = changed

    async def close(self) -> None:
        # Background runs stop first (their commits settle below); an action cut off here is
        # recorded as interrupted at the next start.
        await self.crons.stop()
        await self.scheduler.stop()
        if self.liveness is not None:  # after them: its row goes, so others settle what they cut off
            await self.liveness.stop()
            self.liveness = None
        await self.session_cleanup.stop()
        if self.file_storage is not None:
            await self.file_storage.stop()
        if self.subscriptions is not None:
            await self.subscriptions.stop()
        await self.search_indexes.close()
        if self.committer is not None:
            await self.committer.stop()
            self.persistence.search.save(self.committer.durable_ts)  # vector graphs, for the next start
        self.persistence.on_env_change = None
        await self.persistence.close()
        if self._env_owner:
            env_module.use_shared(None)
        self.transfers.close()
        metrics.detach(self)
        if self._temp_blob_dir is not None:
            shutil.rmtree(self._temp_blob_dir, ignore_errors=True)

    # -- auth ----------------------------------------------------------------------------------
    async def verify_token(self, token: str) -> dict[str, Any]:
        """A user JWT -> its UserIdentity object; EngineError (status 401) when it is not valid."""
        return await self.auth_providers.verify(token)

    # -- lookups -------------------------------------------------------------------------------
    def latest_ts(self) -> int:
        return self.committer.durable_ts

    def lookup(self, path: str, *, kind: str | None, auth: Auth, internal_ok: bool = False) -> RegisteredFunction:
        """The function `path` names, for a caller; `_NotFound` with Convex's text otherwise."""
        canonical = canonicalize_path(path)
        if canonical.startswith("_system/"):
            return self._lookup_system(canonical, path, kind=kind, auth=auth)
        fn = self.app.functions.get(canonical)
        shown = _stripped(canonical)
        if fn is None or (fn.visibility == "internal" and not (auth.admin or internal_ok)):
            if kind is None:  # /api/function, /api/run: Convex's execute_any_function wording, exactly
                # (`python -m engine run` shows our advice in place of Convex's)
                raise _NotFound(f"Could not find function for '{shown}'. {CONVEX_MISSING_ADVICE}")
            raise _NotFound(f"Could not find public function for '{shown}'.")
        if kind is not None and fn.kind != kind:
            module, export = canonical.split(":")
            raise _NotFound(f"Trying to execute {module}.js:{export} as {kind.capitalize()}, "
                            f"but it is defined as {fn.kind.capitalize()}.")
        return fn

    def _lookup_system(self, canonical: str, path: str, *, kind: str | None, auth: Auth) -> RegisteredFunction:
        """`_system/...`: the CLI's and the dashboard's functions (engine.system_udfs), admin only."""
        from .system_udfs import system_function, unknown_system_function, PERMISSION_PREFIX

        if not auth.admin:
            raise _NotFound(f"{PERMISSION_PREFIX}: {path} is a system function; it needs the admin key.")
        fn = system_function(self, canonical)
        if fn is None:
            raise _NotFound(unknown_system_function(path))
        if kind is not None and fn.kind != kind:
            raise _NotFound(f"{PERMISSION_PREFIX}: {path} is a {fn.kind}, not a {kind}.")
        return fn

    # -- snapshot export / import (engine.transfers) --------------------------------------------
    async def export_snapshot(self, path: str | Path | None = None, *,
                              include_file_storage: bool = False) -> dict[str, Any]:
        """Write every table at one snapshot to a ZIP (`npx convex export`'s layout; stored files too
        with `include_file_storage`); its state (`start_ts`, `zip_object_key`, `counts`). Without
        `path` it goes to the exports folder, where `GET /api/export/zip/<ts>` serves it."""
        return await self.transfers.export(path, include_file_storage=include_file_storage)

    async def import_snapshot(self, path: str | Path, *, mode: str = "requireEmpty", fmt: str = "zip",
                              table: str | None = None) -> dict[str, int]:
        """Import a snapshot ZIP (or a JSONL / JSON-array file into `table`) through the committer,
        in one transaction that live queries see at once; {table: documents}."""
        from .transfers import import_tables, read_import_file

        tables = await asyncio.to_thread(read_import_file, path, fmt, table)
        return await import_tables(self, tables, mode)

    # -- calls ---------------------------------------------------------------------------------
    async def call(self, path: str, args: Any, *, kind: str | None, auth: Auth,
                   ts: int | None = None, idempotency: Idempotency | None = None) -> Outcome:
        """Run `path` for a client. `idempotency` (engine.runner.Idempotency) makes a mutation run
        at most once per key: its result is stored in the same commit, and a repeat returns it."""
        rid = request_id()
        try:
            fn = self.lookup(path, kind=kind, auth=auth)
        except _NotFound as e:
            return Outcome(False, error_message=e.client_message(rid))
        lines: list[str] = []
        # A timestamp it cannot read at is the request's fault, not the function's: EngineError (4xx).
        snapshot = await self.snapshot_at(ts) if ts is not None and fn.kind == "query" else None
        try:
            if fn.kind == "query":
                try:
                    run, lines = await self.runner.run_query(fn, args, auth, snapshot=snapshot, request_id=rid)
                finally:
                    if snapshot is not None:
                        snapshot.close()
                return Outcome(True, run.value, log_lines=lines, ts=run.ts, wire=run.wire)
            if fn.kind == "mutation":
                value, wire, commit_ts, lines = await self.runner.run_mutation(fn, args, auth, request_id=rid,
                                                                                idempotency=idempotency)
                return Outcome(True, value, log_lines=lines, ts=commit_ts, wire=wire)
            value, wire, lines = await self.runner.run_action(fn, args, auth, request_id=rid)
            return Outcome(True, value, log_lines=lines, wire=wire)
        except Exception as e:  # a function failure, reported to the caller, never fatal
            return failure_outcome(e, rid, fn.path, getattr(e, "log_lines", lines), self.app.root)

    async def query_batch(self, calls: list[tuple[str, Any]], auth: Auth) -> list[Outcome]:
        """Run several queries at one snapshot."""
        snapshot = await self.persistence.snapshot()
        try:
            out = []
            for path, args in calls:
                rid = request_id()
                try:
                    fn = self.lookup(path, kind="query", auth=auth)
                except _NotFound as e:
                    out.append(Outcome(False, error_message=e.client_message(rid)))
                    continue
                try:
                    run, lines = await self.runner.run_query(fn, args, auth, snapshot=snapshot, request_id=rid)
                    out.append(Outcome(True, run.value, log_lines=lines, ts=run.ts, wire=run.wire))
                except Exception as e:
                    out.append(failure_outcome(e, rid, fn.path, getattr(e, "log_lines", []), self.app.root))
            return out
        finally:
            snapshot.close()

    async def snapshot_at(self, ts: int):
        """A snapshot whose contents equal the state at `ts`: the latest one with the commits
        after `ts` undone (engine.history keeps ~30 s of them)."""
        if ts > self.committer.last_ts and not self.persistence.inline_reads:
            # A shared store: the timestamp may come from another node's commit this node has not
            # read yet (a fresh snapshot catches up on everything committed).
            (await self.persistence.snapshot()).close()
        if ts > self.committer.last_ts:
            raise EngineError("InvalidTimestamp", "The requested timestamp is in the future.", status=400)
        await self.committer.wait_settled(ts)  # a ts handed out but not yet durable
        history = self.committer.history
        if not history.covers(ts):
            raise EngineError("HistoricalReadUnavailable",
                              "The requested timestamp is older than the history this deployment keeps "
                              f"(about {history.window_ns // 1_000_000_000} s, or since the last restart); "
                              "query at a newer timestamp.", status=400)
        return history.view(await self.persistence.snapshot(), ts)

    # -- HTTP actions --------------------------------------------------------------------------
    async def handle_http_action(self, request: Any) -> Any:
        """Serve one request to the app's `http_routes.py` router (engine.http_router)."""
        # Imported here: http_router -> http_api -> deployment would be an import cycle at load time.
        from .http_router import dispatch

        return await dispatch(self, request)

    # -- dev mode --------------------------------------------------------------------------------
    async def reload(self) -> App:
        """Swap in the app folder's current code without dropping clients (engine.reload): refuses
        with EngineError (naming the file, or the table and document that do not fit the new
        schema) and keeps the old code serving; live queries re-run on the new code."""
        async with self._reload_lock:
            return await reload_app(self)

    # -- introspection -------------------------------------------------------------------------
    def function_spec(self) -> list[dict[str, Any]]:
        out = []
        for path, fn in sorted(self.app.functions.items()):
            module, export = path.split(":")
            out.append({
                "identifier": f"{module}.js:{export}",
                "functionType": fn.kind.capitalize(),
                "visibility": {"kind": fn.visibility},
                "args": fn.args.to_json() if fn.args is not None else {"type": "any"},
                "returns": fn.returns.to_json() if fn.returns is not None else {"type": "any"},
            })
        return out


def _committer_for(store: Persistence, start_ts: int) -> Committer:
    """SQLite's in-process committer, or the cluster committer for a store nodes share."""
    if store.shared:
        from .cluster import ClusterCommitter

        return ClusterCommitter(store, WriteLog(start_ts), start_ts)  # type: ignore[arg-type]
    return Committer(store, WriteLog(start_ts), start_ts)


class _NotFound(Exception):
    """No such function for this caller; its text is Convex's (crates/udf/src/validation.rs)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text

    def client_message(self, rid: str) -> str:
        return client_message(rid, self.text + "\n")


def _stripped(canonical: str) -> str:
    """How Convex names a function in errors: "tasks:list", and "tasks" for a default export."""
    module, _, export = canonical.partition(":")
    return module if export == "default" else canonical

