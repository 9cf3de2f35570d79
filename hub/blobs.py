"""Blob storage for payloads, sealed envelopes and diagnostics bundles: an interface and its filesystem store.

The hub's database holds only blob *keys*; the bytes live behind ``BlobStore``. The filesystem store
is the default (one directory, shared by every hub instance, e.g. over NFS). An S3-compatible store fits
the same five calls: ``put_file`` → PutObject (multipart above 100 MB), ``open`` → GetObject,
``open_range`` → GetObject with ``Range: bytes=a-b``, ``size`` → HeadObject ContentLength,
``delete`` → DeleteObject. Keys are relative paths of ``[A-Za-z0-9._/-]`` only.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import IO, Iterator, Protocol

_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
READ_CHUNK = 256 * 1024


class BlobStore(Protocol):
    """Where bytes live; the hub's tables refer to blobs by key."""

    def put_file(self, key: str, path: Path) -> None: ...
    def open(self, key: str) -> IO[bytes]: ...
    def open_range(self, key: str, start: int, end: int) -> Iterator[bytes]: ...
    def size(self, key: str) -> int: ...
    def delete(self, key: str) -> None: ...


class FilesystemBlobStore:
    """Blobs as files under one root directory; writes are atomic (temp file, fsync, rename)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, key: str) -> Path:
        if not _KEY_RE.match(key) or ".." in key.split("/"):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    def put_file(self, key: str, path: Path) -> None:
        """Move (or copy, across file systems) ``path`` into the store under ``key``."""
        dst = self._path(key)
        dst.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = dst.with_name(dst.name + ".part")
        try:
            os.replace(path, tmp)
        except OSError:
            shutil.copyfile(path, tmp)
            os.unlink(path)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dst)

    def open(self, key: str) -> IO[bytes]:
        return open(self._path(key), "rb")

    def open_range(self, key: str, start: int, end: int) -> Iterator[bytes]:
        """Bytes ``start``..``end`` inclusive, in chunks (the HTTP Range semantics)."""
        with open(self._path(key), "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(READ_CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                yield chunk

    def size(self, key: str) -> int:
        return self._path(key).stat().st_size

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass
