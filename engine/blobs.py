"""Blob stores: where file storage keeps the bytes of stored files, behind one small interface.

    store = LocalBlobStore("data/convex.sqlite3.storage")
    await store.start()                      # removes partial writes a crash left behind
    await store.put(key, data)               # returns once the bytes are durable
    data = await store.get(key)              # None if there is no such blob
    await store.delete(key)

The interface knows nothing about the database: file storage (engine.file_storage) decides the
keys, records each file's row in the same database as everything else, and deletes blobs whose
row is gone. A deployment can back it with an S3-compatible service by implementing the same methods;
`LocalBlobStore` (the default on SQLite) keeps one file per blob in a folder beside the database;
on PostgreSQL the blobs live in the database itself (engine.storage.postgres.PostgresBlobStore),
so every node serves every file.

`LocalBlobStore` invariants:
- `put` writes to a temporary file in the store's `.tmp/` folder, fsyncs it, renames it into place
  and fsyncs the folder, so a blob either exists whole and durable or not at all; a crash leaves at
  most a temporary file, which `start` removes.
- `delete` unlinks the file: its bytes are freed at once.
- Keys are checked (letters, digits, "-", "_", "."; no path separators), so no key can name a file
  outside the folder.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BlobStore", "LocalBlobStore", "check_blob_key"]

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class BlobStore(ABC):
    """Durable bytes by key. Every method may be called concurrently from the event loop."""

    async def start(self) -> None:
        """Prepare the store (and clean up after a crash)."""

    async def close(self) -> None:
        """Release resources."""

    @abstractmethod
    async def put(self, key: str, data: bytes) -> None:
        """Store `data` under a new `key`; returns once it is durable. All or nothing."""

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The blob's bytes, or None if there is none under `key`."""

    @abstractmethod
    async def delete(self, key: str) -> bool:
        """Remove the blob (its bytes are freed); False if there was none."""

    @abstractmethod
    async def orphan_candidates(self) -> list[str]:
        """Keys that may have no row (reconciling with the database after a crash): every key of a
        store one process uses; of a store several nodes share, only keys older than any upload
        in progress can be (another node may be between its `put` and its commit)."""


def check_blob_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"invalid blob key {key!r}")
    return key


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBlobStore(BlobStore):
    """One file per blob under `root/<first two characters of the key>/<key>`."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._tmp = self.root / ".tmp"

    def path(self, key: str) -> Path:
        key = check_blob_key(key)
        return self.root / key[:2] / key

    async def start(self) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        self._tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        for leftover in self._tmp.iterdir():  # writes a crash interrupted: never renamed, never valid
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass

    async def put(self, key: str, data: bytes) -> None:
        target = self.path(key)
        await asyncio.to_thread(self._put, target, data)

    def _put(self, target: Path, data: bytes) -> None:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix="blob-", suffix=".part", dir=self._tmp)  # mode 0600
        try:
            with os.fdopen(fd, "wb") as f:
                view = memoryview(data)
                while view:
                    written = f.write(view)
                    view = view[written:]
                f.flush()
                os.fsync(f.fileno())
            if target.exists():
                raise FileExistsError(f"a blob named {target.name} already exists")
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    async def get(self, key: str) -> bytes | None:
        try:
            return await asyncio.to_thread(self.path(key).read_bytes)
        except FileNotFoundError:
            return None

    async def delete(self, key: str) -> bool:
        return await asyncio.to_thread(self._delete, self.path(key))

    @staticmethod
    def _delete(path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    async def orphan_candidates(self) -> list[str]:
        return list(self.keys())  # one process owns the folder; this runs before it serves

    def keys(self) -> Iterator[str]:
        """Every stored key."""
        if not self.root.is_dir():
            return
        for folder in self.root.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            for file in folder.iterdir():
                if file.is_file() and _KEY.fullmatch(file.name):
                    yield file.name

    def bytes_stored(self) -> int:
        """Total size of the stored blobs (what the store holds on disk, temporary files aside)."""
        return sum(self.path(k).stat().st_size for k in self.keys())
