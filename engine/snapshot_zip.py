"""Snapshot export and import: the whole database as a ZIP of JSONL files, in `npx convex export`'s layout.

    README.md                   what this file is
    _tables/documents.jsonl     one line per table: {"name": "tasks", "id": 10001}
    <table>/documents.jsonl     one document per line (with _id and _creationTime), by creation time

`id` is the table number, the one every document id of that table carries (engine.ids). System
tables (`_scheduled_functions`, `_cron_jobs`) are listed and exported like the others. Values are
written in Convex's *encoded* JSON (`engine.values.to_wire`, the form the sync protocol uses):
int64 as {"$integer": base64 of 8 bytes LE}, bytes as {"$bytes": base64}, NaN/±inf/-0.0 as
{"$float": ...}, keys sorted. (Convex's own exports use "clean" JSON plus generated_schema.jsonl
type hints; the encoded form is self-describing, so there is no generated_schema.jsonl here.)

Stored files (`include_file_storage=True`, `export --include-file-storage`) are laid out as
`npx convex export --include-file-storage` lays them out: `_storage/documents.jsonl` with one line
per file, `{"_id", "_creationTime", "sha256" (base64), "size", "contentType", "internalId" (the
file's UUID)}`, and each file's bytes at `_storage/<_id><extension guessed from the content type>`.
Without the flag `_storage` is left out, as Convex leaves it out. `_storage` is not listed in
`_tables/documents.jsonl` (Convex does not list it either); private system tables never appear.

Export reads one storage snapshot, so the ZIP is consistent at one commit timestamp; it can run
while a server is using the database.

Import (stop the server first: it restores into the database file directly):
- reads and checks the whole ZIP before writing anything: every line must be a JSON object with an
  `_id` of its table (by number) and a float `_creationTime`, ids unique; with a schema, every user
  table holding documents must be in it and every document must match it. A refusal names the
  table, the line and the document, and leaves the database untouched.
- refuses a deployment that holds documents (`_cron_jobs` aside: crons.py regenerates it) unless
  `replace=True`, which replaces everything.
- registers every table with the number its ids carry (tables of the target that would collide get
  fresh numbers; they are empty), rebuilds every index, and writes it all in ONE SQLite transaction
  (`Persistence.restore`).
- stored files: every `_storage` line needs its bytes in the ZIP, with the size and sha256 the line
  gives; the bytes are written to the deployment's blob folder (durably) before the rows commit,
  and removed again if the import fails. Ids must carry this engine's `_storage` number.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import os
import re
import tempfile
import time
import uuid
import zipfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import BY_CREATION_TIME, BY_ID, SYSTEM_TABLES, Catalog
from .cron import CRON_JOBS
from .errors import EngineError
from .ids import FIRST_USER_TABLE_NUMBER, decode_id
from .loader import load_app
from .blobs import LocalBlobStore
from .file_storage import STORAGE, STORAGE_KEYS, blob_dir_for, extension_for
from .ids import new_id
from .storage import Persistence, Snapshot, SqlitePersistence
from .storage.base import scan_now
from .values import check_field_name, decode_json, encode_json

__all__ = ["export_snapshot", "import_snapshot", "TABLES_FILE"]

TABLES_FILE = "_tables/documents.jsonl"
_FULL_RANGE = (b"", b"\xff")
_TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}\Z")
# Derived from crons.py at every start: not "data" for the emptiness check.
_DERIVED_TABLES = {CRON_JOBS}

README = """\
# Snapshot export

Written by `python -m engine export`; restore it with `python -m engine import --path <this file>`.

- `_tables/documents.jsonl`: one line per table, `{"name": <table>, "id": <table number>}`.
  Document ids carry their table's number, so an import registers each table under it.
- `<table>/documents.jsonl`: the table's documents, one JSON object per line, with `_id` and
  `_creationTime`, in creation order.
- Values are Convex's encoded JSON: int64 as `{"$integer": <base64 of 8 bytes, little-endian>}`,
  bytes as `{"$bytes": <base64>}`, NaN / Infinity / -0.0 as `{"$float": <base64 of 8 bytes>}`.
  System tables (`_scheduled_functions`, `_cron_jobs`) are included.
- With `--include-file-storage`: `_storage/documents.jsonl` (one line per stored file, as `npx
  convex export --include-file-storage` writes it) and each file's bytes at `_storage/<id>[.ext]`.
"""


def _refuse(message: str) -> EngineError:
    return EngineError("InvalidSnapshot", message)


# -- export --------------------------------------------------------------------------------------
async def export_snapshot(db_path: str | Path, out_path: str | Path, *,
                          include_file_storage: bool = False) -> dict[str, int]:
    """Write the database's current state to a ZIP at `out_path`; {table: document count}
    (`_storage` counts the stored files when they are included)."""
    db_path, out_path = Path(db_path), Path(out_path)
    if not db_path.exists():
        raise EngineError("NoDatabase", f"There is no database at {db_path}.")
    if out_path.exists():
        raise EngineError("ExportPathTaken", f"{out_path} already exists; choose an unoccupied path.")
    store = SqlitePersistence(db_path)
    await store.open()
    try:
        _, tables, indexes = await store.load_catalog()
        snapshot = await store.snapshot()  # one read transaction: every table at the same commit
        try:
            return _write_zip(snapshot, tables, indexes, out_path,
                              blob_dir_for(db_path) if include_file_storage else None)
        finally:
            snapshot.close()
    finally:
        await store.close()


def _write_zip(snapshot: Snapshot, tables: dict[str, int], indexes: dict[tuple[str, str], tuple[int, list[str]]],
               out_path: Path, blob_dir: str | None = None) -> dict[str, int]:
    listing = sorted(((n, num) for n, num in tables.items() if not _special(n)), key=lambda kv: kv[1])
    counts: dict[str, int] = {}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # Written beside the target and renamed into place: a failed export leaves no partial ZIP.
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".zip", dir=out_path.parent)
    os.close(fd)
    from .progress import progress

    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf, \
                progress(f"Exporting to {out_path.name}", unit=" docs") as bar:
            zf.writestr("README.md", README)
            zf.writestr(TABLES_FILE, "".join(json.dumps({"name": n, "id": num}, separators=(",", ":")) + "\n"
                                             for n, num in listing))
            for name, _ in listing:
                index = indexes.get((name, BY_CREATION_TIME))
                if index is None:
                    raise EngineError("CorruptCatalog", f'Table "{name}" has no {BY_CREATION_TIME} index.')
                count = 0
                with zf.open(f"{name}/documents.jsonl", "w") as out:
                    # Stored values are already canonical encoded JSON (sorted keys).
                    for _, _, raw in scan_now(snapshot, index[0], *_FULL_RANGE):
                        out.write(bytes(raw) + b"\n")
                        count += 1
                        bar.update(1)
                counts[name] = count
            if blob_dir is not None:
                counts[STORAGE] = _write_files(zf, snapshot, indexes, blob_dir)
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return counts


def _special(name: str) -> bool:
    """Tables the generic listing leaves out: `_storage` (only with its files) and private ones."""
    system = SYSTEM_TABLES.get(name)
    return name == STORAGE or (system is not None and system.private)


def _write_files(zf: zipfile.ZipFile, snapshot: Snapshot, indexes: dict[tuple[str, str], tuple[int, list[str]]],
                 blob_dir: str) -> int:
    storage_ix, keys_ix = indexes.get((STORAGE, BY_CREATION_TIME)), indexes.get((STORAGE_KEYS, BY_CREATION_TIME))
    if storage_ix is None or keys_ix is None:
        zf.writestr(f"{STORAGE}/documents.jsonl", "")
        return 0
    uuids = {}
    for _, _, raw in scan_now(snapshot, keys_ix[0], *_FULL_RANGE):
        row = decode_json(raw)
        uuids[row["storageId"]] = row["uuid"]
    blobs = LocalBlobStore(blob_dir)
    lines, count = [], 0
    with zf.open(f"{STORAGE}/documents.jsonl", "w") as out:
        for _, _, raw in scan_now(snapshot, storage_ix[0], *_FULL_RANGE):
            doc = decode_json(raw)
            file_uuid = uuids.get(doc["_id"])
            if file_uuid is None:
                raise EngineError("CorruptStorage", f'Stored file "{doc["_id"]}" has no blob key.')
            out.write(json.dumps({"_id": doc["_id"], "_creationTime": doc["_creationTime"], "sha256": doc["sha256"],
                                  "size": int(doc["size"]), "contentType": doc["contentType"],
                                  "internalId": file_uuid}, separators=(",", ":")).encode() + b"\n")
            lines.append((doc, file_uuid))
    for doc, file_uuid in lines:
        path = blobs.path(file_uuid)
        if not path.is_file():
            raise EngineError("CorruptStorage", f'The bytes of stored file "{doc["_id"]}" are missing ({path}).')
        zf.write(path, f"{STORAGE}/{doc['_id']}{extension_for(doc['contentType'])}")
        count += 1
    return count


# -- reading a snapshot --------------------------------------------------------------------------
@dataclass
class _Table:
    name: str
    number: int
    docs: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (line number, document)
    # Only on the `_storage_keys` table of a snapshot with stored files: each file's bytes, by the
    # UUID its key row names (the blob key they are written under before the rows commit).
    blobs: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _File:
    line: int
    doc: dict[str, Any]  # the `_storage` document: _id, _creationTime, sha256, size, contentType
    data: bytes


def read_snapshot(path: str | Path, *, shown_as: str | None = None) -> list[_Table]:
    """Parse and check the ZIP's tables and every line; raise EngineError("InvalidSnapshot").
    `shown_as` names the file in errors instead of its path (an upload's temporary file)."""
    return _read(path, shown_as=shown_as)[0]


def read_snapshot_with_files(path: str | Path, *, shown_as: str | None = None) -> list[_Table]:
    """`read_snapshot`, plus, when the ZIP holds stored files (checked against their size and
    sha256), the `_storage` table and the private `_storage_keys` table with the files' bytes."""
    tables, files = _read(path, shown_as=shown_as)
    return tables + _storage_tables(files)


def _storage_tables(files: list[_File]) -> list[_Table]:
    """The `_storage` documents of `files` and a `_storage_keys` row for each, under a new UUID (the
    key of its blob), which carries the bytes."""
    if not files:
        return []
    keys = _Table(STORAGE_KEYS, SYSTEM_TABLES[STORAGE_KEYS].number)
    for f in files:
        file_uuid = str(uuid.uuid4())
        keys.docs.append((f.line, {"_id": new_id(SYSTEM_TABLES[STORAGE_KEYS].number),
                                   "_creationTime": f.doc["_creationTime"], "storageId": f.doc["_id"],
                                   "uuid": file_uuid}))
        keys.blobs[file_uuid] = f.data
    return [_Table(STORAGE, SYSTEM_TABLES[STORAGE].number, [(f.line, f.doc) for f in files]), keys]


def _read(path: str | Path, *, shown_as: str | None = None) -> tuple[list[_Table], list[_File]]:
    try:
        zf = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as e:
        raise _refuse(f"{shown_as or path} is not a readable ZIP file: {e}") from None
    with zf:
        members = set(zf.namelist())
        if TABLES_FILE not in members:
            raise _refuse(f"The snapshot has no {TABLES_FILE} (the list of tables).")
        tables = _read_listing(zf.read(TABLES_FILE))
        listed = {t.name for t in tables}
        for member in sorted(members):
            top, _, rest = member.partition("/")
            if member.startswith("_components/"):
                raise _refuse("The snapshot has component tables (_components/); this engine has no components.")
            if top == STORAGE:
                continue  # stored files: read below
            if rest == "documents.jsonl" and top not in listed and top != "_tables":
                raise _refuse(f'The snapshot has documents for table "{top}", which {TABLES_FILE} does not list.')
        seen: set[str] = set()
        for table in tables:
            member = f"{table.name}/documents.jsonl"
            if member in members:
                _read_documents(table, zf.read(member), seen)
        files = _read_files(zf, members) if f"{STORAGE}/documents.jsonl" in members else []
    return tables, files


def _read_files(zf: zipfile.ZipFile, members: set[str]) -> list[_File]:
    """`_storage/documents.jsonl` and the bytes beside it (`_storage/<id>[.ext]`), checked."""
    by_id: dict[str, str] = {}
    for member in members:
        top, _, rest = member.partition("/")
        if top == STORAGE and rest and rest != "documents.jsonl":
            by_id.setdefault(rest.split(".", 1)[0], member)
    number = SYSTEM_TABLES[STORAGE].number
    files, seen = [], set()
    for lineno, line in _lines(zf.read(f"{STORAGE}/documents.jsonl")):
        where = f"{STORAGE}/documents.jsonl line {lineno}"
        try:
            entry = json.loads(line)
        except ValueError as e:
            raise _refuse(f"{where} is not valid JSON: {e}") from None
        doc_id = entry.get("_id") if isinstance(entry, dict) else None
        if not isinstance(doc_id, str) or decode_id(doc_id) is None:
            raise _refuse(f"{where}: _id must be an id of a stored file, got {doc_id!r}.")
        if decode_id(doc_id) != number:
            raise _refuse(f'{where}: the id "{doc_id}" belongs to table number {decode_id(doc_id)}; this engine\'s '
                          f"_storage is number {number} (a snapshot of another kind of deployment).")
        if doc_id in seen:
            raise _refuse(f'{where}: the id "{doc_id}" appears twice.')
        seen.add(doc_id)
        created, size, sha256 = entry.get("_creationTime"), entry.get("size"), entry.get("sha256")
        content_type = entry.get("contentType")
        if not isinstance(created, (int, float)) or isinstance(created, bool) or not math.isfinite(created) \
                or not isinstance(size, int) or isinstance(size, bool) or not isinstance(sha256, str) \
                or not (content_type is None or isinstance(content_type, str)):
            raise _refuse(f'{where}: expected {{"_id", "_creationTime", "sha256", "size", "contentType"}}, got {line!r}.')
        member = by_id.get(doc_id)
        if member is None:
            raise _refuse(f'{where}: the bytes of stored file "{doc_id}" are not in the snapshot '
                          f"({STORAGE}/{doc_id}...).")
        data = zf.read(member)
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        if len(data) != size or digest != sha256:
            raise _refuse(f'{where}: the bytes of stored file "{doc_id}" ({member}) do not match its size and '
                          "sha256.")
        files.append(_File(lineno, {"_id": doc_id, "_creationTime": float(created), "sha256": sha256,
                                    "size": float(size), "contentType": content_type}, data))
    return files


def _read_listing(data: bytes) -> list[_Table]:
    tables: list[_Table] = []
    names: set[str] = set()
    numbers: set[int] = set()
    for lineno, line in _lines(data):
        where = f"{TABLES_FILE} line {lineno}"
        try:
            entry = json.loads(line)
        except ValueError as e:
            raise _refuse(f"{where} is not valid JSON: {e}") from None
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) \
                or type(entry.get("id")) is not int:
            raise _refuse(f'{where} must be {{"name": <table>, "id": <table number>}}, got {line!r}.')
        name, number = entry["name"], entry["id"]
        system = SYSTEM_TABLES.get(name)
        if name.startswith("_"):
            if system is None:
                raise _refuse(f'{where}: unknown system table "{name}".')
            if number != system.number:
                raise _refuse(f'{where}: system table "{name}" has number {system.number}, not {number}.')
        elif not _TABLE_NAME.match(name):
            raise _refuse(f'{where}: "{name}" is not a valid table name.')
        elif number < FIRST_USER_TABLE_NUMBER:
            raise _refuse(f'{where}: table "{name}" has number {number}; user tables start at '
                          f"{FIRST_USER_TABLE_NUMBER}.")
        if name in names:
            raise _refuse(f'{where}: table "{name}" is listed twice.')
        if number in numbers:
            raise _refuse(f"{where}: table number {number} is listed twice.")
        names.add(name)
        numbers.add(number)
        tables.append(_Table(name, number))
    return tables


def _read_documents(table: _Table, data: bytes, seen: set[str]) -> None:
    for lineno, line in _lines(data):
        where = f'table "{table.name}", line {lineno}'
        try:
            doc = decode_json(line)
        except ValueError as e:
            raise _refuse(f"{where}: not a valid document: {e}") from None
        if not isinstance(doc, dict):
            raise _refuse(f"{where}: a document must be a JSON object.")
        doc_id = doc.get("_id")
        if not isinstance(doc_id, str) or decode_id(doc_id) is None:
            raise _refuse(f"{where}: _id must be a document id, got {doc_id!r}.")
        where = f'{where}, document "{doc_id}"'
        if decode_id(doc_id) != table.number:
            raise _refuse(f"{where}: the id belongs to table number {decode_id(doc_id)}, "
                          f"not {table.number} (this table's number in {TABLES_FILE}).")
        if doc_id in seen:
            raise _refuse(f"{where}: the id appears twice in the snapshot.")
        seen.add(doc_id)
        created = doc.get("_creationTime")
        if not isinstance(created, float) or not math.isfinite(created):
            raise _refuse(f"{where}: _creationTime must be a finite number, got {created!r}.")
        for key in doc:
            try:
                check_field_name(key, document=True)
            except ValueError as e:
                raise _refuse(f"{where}: {e}") from None
        table.docs.append((lineno, doc))


def _lines(data: bytes) -> Iterator[tuple[int, str]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _refuse(f"A JSONL file in the snapshot is not UTF-8: {e}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            yield lineno, line


# -- planning the catalog ------------------------------------------------------------------------
class _PlanningStore(Persistence):
    """Shows `Catalog.load` a chosen persisted catalog and writes nothing, so the catalog machinery
    (schema tables, system tables, index definitions) plans the import's catalog in memory; the
    import then writes that catalog with the data, in one transaction."""

    def __init__(self, max_ts: int, tables: dict[str, int],
                 indexes: dict[tuple[str, str], tuple[int, list[str]]]) -> None:
        self._catalog = (max_ts, tables, indexes)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def snapshot(self, *, private: bool = False) -> Snapshot:
        raise NotImplementedError

    async def write(self, batch: Any) -> None:
        raise NotImplementedError

    async def load_catalog(self) -> tuple[int, dict[str, int], dict[tuple[str, str], tuple[int, list[str]]]]:
        return self._catalog

    async def add_table(self, name: str, number: int) -> None: ...

    async def add_index(self, index_id: int, table: str, name: str, fields: list[str]) -> None: ...

    async def drop_index(self, index_id: int) -> None: ...

    async def table_documents(self, table_number: int) -> AsyncIterator[tuple[str, bytes]]:
        return  # every table is empty until the import fills it
        yield

    async def put_entries(self, entries: list[tuple[int, bytes, str]]) -> None: ...

    async def table_is_empty(self, table_number: int) -> bool:
        return True

    async def index_is_empty(self, index_id: int) -> bool:
        return True


async def _plan_catalog(store: SqlitePersistence, schema: Any, tables: list[_Table]) -> tuple[int, Catalog]:
    max_ts, existing, indexes = await store.load_catalog()
    wanted = {t.name: t.number for t in tables}
    taken = set(wanted.values())
    # Keep the target's other tables under their numbers unless a snapshot table needs the number
    # (the target is empty, so renumbering one loses nothing; schema tables get a fresh number).
    presented = {n: num for n, num in existing.items() if n not in wanted and num not in taken}
    presented.update(wanted)
    kept = {key: value for key, value in indexes.items() if key[0] in presented}
    next_id = max([i for i, _ in indexes.values()], default=0) + 1
    for name in presented:
        for ix_name, fields in ((BY_ID, ["_id"]), (BY_CREATION_TIME, ["_creationTime", "_id"])):
            if (name, ix_name) not in kept:
                kept[(name, ix_name)] = (next_id, fields)
                next_id += 1
    catalog = Catalog(_PlanningStore(max_ts, presented, kept), schema)
    await catalog.load()
    return max_ts, catalog


# -- import --------------------------------------------------------------------------------------
def _check_against_schema(tables: list[_Table], catalog: Catalog) -> None:
    schema = catalog.schema
    if schema is None:
        return
    for table in tables:
        if table.name.startswith("_") or not table.docs:
            continue
        definition = schema.tables.get(table.name)
        if definition is None:
            lineno, doc = table.docs[0]
            raise EngineError("SnapshotDoesNotMatchSchema",
                              f'Table "{table.name}" is not in the schema (schema.py), but the snapshot has '
                              f'{len(table.docs)} document(s) in it (line {lineno}: document "{doc["_id"]}").')
        for lineno, doc in table.docs:
            try:
                definition.validate(doc, catalog, table=table.name)
            except EngineError as e:
                reason = e.message.split("does not match the schema: ", 1)[-1]
                raise EngineError("SnapshotDoesNotMatchSchema",
                                  f'Document "{doc["_id"]}" in table "{table.name}" (line {lineno}) does not '
                                  f"match the schema: {reason}") from None


async def _documents_held(store: SqlitePersistence, tables: dict[str, int]) -> dict[str, int]:
    held = {}
    for name, number in tables.items():
        if name in _DERIVED_TABLES:
            continue
        count = 0
        async for _ in store.table_documents(number):
            count += 1
        if count:
            held[name] = count
    return held


async def import_snapshot(app_dir: str | Path, db_path: str | Path, zip_path: str | Path, *,
                          replace: bool = False) -> dict[str, int]:
    """Restore a snapshot ZIP into the database (see the module docstring); {table: documents}."""
    tables = read_snapshot_with_files(zip_path)
    app = load_app(app_dir)
    store = SqlitePersistence(db_path)
    await store.open()
    try:
        _, existing, _ = await store.load_catalog()
        if not replace:
            held = await _documents_held(store, existing)
            if held:
                summary = ", ".join(f"{name}: {count}" for name, count in sorted(held.items()))
                raise EngineError("DeploymentNotEmpty",
                                  f"The deployment already holds documents ({summary}); "
                                  "import into an empty one, or pass --replace to replace everything.")
        max_ts, catalog = await _plan_catalog(store, app.schema, tables)
        _check_against_schema(tables, catalog)
        docs: list[tuple[str, int, bytes]] = []
        entries: list[tuple[int, bytes, str]] = []
        from .progress import progress

        with progress(f"Importing {Path(zip_path).name}", total=sum(len(t.docs) for t in tables),
                      unit=" docs") as bar:
            for table in tables:
                info = catalog.by_name[table.name]
                assert info.number == table.number
                stored = info.stored_indexes()
                for _, doc in table.docs:
                    doc_id = doc["_id"]
                    docs.append((doc_id, info.number, encode_json(doc)))
                    entries.extend((ix.id, ix.key(doc), doc_id) for ix in stored)
                    bar.update(1)
        index_rows = [(ix.id, info.name, ix.name, list(ix.fields))
                      for info in catalog.by_name.values() for ix in info.indexes.values()]
        ts = max(time.time_ns(), max_ts + 1)
        written = await _write_blobs(db_path, tables)
        try:
            await store.restore(ts, {info.name: info.number for info in catalog.by_name.values()},
                                index_rows, docs, entries)
        except BaseException:
            for blobs, key in written:
                await blobs.delete(key)
            raise
    finally:
        await store.close()
    return {t.name: len(t.docs) for t in tables if t.name != STORAGE_KEYS}


async def _write_blobs(db_path: str | Path, tables: list[_Table]) -> list[tuple[Any, str]]:
    """Write the stored files' bytes (durably) into the database's blob folder (offline import)."""
    if not any(t.blobs for t in tables):
        return []
    folder = blob_dir_for(db_path)
    if folder is None:
        raise EngineError("InvalidSnapshot", "Stored files cannot be imported into an in-memory database.")
    blobs = LocalBlobStore(folder)
    await blobs.start()
    return [(blobs, key) for key in await put_file_bytes(blobs, tables)]


async def put_file_bytes(blobs: Any, tables: list[_Table]) -> list[str]:
    """Write the stored files' bytes of `tables` into `blobs` under the UUIDs their `_storage_keys`
    rows name: all of them or none (a failure removes what it wrote). The keys written."""
    written: list[str] = []
    try:
        for t in tables:
            for key, data in t.blobs.items():
                await blobs.put(key, data)
                written.append(key)
    except BaseException:
        for key in written:
            await blobs.delete(key)
        raise
    return written
