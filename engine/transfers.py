"""Snapshot export and import through a running deployment (the CLI's `/api/export/*`, `/api/import/*`).

    state = await dep.export_snapshot()                    # a ZIP of every table, at one snapshot
    counts = await dep.import_snapshot("backup.zip", mode="requireEmpty")

Both are Deployment methods, used by Convex's HTTP endpoints (engine.cli_api: `npx convex export`,
`npx convex import`) and by `python -m engine export|import --url`. The ZIP is the layout of
engine.snapshot_zip (the `npx convex export` layout); JSONL and JSON-array files import into one
table (`--table`).

Import goes through the running deployment, never behind its back:

- The whole import is ONE transaction, sequenced by the committer like any mutation: it reads every
  table it touches (full `by_creation_time` ranges), stages the deletes (replace modes) and the
  documents with their own `_id` and `_creationTime`, and commits atomically. A concurrent write to
  one of those tables makes it conflict and run again; live queries on them are invalidated by the
  commit's write-log keys and re-run at once, like after any mutation. Documents are checked against
  the schema first (naming the table, the line and the document); a refused import writes nothing.
- Document ids carry their table's number, so each table must have the number the snapshot says.
  A table that does not exist yet is created under that number. An existing table with another
  number is renumbered when it is empty (a fresh server of the same app whose schema lists its
  tables in another order than the exporting one did): in memory at a moment no commit is in
  flight, then in the stored catalog, before the import transaction runs (which then reads the
  table as empty, so a write slipping in makes it conflict). A table that holds documents under
  another number is refused with the reason: its ids could not be kept.
- Modes (Convex's): `requireEmpty` (default; the imported tables must hold no documents),
  `append` (ids must be new), `replace` (the imported tables' documents are replaced),
  `replaceAll` (every user table is emptied, then the import is written).
- `_cron_jobs` in a snapshot is skipped: the running deployment's crons.py owns that table.
- Stored files (`_storage/` in the ZIP, as `npx convex export --include-file-storage` writes it):
  their bytes go to the deployment's blob store first (durably), their `_storage` rows and private
  key rows in the import's one transaction; a failed import removes the bytes again, and a replace
  frees the bytes of the files it deleted before the import reports done.

Export reads one storage snapshot (in a worker thread) and writes the ZIP beside the database
(`<db dir>/exports/`, the last three kept); `GET /api/export/zip/<ts>` serves it.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import BY_CREATION_TIME, SYSTEM_TABLES, TableInfo
from .committer import Busy, Conflict
from .cron import CRON_JOBS
from .errors import EngineError
from .ids import FIRST_USER_TABLE_NUMBER, decode_id
from .snapshot_zip import _check_against_schema, _Table, _write_zip, put_file_bytes, read_snapshot_with_files
from .transaction import Limits, Transaction, creation_clock
from .values import decode_json

if TYPE_CHECKING:
    from .deployment import Deployment

__all__ = ["Transfers", "import_tables", "read_import_file", "MODES", "FORMATS"]

MODES = ("requireEmpty", "append", "replace", "replaceAll")
FORMATS = ("zip", "jsonLines", "jsonArray", "csv")
MAX_ATTEMPTS = 16
_KEEP_EXPORTS = 3
_FULL_RANGE = (b"", b"\xff")
# One transaction carries the whole import: Convex's per-mutation limits do not apply to it.
_IMPORT_LIMITS = Limits(documents_read=1 << 40, bytes_read=1 << 62, index_ranges_read=1 << 40,
                        documents_written=1 << 40, bytes_written=1 << 62)


def _refuse(code: str, message: str) -> EngineError:
    return EngineError(code, message)


# -- reading an import file ------------------------------------------------------------------------


def read_import_file(path: str | Path, fmt: str, table: str | None) -> list[_Table]:
    """The tables and documents of an import file (raises InvalidSnapshot / InvalidImport)."""
    if fmt == "zip":
        if table is not None:
            raise _refuse("InvalidImport", "`--table` is not allowed for a ZIP snapshot: it names its tables.")
        return read_snapshot_with_files(path, shown_as="The uploaded file")
    if fmt not in FORMATS:
        raise _refuse("InvalidImport", f"Unknown import format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if fmt == "csv":
        raise _refuse("InvalidImport", "CSV imports are not supported by this engine; convert the file to JSONL "
                                       "(one JSON object per line) and import it with --format jsonLines.")
    if not table:
        raise _refuse("InvalidImport", f"A {fmt} import needs the table to import into (`--table`).")
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise _refuse("InvalidImport", f"The import file is not UTF-8: {e}") from None
    docs: list[tuple[int, dict[str, Any]]] = []
    if fmt == "jsonArray":
        try:
            items = decode_json(text)
        except ValueError as e:
            raise _refuse("InvalidImport", f"The import file is not a JSON array: {e}") from None
        if not isinstance(items, list):
            raise _refuse("InvalidImport", "A jsonArray import must hold one JSON array of objects.")
        docs = [(i + 1, item) for i, item in enumerate(items)]
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    docs.append((lineno, decode_json(line)))
                except ValueError as e:
                    raise _refuse("InvalidImport", f"Line {lineno} is not a JSON object: {e}") from None
    for where, doc in docs:
        if not isinstance(doc, dict):
            raise _refuse("InvalidImport", f"Document {where} is not a JSON object.")
    out = _Table(table, 0)
    out.docs = docs
    return [out]


# -- the import ------------------------------------------------------------------------------------


@dataclass
class _Plan:
    moves: dict[str, int] = field(default_factory=dict)  # existing empty table -> its new number
    create: dict[str, int] = field(default_factory=dict)  # new table -> its number


async def _plan_numbers(dep: Deployment, tables: list[_Table]) -> _Plan:
    catalog = dep.catalog
    plan = _Plan()
    wanted: dict[str, int] = {}
    for t in tables:
        if t.number == 0:  # a single-table import: whatever number the table has (or gets)
            if catalog.table(t.name) is None:
                plan.create[t.name] = 0
            continue
        if t.docs or catalog.table(t.name) is not None:
            wanted[t.name] = t.number
    final: dict[str, int] = {name: info.number for name, info in catalog.by_name.items()}
    next_free = max([FIRST_USER_TABLE_NUMBER - 1, *final.values(), *wanted.values()]) + 1
    for name, number in wanted.items():
        live = catalog.table(name)
        if live is not None and live.number == number:
            continue
        holder = next((n for n, num in final.items() if num == number and n != name), None)
        if holder is not None and holder not in wanted:
            final[holder] = next_free
            plan.moves[holder] = next_free
            next_free += 1
        if live is None:
            plan.create[name] = number
        else:
            plan.moves[name] = number
        final[name] = number
    if len(set(final.values())) != len(final):  # pragma: no cover - the loop above keeps it a bijection
        raise _refuse("ImportTableNumbers", "The snapshot's table numbers cannot be arranged in this deployment.")
    for name in plan.moves:
        info = catalog.by_name[name]
        if info.system:
            raise _refuse("ImportTableNumbers", f'System table "{name}" cannot change its number.')
        if not await dep.persistence.table_is_empty(info.number):
            why = (f'the snapshot\'s ids for table "{name}" carry number {plan.moves[name]}'
                   if name in wanted else f'the snapshot needs its number {info.number} for another table')
            raise _refuse("ImportTableNumbers",
                          f'Table "{name}" holds documents under table number {info.number}, but {why}; '
                          "its documents' ids could not be kept. Import into a fresh deployment (or empty the "
                          "table first).")
    return plan


async def _quiesce(dep: Deployment) -> None:
    """Return at a moment when every sequenced commit has settled (nothing is in flight)."""
    committer = dep.committer
    for _ in range(1000):
        if committer.settled_ts >= committer.sequenced_ts:
            return
        await committer.wait_settled(committer.sequenced_ts)
    raise _refuse("ImportBusy", "The deployment kept committing; try the import again.")


async def _apply_numbers(dep: Deployment, plan: _Plan) -> None:
    catalog = dep.catalog
    if plan.moves:
        await _quiesce(dep)
        old = {name: catalog.by_name[name].number for name in plan.moves}
        # Synchronous: from here every commit sees the new numbers (the tables are empty).
        for name in plan.moves:
            del catalog.by_number[old[name]]
        for name, number in plan.moves.items():
            info = catalog.by_name[name]
            info.number = number
            catalog.by_number[number] = info
        catalog._next_table = max(catalog._next_table, max(plan.moves.values()) + 1)
        try:
            await dep.persistence.renumber_tables(plan.moves)
        except BaseException:
            for name, number in plan.moves.items():
                del catalog.by_number[number]
            for name in plan.moves:
                info = catalog.by_name[name]
                info.number = old[name]
                catalog.by_number[old[name]] = info
            raise
    for name, number in plan.create.items():
        await catalog.ensure_table(name, number=number or None)


async def _scan_all(txn: Transaction, info: TableInfo) -> list[dict[str, Any]]:
    scan = txn.scan(info, info.indexes[BY_CREATION_TIME], *_FULL_RANGE, False)
    docs = [doc async for _, doc in scan]
    scan.finish()
    return docs


def _fill_single_table(tables: list[_Table], dep: Deployment) -> None:
    """A JSONL/JSON import: ids of the target table are kept, others refused, missing ones made."""
    from .ids import new_id

    for t in tables:
        if t.number != 0:
            continue
        info = dep.catalog.by_name[t.name]
        t.number = info.number
        fixed = []
        for where, doc in t.docs:
            doc = dict(doc)
            doc_id = doc.get("_id")
            if doc_id is None:
                doc["_id"] = new_id(info.number)
            elif not isinstance(doc_id, str) or decode_id(doc_id) != info.number:
                raise _refuse("InvalidImport", f'Document {where}: _id {doc_id!r} is not an id of table "{t.name}".')
            created = doc.get("_creationTime")
            if created is None:
                doc["_creationTime"] = creation_clock.next()
            elif not isinstance(created, float):
                raise _refuse("InvalidImport", f"Document {where}: _creationTime must be a number.")
            fixed.append((where, doc))
        t.docs = fixed


async def import_tables(dep: Deployment, tables: list[_Table], mode: str = "requireEmpty",
                        progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Write `tables` into the running deployment in one transaction (see the module docstring);
    {table: documents written}."""
    if mode not in MODES:
        raise _refuse("InvalidImport", f"Unknown import mode {mode!r}; expected one of {', '.join(MODES)}.")
    tables = [t for t in tables if t.name != CRON_JOBS]
    await _apply_numbers(dep, await _plan_numbers(dep, tables))
    _fill_single_table(tables, dep)
    _check_against_schema(tables, dep.catalog)
    # Stored files: their bytes are written durably first, the rows go in the import's one commit
    # (a crash in between leaves blobs no row names, which the next start removes); a refused or
    # failed import removes them again. Files the replace modes delete are freed after the commit.
    storage = dep.file_storage
    assert storage is not None  # set up by Deployment.open
    written = await put_file_bytes(storage.blobs, tables)
    try:
        counts = await _import_in_one_transaction(dep, tables, mode, progress)
    except BaseException:
        for key in written:
            await storage.blobs.delete(key)
        raise
    await storage.settled()  # the bytes of files a replace deleted are freed by now
    return {name: n for name, n in counts.items() if not _private(name)}


def _private(name: str) -> bool:
    system = SYSTEM_TABLES.get(name)
    return system is not None and system.private


async def _import_in_one_transaction(dep: Deployment, tables: list[_Table], mode: str,
                                     progress: Callable[[int], None] | None) -> dict[str, int]:
    for _ in range(MAX_ATTEMPTS):
        txn = Transaction(dep.catalog, await dep.committer.latest_view(), writable=True, limits=_IMPORT_LIMITS)
        try:
            infos = [(t, dep.catalog.by_name[t.name]) for t in tables if dep.catalog.table(t.name) is not None]
            existing: dict[str, set[str]] = {}
            for t, info in infos:
                docs = await _scan_all(txn, info)
                if mode == "requireEmpty" and docs:
                    raise _refuse("ImportTableNotEmpty",
                                  f'Table "{t.name}" already holds {len(docs)} document(s); import into empty '
                                  "tables, or choose --replace (or --append).")
                if mode in ("replace", "replaceAll"):
                    for doc in docs:
                        await txn._stage(info, doc["_id"], None)
                else:
                    existing[t.name] = {doc["_id"] for doc in docs}
            if mode == "replaceAll":
                imported = {t.name for t in tables}
                for name, info in dep.catalog.by_name.items():
                    if not info.system and name not in imported:
                        for doc in await _scan_all(txn, info):
                            await txn._stage(info, doc["_id"], None)
            written = 0
            for t, info in infos:
                taken = existing.get(t.name, set())
                for where, doc in t.docs:
                    if doc["_id"] in taken:
                        raise _refuse("ImportDuplicateId", f'Table "{t.name}", document {where}: id '
                                      f'"{doc["_id"]}" already exists (append keeps existing documents).')
                    await txn._stage(info, doc["_id"], doc)
                    written += 1
                    if progress is not None and written % 1000 == 0:
                        progress(1000)
            try:
                _, durable = dep.committer.sequence(txn)
            except Busy as busy:  # a mutation has the sequencer to itself for a moment
                await busy.released
                continue
            except Conflict:
                await dep.committer.wait_settled(dep.committer.sequenced_ts)
                continue
        finally:
            txn.close()
        await durable
        if progress is not None:
            progress(written % 1000)
        return {t.name: len(t.docs) for t in tables}
    raise _refuse("ImportConflict", "The import kept conflicting with concurrent writes to its tables; try again.")


# -- state the CLI polls --------------------------------------------------------------------------


@dataclass
class _Import:
    id: str
    created: float
    fmt: str
    mode: str
    table: str | None
    path: Path
    state: dict[str, Any]
    tables: list[_Table] | None = None

    def document(self) -> dict[str, Any]:
        return {"_id": self.id, "_creationTime": self.created, "state": self.state, "format": self.fmt,
                "mode": self.mode, "tableName": self.table}


class Transfers:
    """A deployment's exports, uploads and imports (kept in memory: a restart forgets them)."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self._exports: list[dict[str, Any]] = []
        self._export_files: dict[int, Path] = {}
        self._uploads: dict[str, list[Path]] = {}
        self._imports: dict[str, _Import] = {}
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._export_lock: asyncio.Lock | None = None
        self._import_lock: asyncio.Lock | None = None

    # -- where files go --------------------------------------------------------------------------
    def _scratch(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="convex-transfers-")
        return Path(self._tmp.name)

    def _export_dir(self) -> Path:
        db = getattr(self.dep.persistence, "path", None)
        if db is not None and "convex-mem-" not in str(db):
            folder = Path(db).resolve().parent / "exports"
        else:
            folder = self._scratch() / "exports"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- export ----------------------------------------------------------------------------------
    async def export(self, out_path: str | Path | None = None, *,
                     include_file_storage: bool = False) -> dict[str, Any]:
        """Write a snapshot ZIP (to `out_path`, else the exports folder); its state document.
        `include_file_storage` adds the stored files (engine.snapshot_zip's `_storage/` layout)."""
        if self._export_lock is None:
            self._export_lock = asyncio.Lock()
        async with self._export_lock:
            catalog = self.dep.catalog
            tables = {name: info.number for name, info in catalog.by_name.items()}
            indexes = {(info.name, ix.name): (ix.id, list(ix.fields))
                       for info in catalog.by_name.values() for ix in info.indexes.values()}
            snapshot = await self.dep.persistence.snapshot(private=True)  # read from a worker thread
            start = snapshot.ts
            target = Path(out_path) if out_path is not None else self._export_dir() / f"snapshot_{start}.zip"
            if out_path is not None and target.exists():
                snapshot.close()
                raise _refuse("ExportPathTaken", f"{target} already exists; choose an unoccupied path.")
            if out_path is None and target.exists():
                target.unlink()
            try:
                counts = await asyncio.to_thread(_write_zip, snapshot, tables, indexes, target,
                                                 self._blob_dir() if include_file_storage else None)
            finally:
                snapshot.close()
            state = {"_id": f"export-{start}", "_creationTime": time.time() * 1000.0, "state": "completed",
                     "start_ts": start, "complete_ts": max(start, self.dep.latest_ts()),
                     "zip_object_key": target.name, "requestor": "snapshotExport",
                     "format": {"format": "zip", "include_storage": include_file_storage},
                     "documents": float(sum(counts.values())), "tables": float(len(counts))}
            if out_path is None:
                self._export_files[start] = target
                self._exports.append(state)
                while len(self._exports) > _KEEP_EXPORTS:
                    old = self._exports.pop(0)
                    stale = self._export_files.pop(old["start_ts"], None)
                    if stale is not None:
                        stale.unlink(missing_ok=True)
            return {**state, "counts": counts}

    def _blob_dir(self) -> str:
        blobs = getattr(getattr(self.dep, "file_storage", None), "blobs", None)
        root = getattr(blobs, "root", None)
        if root is None:
            raise _refuse("ExportUnsupported", "Stored files can be exported only from a local blob store.")
        return str(root)

    def latest_export_state(self) -> dict[str, Any] | None:
        return dict(self._exports[-1]) if self._exports else None

    def export_file(self, ts: int) -> Path | None:
        path = self._export_files.get(ts)
        return path if path is not None and path.exists() else None

    # -- uploads ---------------------------------------------------------------------------------
    def start_upload(self) -> str:
        token = secrets.token_urlsafe(18)
        self._uploads[token] = []
        return token

    def upload_part(self, token: str, part_number: int, data: bytes) -> dict[str, Any]:
        parts = self._uploads.get(token)
        if parts is None:
            raise _refuse("InvalidUploadToken", "Unknown upload token; start the upload again.")
        fd, name = tempfile.mkstemp(prefix=f"part{part_number}-", dir=self._scratch())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        parts.append(Path(name))
        return {"partNumber": part_number, "part": Path(name).name, "size": len(data)}

    def assemble_upload(self, token: str, part_tokens: list[Any]) -> Path:
        """The uploaded parts joined into one file (file work: callers run it in a thread)."""
        parts = self._uploads.pop(token, None)
        if parts is None:
            raise _refuse("InvalidUploadToken", "Unknown upload token; start the upload again.")
        by_name = {p.name: p for p in parts}
        fd, name = tempfile.mkstemp(prefix="import-", dir=self._scratch())
        with os.fdopen(fd, "wb") as out:
            for part in part_tokens:
                path = by_name.get(str(part.get("part"))) if isinstance(part, dict) else None
                if path is None:
                    raise _refuse("InvalidUploadToken", f"Unknown upload part {part!r}.")
                out.write(path.read_bytes())
        for p in parts:
            p.unlink(missing_ok=True)
        return Path(name)

    async def finish_upload(self, token: str, part_tokens: list[Any], args: dict[str, Any]) -> str:
        path = await asyncio.to_thread(self.assemble_upload, token, part_tokens)
        return await self.register_import(path, args)

    # -- imports ---------------------------------------------------------------------------------
    async def register_import(self, path: Path, args: dict[str, Any]) -> str:
        """Parse and check an uploaded file; the import waits for confirmation (or has failed)."""
        fmt = args.get("format") or "zip"
        mode = args.get("mode") or "requireEmpty"
        table = args.get("tableName") or None
        if args.get("componentPath"):
            raise _refuse("InvalidImport", "This engine has no components; import without --component.")
        if mode not in MODES:
            raise _refuse("InvalidImport", f"Unknown import mode {mode!r}; expected one of {', '.join(MODES)}.")
        item = _Import(f"import-{secrets.token_hex(8)}", time.time() * 1000.0, fmt, mode, table, path,
                       {"state": "uploaded"})
        self._imports[item.id] = item
        try:
            item.tables = read_import_file(path, fmt, table)
            item.state = {"state": "waiting_for_confirmation", "message_to_confirm": await self._summary(item),
                          "require_manual_confirmation": await self._deletes(item)}
        except EngineError as e:
            item.state = {"state": "failed", "error_message": f"{e.code}: {e.message}"}
        return item.id

    async def _summary(self, item: _Import) -> str:
        assert item.tables is not None
        lines = ["Import change summary:", "table | create | delete |", "------|--------|--------|"]
        for t in item.tables:
            if t.name == CRON_JOBS or _private(t.name):
                continue
            held = await self._held(t.name)
            deleting = held if item.mode in ("replace", "replaceAll") else 0
            lines.append(f"{t.name} | {len(t.docs)} | {deleting} of {held} |")
        return "\n".join(lines)

    async def _held(self, table: str) -> int:
        info = self.dep.catalog.table(table)
        if info is None:
            return 0
        count = 0
        async for _ in self.dep.persistence.table_documents(info.number):
            count += 1
        return count

    async def _deletes(self, item: _Import) -> bool:
        if item.mode == "replaceAll":
            return True
        if item.mode != "replace":
            return False
        for t in item.tables or ():
            if await self._held(t.name):
                return True
        return False

    async def perform(self, import_id: str) -> dict[str, Any]:
        item = self._imports.get(import_id)
        if item is None:
            raise _refuse("ImportNotFound", f"There is no import {import_id!r}.")
        if item.state.get("state") != "waiting_for_confirmation" or item.tables is None:
            raise _refuse("ImportNotWaiting", f"Import {import_id} is {item.state.get('state')}, not waiting for "
                                              "confirmation.")
        if self._import_lock is None:
            self._import_lock = asyncio.Lock()
        async with self._import_lock:
            item.state = {"state": "in_progress", "progress_message": "Importing", "checkpoint_messages": []}
            try:
                counts = await import_tables(self.dep, item.tables, item.mode)
            except EngineError as e:
                item.state = {"state": "failed", "error_message": f"{e.code}: {e.message}"}
            else:
                item.state = {"state": "completed", "num_rows_written": sum(counts.values()),
                              "checkpoint_messages": [f"Imported {n} documents into {t}" for t, n in counts.items()]}
            finally:
                item.tables = None
                item.path.unlink(missing_ok=True)
        return item.document()

    def import_document(self, import_id: str) -> dict[str, Any]:
        item = self._imports.get(import_id)
        if item is None:  # the CLI must see a state it can end on, not a null it would crash on
            return {"_id": import_id, "_creationTime": 0.0,
                    "state": {"state": "failed", "error_message": f"There is no import {import_id!r} "
                                                                  "(imports are forgotten when the server restarts)."}}
        return item.document()

    def import_documents(self) -> list[dict[str, Any]]:
        return [item.document() for item in self._imports.values()]

