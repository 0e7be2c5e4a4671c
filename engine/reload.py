"""Loading changed app code into a running deployment (dev mode), without dropping clients.

`await reload_app(dep)` (what `Deployment.reload()` runs) either swaps in the app folder's current
code or refuses with an `EngineError` and leaves the old code serving:

1. Import the folder afresh (`load_app`). A file that does not import is refused, naming the app
   file where it failed (`functions/tasks.py, line 12: SyntaxError: ...`). Cron jobs must name
   existing mutations or actions.
2. Check every stored document of every table the new schema declares. The first one that does not
   fit is refused, naming the table, the document id and the reason.
3. Create new tables and build new indexes while the old code still serves (see below).
4. Swap, synchronously: the app (functions, HTTP router, crons), the catalog's schema and table
   definitions, and unregister indexes the new schema dropped or changed. Just before, the
   documents checked in step 2 are re-validated against the write log (OCC): if anything wrote to
   those tables meanwhile, steps 2-3 run again, so no document slips in unchecked.
5. Drop removed indexes, rebuild changed ones, re-sync the cron table, and re-run every live query
   on the new code (`SubscriptionManager.code_changed`).

Indexes change while commits flow, so they are kept in step with the committer: a new index is
filled by a commit of its own that reads the whole table (its by_creation_time range) at a snapshot
and registers the index in the same synchronous step in which it is sequenced. Every commit
sequenced before it either is in that snapshot or wrote the table and makes it conflict (retry);
every commit sequenced after it maintains the new index. An index is unregistered before its
entries are deleted, and those are deleted only once every commit that still maintained it is
durable.
"""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import BY_CREATION_TIME, BY_ID, SYSTEM_FIELDS, IndexInfo, TableInfo
from .committer import Busy, Conflict
from .cron import Crons
from .errors import EngineError
from .loader import App, load_app
from .transaction import Transaction
from .values import decode_json

if TYPE_CHECKING:
    from .deployment import Deployment

__all__ = ["reload_app", "app_file_of"]

MAX_ATTEMPTS = 64  # a table written continuously can make a backfill or the schema check retry
_FULL_RANGE = (b"", b"\xff")  # every index key (each starts with a value tag below 0xFF)


def app_file_of(error: BaseException, root: Path) -> str | None:
    """'functions/tasks.py, line 12' for the app file an import failed in (the innermost app frame
    of the traceback; for a SyntaxError the file that does not parse), or None."""
    cause = error.__cause__ or error
    if isinstance(cause, SyntaxError) and cause.filename:
        where = _relative(cause.filename, root)
        if where is not None:
            return f"{where}, line {cause.lineno}" if cause.lineno else where
    found = None
    for frame in traceback.extract_tb(cause.__traceback__):
        where = _relative(frame.filename, root)
        if where is not None:
            found = f"{where}, line {frame.lineno}"
    return found


def _relative(filename: str, root: Path) -> str | None:
    try:
        return Path(filename).resolve().relative_to(root).as_posix()
    except ValueError:
        return None


def _load(root: Path) -> App:
    # A file created since the last load must be found even if its folder's listing is cached.
    importlib.invalidate_caches()
    try:
        return load_app(root)
    except EngineError as e:
        cause = e.__cause__ or e
        where = app_file_of(e, root)
        if isinstance(cause, SyntaxError):
            detail = f"SyntaxError: {cause.msg}"
        elif cause is e:
            detail = f"{e.code}: {e.message}"
        else:
            detail = f"{type(cause).__name__}: {cause}"
        raise EngineError("AppLoadError", f"{where}: {detail}" if where else e.message) from e


def _check_crons(app: App) -> None:
    """The checks the cron service makes when it syncs, made before anything is swapped."""
    if app.crons is None:
        return
    if not isinstance(app.crons, Crons):
        raise EngineError("InvalidCronJob", "crons.py must export `crons = cron_jobs()`.")
    for job in app.crons.jobs.values():
        try:
            path = job.path()
        except (TypeError, ValueError, EngineError) as e:
            raise EngineError("InvalidCronJob", f'crons.py: cron job "{job.name}": {e}') from None
        fn = app.functions.get(path)
        if fn is None or fn.kind not in ("mutation", "action"):
            what = "does not exist" if fn is None else f"is a {fn.kind}"
            raise EngineError("InvalidCronJob", f'crons.py: cron job "{job.name}" runs {path}, which {what}; '
                              "a cron job runs a mutation or an action.")


def _wanted_indexes(schema: Any, name: str) -> dict[str, list[str]]:
    """User indexes (full key fields) the schema declares for table `name`."""
    definition = schema.tables.get(name) if schema is not None else None
    if definition is None:
        return {}
    return {ix: list(fields) + list(SYSTEM_FIELDS) for ix, fields in definition.indexes.items()}


async def _check_documents(dep: Deployment, schema: Any) -> Transaction:
    """Validate every stored document of the schema's tables; the returned (closed) transaction
    holds what was read, for the OCC check at the swap."""
    catalog = dep.catalog
    txn = Transaction(catalog, await dep.persistence.snapshot(), writable=False)
    try:
        if schema is None:
            return txn
        for name, definition in schema.tables.items():
            info = catalog.table(name)
            if info is None:
                continue  # a new table: nothing stored yet
            ix = info.indexes[BY_CREATION_TIME]
            txn.reads.add(ix.id, *_FULL_RANGE)
            async for _, doc_id, raw in txn.snapshot.scan(ix.id, *_FULL_RANGE, False):
                doc = decode_json(raw)
                try:
                    definition.validate(doc, catalog, table=name)
                except EngineError as e:
                    reason = e.message.split("does not match the schema: ", 1)[-1]
                    raise EngineError("SchemaValidationError",
                                      f'Schema validation failed: document with ID "{doc_id}" in table "{name}" '
                                      f"does not match the schema: {reason}") from None
        return txn
    finally:
        txn.close()


async def _build_index(dep: Deployment, info: TableInfo, name: str, fields: list[str]) -> None:
    """Persist, fill and register a new index on a live table, in step with the committer."""
    ix: IndexInfo = dep.catalog.allocate_index(name, fields)
    await dep.persistence.add_index(ix.id, info.name, name, fields)
    source = info.indexes[BY_CREATION_TIME]
    for _ in range(MAX_ATTEMPTS):
        txn = Transaction(dep.catalog, await dep.persistence.snapshot(), writable=False)
        try:
            txn.reads.add(source.id, *_FULL_RANGE)
            entries = [(ix.id, ix.key(decode_json(raw)), doc_id)
                       async for _, doc_id, raw in txn.snapshot.scan(source.id, *_FULL_RANGE, False)]
        finally:
            txn.close()

        def fill(record: Any) -> None:
            record.entry_puts.extend(entries)
            info.indexes[name] = ix  # from the next commit on, writes maintain it

        try:
            _, durable = dep.committer.sequence(txn, fill)
        except Busy as busy:
            await busy.released
            continue
        except Conflict:
            await dep.committer.wait_settled(dep.committer.sequenced_ts)
            continue
        await durable
        return
    raise EngineError("ReloadConflict", f'Building index "{info.name}.{name}" kept conflicting with writes.',
                      status=503)


async def _add_tables_and_indexes(dep: Deployment, schema: Any) -> None:
    """New tables, and indexes under names the catalog does not have yet (changed ones wait for
    the swap: the old definition serves the old code until then)."""
    if schema is None:
        return
    for name in schema.tables:
        info = await dep.catalog.ensure_table(name)
        for ix_name, fields in _wanted_indexes(schema, name).items():
            if ix_name not in info.indexes:
                await _build_index(dep, info, ix_name, fields)


def _swap(dep: Deployment, new: App) -> tuple[list[IndexInfo], list[tuple[TableInfo, str, list[str]]]]:
    """Synchronous: after it, every call and every commit sees only the new code and schema.
    Returns (indexes to delete, indexes to build) for after the swap."""
    catalog = dep.catalog
    dropped: list[IndexInfo] = []
    rebuild: list[tuple[TableInfo, str, list[str]]] = []
    dep.app = new
    catalog.schema = new.schema
    for name, info in catalog.by_name.items():
        if info.system:
            continue
        info.definition = new.schema.tables.get(name) if new.schema is not None else None
        wanted = _wanted_indexes(new.schema, name)
        for ix_name, ix in list(info.indexes.items()):
            if ix_name in (BY_ID, BY_CREATION_TIME):
                continue
            fields = wanted.get(ix_name)
            if fields != list(ix.fields):
                del info.indexes[ix_name]
                dropped.append(ix)
                if fields is not None:
                    rebuild.append((info, ix_name, fields))
    return dropped, rebuild


async def reload_app(dep: Deployment) -> App:
    """Load the app folder's current code into `dep` (see the module docstring); the new App.
    The caller runs one reload at a time."""
    new = _load(dep.app.root)
    _check_crons(new)
    for _ in range(MAX_ATTEMPTS):
        checked = await _check_documents(dep, new.schema)
        await _add_tables_and_indexes(dep, new.schema)
        try:
            dep.committer.validate(checked)
        except Conflict:  # something wrote to a checked table meanwhile: check again
            await dep.committer.wait_settled(dep.committer.sequenced_ts)
            continue
        dropped, rebuild = _swap(dep, new)
        break
    else:
        raise EngineError("ReloadConflict", "The schema check kept conflicting with writes; try again.",
                          status=503)
    if dropped:
        # Commits sequenced before the swap still maintain the dropped indexes: let them land.
        await dep.committer.wait_settled(dep.committer.sequenced_ts)
        for ix in dropped:
            await dep.persistence.drop_index(ix.id)
    for info, ix_name, fields in rebuild:
        await _build_index(dep, info, ix_name, fields)
    await dep.search_indexes.apply_schema(new.schema)  # added ones backfill in the background
    await dep.crons.sync()
    if dep.subscriptions is not None:
        await dep.subscriptions.code_changed()
    return new
