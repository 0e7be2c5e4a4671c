"""File storage: Convex's `ctx.storage`, the `_storage` system table, upload URLs and served files.

    # a mutation hands the client an upload URL ...
    @mutation
    async def generateUploadUrl(ctx, args):
        return await ctx.storage.generate_upload_url()

    # ... the client POSTs the bytes to it and gets {"storageId": ...}; a query turns that into a URL
    @query(args={"id": v.id("_storage")})
    async def fileUrl(ctx, args):
        return await ctx.storage.get_url(args["id"])

What a client can tell, as Convex (crates/file_storage, crates/local_backend/src/storage.rs,
crates/model/src/file_storage):
- `POST /api/storage/upload?token=<t>` with the raw bytes answers `{"storageId": "<Id<'_storage'>>"}`;
  the token is valid for an hour; `Content-Type` is recorded; an optional `Digest: sha-256=<base64>`
  header is checked ("Sha256Mismatch").
- `get_url(id)` -> `<CONVEX_CLOUD_URL>/api/storage/<uuid>`, or None. `GET` of it serves the bytes
  with their `Content-Type`, `Digest: sha-256=...`, `Cache-Control: private, max-age=2592000` and
  single `Range` requests; a deleted file is 404 "FileNotFound".
- `_storage` documents are `{_id, _creationTime, sha256 (base64), size, contentType (null if none)}`,
  read through `ctx.db.system`; `v.id("_storage")` validates their ids.
- `ctx.storage` in queries: `get_url`, `get_metadata`; mutations add `generate_upload_url` and
  `delete`; actions and HTTP actions add `store(data, content_type=None)` and `get(id)` (bytes).
  Every method is a coroutine.

How it is kept (our design): the bytes live in a `BlobStore` (engine.blobs; a folder beside the
database by default), keyed by a random UUID that is also the file's URL. The private system table
`_storage_keys` maps each `_storage` id to its UUID (invisible to functions, like Convex's
`_file_storage`). A file is stored by writing its blob durably first and committing its two rows
after, so a stored id always has its bytes; deleting the rows (in the caller's own transaction)
frees the blob once that commit is durable. A crash between the two steps leaves a blob without
rows, which the next start removes, as it removes partial writes.

Limits: a file is at most $CONVEX_STORAGE_MAX_FILE_BYTES bytes (default 64 MiB; Convex has no fixed
limit, but uploads here arrive whole in memory), "FileTooLarge" (413) beyond.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import mimetypes
import os
import secrets
import urllib.parse
import uuid as uuid_module
from typing import TYPE_CHECKING, Any

from . import env
from .blobs import BlobStore
from .catalog import define_system_table
from .errors import EngineError
from .index_keys import decode_key, encode_value
from .transaction import Transaction

if TYPE_CHECKING:
    from .deployment import Deployment
    from .http_api import HttpRequest, HttpResponse

__all__ = ["FileStorage", "STORAGE", "STORAGE_KEYS", "MAX_FILE_BYTES", "UPLOAD_PATH", "FILES_PREFIX",
           "register_routes", "blob_dir_for"]

log = logging.getLogger("engine.file_storage")

STORAGE = "_storage"
STORAGE_KEYS = "_storage_keys"
define_system_table(STORAGE, 3, {})
define_system_table(STORAGE_KEYS, 4, {"by_storage_id": ["storageId"], "by_uuid": ["uuid"]}, private=True)

MAX_FILE_BYTES_ENV = "CONVEX_STORAGE_MAX_FILE_BYTES"
MAX_FILE_BYTES = int(os.environ.get(MAX_FILE_BYTES_ENV) or 64 * 1024 * 1024)
UPLOAD_PATH = "/api/storage/upload"
FILES_PREFIX = "/api/storage/"
TOKEN_VALIDITY_MS = 60 * 60 * 1000  # STORE_FILE_AUTHORIZATION_VALIDITY
CACHE_CONTROL = "private, max-age=2592000"  # MAX_CACHE_AGE: 30 days (stored files never change)
_DEFAULT_CLOUD_URL = "http://127.0.0.1:3210"
_MAX_STORE_ATTEMPTS = 32


def blob_dir_for(db_path: Any) -> str | None:
    """The blob folder beside a database file ("data/convex.sqlite3" -> "data/convex.sqlite3.storage")."""
    if db_path is None or str(db_path) == ":memory:":
        return None
    return str(db_path) + ".storage"


def _invalid_storage_id(op: str, value: Any) -> EngineError:
    # Convex's text, line break and indentation of its source included (FileStorageId::from_str).
    return EngineError("InvalidArgument", f"Invalid argument `storageId` for `storage.{op}`: Invalid storage ID: "
                                          f"\"{value}\". Storage ID should be an\n                    Id of "
                                          "'_storage' table, or a UUID string.")


def _as_uuid(value: str) -> str | None:
    try:
        return str(uuid_module.UUID(value))
    except (ValueError, AttributeError, TypeError):
        return None


class FileStorage:
    """The deployment's file storage: rows in the database, bytes in a `BlobStore`."""

    def __init__(self, dep: Deployment, blobs: BlobStore, *, max_file_bytes: int = MAX_FILE_BYTES) -> None:
        self.dep = dep
        self.blobs = blobs
        self.max_file_bytes = max_file_bytes
        admin_key = getattr(dep, "admin_key", None)
        # Upload tokens are signed with a key derived from the admin key (so they survive restarts
        # and every node agrees), else with a key of this process.
        self._secret = (hmac.new(admin_key.encode(), b"engine file storage upload token", hashlib.sha256).digest()
                        if admin_key else secrets.token_bytes(32))
        self._seen_ts = 0
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.blobs.start()
        await self._remove_orphans()
        self._seen_ts = self.dep.committer.durable_ts
        self.dep.committer.listeners.append(self._on_commit)

    async def stop(self) -> None:
        if self._on_commit in self.dep.committer.listeners:
            self.dep.committer.listeners.remove(self._on_commit)
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self.blobs.close()

    async def settled(self) -> None:
        """Wait until the blobs of files deleted so far are freed (tests and tools)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _remove_orphans(self) -> None:
        """Blobs with no row: written by an upload a crash cut off before its commit (or left by a
        replaced import). They can never be reached; free them."""
        referenced = {row["uuid"] for row in await self._all_keys()}
        removed = 0
        for key in await self.blobs.orphan_candidates():
            if key not in referenced:
                await self.blobs.delete(key)
                removed += 1
        if removed:
            log.warning("removed %d stored file(s) that no _storage row refers to (an interrupted upload)", removed)

    async def _all_keys(self) -> list[dict[str, Any]]:
        table = self.dep.catalog.by_name[STORAGE_KEYS]
        txn = Transaction(self.dep.catalog, await self.dep.persistence.snapshot(), writable=False)
        try:
            scan = txn.scan(table, table.indexes["by_uuid"], b"", b"\xff", False)
            rows = [doc async for _, doc in scan]
            scan.finish()
            return rows
        finally:
            txn.close()

    def _on_commit(self, durable_ts: int) -> None:
        """After a commit that deleted `_storage_keys` rows, free their blobs."""
        index_id = self.dep.catalog.by_name[STORAGE_KEYS].indexes["by_uuid"].id
        seen, self._seen_ts = self._seen_ts, durable_ts
        if self.dep.committer.write_log.last_written.get(index_id, 0) <= seen:
            return  # no commit since `seen` touched a storage key
        touched = {decode_key(key)[0] for _, keys in self.dep.committer.write_log.since(seen, durable_ts)
                   for ix, key in keys if ix == index_id}
        if not touched:
            return
        try:
            task = asyncio.get_running_loop().create_task(self._free(touched))
        except RuntimeError:
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _free(self, uuids: set[Any]) -> None:
        txn = Transaction(self.dep.catalog, await self.dep.persistence.snapshot(), writable=False)
        try:
            gone = [u for u in uuids if isinstance(u, str) and await self._row_by_uuid(txn, u) is None]
        finally:
            txn.close()
        for u in gone:
            try:
                await self.blobs.delete(u)
            except (OSError, ValueError):
                log.exception("freeing the blob of deleted file %s failed", u)

    # -- URLs and tokens ------------------------------------------------------------------------------
    @staticmethod
    def cloud_url() -> str:
        return env.deployment_urls()[0] or _DEFAULT_CLOUD_URL

    def file_url(self, file_uuid: str) -> str:
        return f"{self.cloud_url()}{FILES_PREFIX}{file_uuid}"

    def upload_url(self) -> str:
        issued = int(self.dep.clock.now_ms())
        payload = base64.urlsafe_b64encode(json.dumps({"v": 1, "iat": issued, "n": secrets.token_hex(8)},
                                                      separators=(",", ":")).encode()).decode().rstrip("=")
        signature = base64.urlsafe_b64encode(self._sign(payload)).decode().rstrip("=")
        return f"{self.cloud_url()}{UPLOAD_PATH}?token={payload}.{signature}"

    def _sign(self, payload: str) -> bytes:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()[:16]

    def check_token(self, token: Any) -> None:
        invalid = EngineError("StorageTokenInvalid", "Couldn't decode the StoreFileAuthorization token", status=401)
        if not isinstance(token, str) or token.count(".") != 1:
            raise invalid
        payload, signature = token.split(".")
        try:
            given = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except (ValueError, TypeError):
            raise invalid from None
        if not hmac.compare_digest(given, self._sign(payload)) or not isinstance(claims, dict) \
                or not isinstance(claims.get("iat"), int):
            raise invalid
        if claims["iat"] + TOKEN_VALIDITY_MS <= self.dep.clock.now_ms():
            raise EngineError("StorageTokenExpired", "Store File Authorization expired", status=401)

    # -- rows (inside a transaction) ------------------------------------------------------------------
    def _tables(self):
        return self.dep.catalog.by_name[STORAGE], self.dep.catalog.by_name[STORAGE_KEYS]

    async def _lookup(self, txn: Transaction, index: str, value: str) -> dict[str, Any] | None:
        _, keys = self._tables()
        prefix = encode_value(value)
        scan = txn.scan(keys, keys.indexes[index], prefix, prefix + b"\xff", False)
        page = await scan.next_page(1)
        found = page[0][1] if page else None
        if page:
            scan.last_key = page[0][0]
        scan.finish(found is None)
        return found

    async def _row_by_uuid(self, txn: Transaction, file_uuid: str) -> dict[str, Any] | None:
        return await self._lookup(txn, "by_uuid", file_uuid)

    async def resolve(self, txn: Transaction, storage_id: Any, op: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(the `_storage` document, its key row) for an `Id<"_storage">` or a file's UUID (Convex's
        legacy storage id), None if there is no such file."""
        if not isinstance(storage_id, str):
            raise _invalid_storage_id(op, storage_id)
        table_name = self.dep.catalog.table_of_id(storage_id)
        if table_name is not None:
            if table_name != STORAGE:
                return None
            key_row = await self._lookup(txn, "by_storage_id", storage_id)
        else:
            file_uuid = _as_uuid(storage_id)
            if file_uuid is None:
                raise _invalid_storage_id(op, storage_id)
            key_row = await self._row_by_uuid(txn, file_uuid)
        if key_row is None:
            return None
        document = await txn.get(key_row["storageId"])
        return (document, key_row) if document is not None else None

    async def _insert(self, txn: Transaction, sha256: bytes, size: int, content_type: str | None, file_uuid: str) -> str:
        storage, keys = self._tables()
        storage_id = await txn.insert(storage, {"sha256": base64.b64encode(sha256).decode(), "size": float(size),
                                          "contentType": content_type})
        await txn.insert(keys, {"storageId": storage_id, "uuid": file_uuid})
        return storage_id

    async def delete_in(self, txn: Transaction, storage_id: Any, op: str = "delete") -> None:
        found = await self.resolve(txn, storage_id, op)
        if found is None:
            raise EngineError("StorageIdNotFound", f"storage id {storage_id} not found")
        document, key_row = found
        await txn.delete(document["_id"])
        await txn.delete(key_row["_id"])

    async def metadata_in(self, txn: Transaction, storage_id: Any) -> dict[str, Any] | None:
        found = await self.resolve(txn, storage_id, "getMetadata")
        if found is None:
            return None
        document, key_row = found
        return {"storageId": key_row["uuid"], "sha256": base64.b64decode(document["sha256"]).hex(),
                "size": document["size"], "contentType": document["contentType"]}

    async def url_in(self, txn: Transaction, storage_id: Any) -> str | None:
        found = await self.resolve(txn, storage_id, "getUrl")
        return self.file_url(found[1]["uuid"]) if found is not None else None

    # -- storing and reading bytes --------------------------------------------------------------------
    def _check_size(self, size: int) -> None:
        if size > self.max_file_bytes:
            raise EngineError("FileTooLarge", f"The file is {size} bytes; files may be at most {self.max_file_bytes} "
                                              f"bytes (${MAX_FILE_BYTES_ENV}).", status=413)

    async def store(self, data: bytes, content_type: str | None = None, *, sha256: str | None = None) -> str:
        """Store a file: its blob durably, then its rows; the new `Id<"_storage">`."""
        data = bytes(data)
        self._check_size(len(data))
        digest = hashlib.sha256(data).digest()
        if sha256 is not None and sha256 != base64.b64encode(digest).decode():
            raise EngineError("Sha256Mismatch", f"Sha256 mismatch. Expected: {sha256} Actual: "
                                                f"{base64.b64encode(digest).decode()}")
        file_uuid = str(uuid_module.uuid4())
        await self.blobs.put(file_uuid, data)
        try:
            return await self._commit(lambda txn: self._insert(txn, digest, len(data), content_type, file_uuid))
        except BaseException:
            await self.blobs.delete(file_uuid)  # nothing refers to it
            raise

    async def _commit(self, body: Any) -> Any:
        from .scheduler import system_transaction  # (the scheduler imports the runner, which imports us)

        return await system_transaction(self.dep, body)

    async def read(self, storage_id: Any, op: str = "get") -> bytes | None:
        """The bytes of a stored file (None if there is no such file)."""
        txn = Transaction(self.dep.catalog, await self.dep.persistence.snapshot(), writable=False)
        try:
            found = await self.resolve(txn, storage_id, op)
        finally:
            txn.close()
        if found is None:
            return None
        return await self.blobs.get(found[1]["uuid"])

    async def snapshot_read(self, fn: Any) -> Any:
        txn = Transaction(self.dep.catalog, await self.dep.persistence.snapshot(), writable=False)
        try:
            return await fn(txn)
        finally:
            txn.close()

    # -- ctx.storage ---------------------------------------------------------------------------------
    def for_query(self, txn: Transaction) -> StorageReader:
        return StorageReader(self, txn)

    def for_mutation(self, txn: Transaction) -> StorageWriter:
        return StorageWriter(self, txn)

    def for_action(self) -> StorageActionWriter:
        return StorageActionWriter(self)

    # -- HTTP -----------------------------------------------------------------------------------------
    async def handle_upload(self, req: HttpRequest) -> HttpResponse:
        from .http_api import error_response, json_response

        try:
            self.check_token(req.query.get("token"))
            digest = _digest_header(req.headers.get("digest"))
            content_type = req.headers.get("content-type") or None
            storage_id = await self.store(req.body, content_type, sha256=digest)
        except EngineError as e:
            return error_response(e.status, e.code, e.message)
        return json_response(200, {"storageId": storage_id})

    async def handle_get(self, req: HttpRequest) -> HttpResponse:
        from .http_api import HttpResponse, error_response

        raw = urllib.parse.unquote(req.path[len(FILES_PREFIX):])
        file_uuid = _as_uuid(raw)
        if file_uuid is None:
            return error_response(400, "InvalidStoragePath", (
                f"Invalid storage path: \"{raw}\". Please use `storage.getUrl(storageId: Id<\"_storage\">)` to "
                "generate a valid URL to retrieve files. See https://docs.convex.dev/file-storage/serve-files for "
                "more details"))

        async def lookup(txn: Transaction) -> dict[str, Any] | None:
            row = await self._row_by_uuid(txn, file_uuid)
            return await txn.get(row["storageId"]) if row is not None else None

        document = await self.snapshot_read(lookup)
        data = await self.blobs.get(file_uuid) if document is not None else None
        if document is None or data is None:
            return error_response(404, "FileNotFound", f"File {file_uuid} not found")
        headers = [("cache-control", CACHE_CONTROL), ("accept-ranges", "bytes")]
        if document["contentType"]:
            headers.append(("content-type", document["contentType"]))
        wanted = req.headers.get("range")
        if wanted:
            span = _byte_range(wanted, len(data))
            if span is None:
                return HttpResponse(416, b"", [("content-range", f"bytes */{len(data)}")])
            start, end = span
            headers.append(("content-range", f"bytes {start}-{end}/{len(data)}"))
            return HttpResponse(206, data[start:end + 1], headers)
        headers.append(("digest", f"sha-256={document['sha256']}"))
        return HttpResponse(200, data, headers)


def _digest_header(value: str | None) -> str | None:
    """`Digest: sha-256=<base64>` (RFC 3230), as Convex's upload endpoint reads it."""
    if not value:
        return None
    for part in value.split(","):
        name, sep, digest = part.strip().partition("=")
        if sep and name.strip().lower() == "sha-256":
            return digest.strip()
    raise EngineError("BadHeader", f"Bad header for digest: expected sha-256=<base64>, got {value!r}")


def _byte_range(value: str, size: int) -> tuple[int, int] | None:
    """One `bytes=a-b` / `bytes=a-` / `bytes=-n` range -> (first, last) byte; None if unsatisfiable
    or several ranges (Convex serves a single range)."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec or size == 0:
        return None
    first, sep, last = spec.strip().partition("-")
    try:
        if not sep:
            return None
        if first == "":
            n = int(last)
            return (max(size - n, 0), size - 1) if n > 0 else None
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start < 0 or start >= size or end < start:
        return None
    return start, min(end, size - 1)


class StorageReader:
    """`ctx.storage` in a query: reads are part of the query's read set (a deleted file's URL turns
    None live)."""

    def __init__(self, storage: FileStorage, txn: Transaction) -> None:
        self._storage = storage
        self._txn = txn

    async def get_url(self, storage_id: Any) -> str | None:
        """`<CONVEX_CLOUD_URL>/api/storage/<uuid>` serving the file, or None if there is none."""
        return await self._storage.url_in(self._txn, storage_id)

    async def get_metadata(self, storage_id: Any) -> dict[str, Any] | None:
        """Deprecated in Convex (read `ctx.db.system.get(id)` instead): `{storageId (the file's UUID),
        sha256 (hex), size, contentType}` or None."""
        return await self._storage.metadata_in(self._txn, storage_id)


class StorageWriter(StorageReader):
    """`ctx.storage` in a mutation."""

    async def generate_upload_url(self) -> str:
        """A URL on the deployment to POST a file's bytes to, valid for an hour."""
        return self._storage.upload_url()

    async def delete(self, storage_id: Any) -> None:
        """Delete the file with this mutation: its rows go in the mutation's commit, its bytes
        right after."""
        await self._storage.delete_in(self._txn, storage_id)


class StorageActionWriter:
    """`ctx.storage` in an action or HTTP action: each call runs on its own."""

    def __init__(self, storage: FileStorage) -> None:
        self._storage = storage

    async def get_url(self, storage_id: Any) -> str | None:
        return await self._storage.snapshot_read(lambda txn: self._storage.url_in(txn, storage_id))

    async def get_metadata(self, storage_id: Any) -> dict[str, Any] | None:
        return await self._storage.snapshot_read(lambda txn: self._storage.metadata_in(txn, storage_id))

    async def generate_upload_url(self) -> str:
        return self._storage.upload_url()

    async def delete(self, storage_id: Any) -> None:
        await self._storage._commit(lambda txn: self._storage.delete_in(txn, storage_id))

    async def store(self, data: bytes | bytearray | memoryview | str, content_type: str | None = None, *,
                    sha256: str | None = None) -> str:
        """Store `data` as a new file (a str is stored as UTF-8); its `Id<"_storage">`. `sha256`
        (base64), when given, must match."""
        if isinstance(data, str):
            data = data.encode("utf-8")
            content_type = content_type or "text/plain;charset=UTF-8"
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise EngineError("InvalidArgument", f"ctx.storage.store needs bytes, got {type(data).__name__}.")
        return await self._storage.store(bytes(data), content_type, sha256=sha256)

    async def get(self, storage_id: Any) -> bytes | None:
        """The file's bytes, or None if there is no such file."""
        return await self._storage.read(storage_id)


# -- the API routes ------------------------------------------------------------------------------------
def extension_for(content_type: str | None) -> str:
    """The file-name extension an export gives a stored file ("" when none is known)."""
    if not content_type:
        return ""
    return mimetypes.guess_extension(content_type.split(";")[0].strip().lower(), strict=False) or ""


async def _upload(dep: Any, req: HttpRequest) -> HttpResponse:
    storage = getattr(dep, "file_storage", None)
    if storage is None:
        from .http_api import error_response

        return error_response(404, "NotFound", "This deployment has no file storage.")
    return await storage.handle_upload(req)


async def _serve(dep: Any, req: HttpRequest) -> HttpResponse:
    storage = getattr(dep, "file_storage", None)
    if storage is None:
        from .http_api import error_response

        return error_response(404, "NotFound", "This deployment has no file storage.")
    return await storage.handle_get(req)


def register_routes() -> None:
    """Add the upload and file endpoints to the API port's routes (engine.http_api)."""
    from . import http_api

    http_api.ROUTES[UPLOAD_PATH] = {"POST": _upload}
    http_api.PREFIX_ROUTES[FILES_PREFIX] = {"GET": _serve}
    http_api.BODY_LIMITS[UPLOAD_PATH] = MAX_FILE_BYTES
