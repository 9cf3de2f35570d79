"""The spool: where sealed batches are downloaded, resumed, verified and kept until acknowledged.

A batch is downloaded to ``<dataset>/<seq>.edx.part``, resumed with HTTP Range after a broken
transfer, checked against the SHA-256 the hub listed, fsynced and renamed to ``<seq>.edx``. It only
ever holds sealed envelopes, so it is encrypted at rest by construction. A quota bounds its size; a
full disk or quota gives ``spool-full`` (transient: the agent resumes when space returns) and never
leaves a file that looks complete but is not. Refused batches are moved to ``rejected/`` for
investigation rather than deleted.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import structlog

from . import faults
from .client import HubClient, iter_body
from .errors import IntegrityError, SpoolFull, Transient
from .fsutil import fsync_dir, fsync_file

log = structlog.get_logger(__name__)


class DownloadCorrupt(Transient, IntegrityError):  # a transport fault: the .part is gone, download again
    code = "spool-digest-mismatch"
    message = "downloaded batch does not match the digest the hub listed: {detail}"
    remedy = "The download is retried from scratch; if it persists, a proxy or 网闸 may alter the content."


class Spool:
    def __init__(self, root: Path, quota_bytes: int) -> None:
        self.root = Path(root)
        self.quota = quota_bytes

    def path(self, dataset: str, seq: int) -> Path:
        return self.root / dataset / f"{seq:012d}.edx"

    def used_bytes(self) -> int:
        total = 0
        for p in self.root.rglob("*"):
            if p.is_file():
                total += p.stat().st_size
        return total

    def usage(self) -> dict[str, Any]:
        self.root.mkdir(parents=True, exist_ok=True)
        du = shutil.disk_usage(self.root)
        return {"used_bytes": self.used_bytes(), "quota_bytes": self.quota, "disk_free_bytes": du.free}

    def fetch(self, client: HubClient, batch: dict[str, Any]) -> Path:
        """Download one listed batch (resuming a partial file) and return its verified path."""
        dataset, seq = batch["dataset"], int(batch["seq"])
        final = self.path(dataset, seq)
        if final.exists():
            return final
        final.parent.mkdir(parents=True, exist_ok=True)
        part = final.with_suffix(".edx.part")
        size = int(batch.get("size") or 0)
        have = part.stat().st_size if part.exists() else 0
        if have >= size > 0:  # complete but never renamed (crash or fsync error before it): start again
            part.unlink()
            have = 0
        if size and self.used_bytes() - have + size > self.quota:
            raise SpoolFull(f"batch {dataset}#{seq} needs {size} bytes; quota {self.quota} bytes")
        h = hashlib.sha256()
        if have:
            with part.open("rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        resp = client.envelope(dataset, seq, offset=have)
        if have and resp.status_code != 206:
            # the hub ignored the Range header: start again rather than append a second copy
            h = hashlib.sha256()
            have = 0
        try:
            with part.open("ab" if have else "wb") as f:
                for chunk in iter_body(resp):
                    f.write(chunk)
                    faults.point("download_chunk")
                    h.update(chunk)
                fsync_file(f, part)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise SpoolFull(f"{part}: {e.strerror}") from None
            raise
        if batch.get("sha256") and h.hexdigest() != batch["sha256"]:
            part.unlink(missing_ok=True)
            raise DownloadCorrupt(f"{dataset}#{seq}")
        os.replace(part, final)
        fsync_dir(final.parent)
        faults.point("downloaded")
        log.info("batch_downloaded", dataset=dataset, seq=seq, bytes=final.stat().st_size,
                 resumed_from=have)
        return final

    def remove(self, dataset: str, seq: int) -> None:
        self.path(dataset, seq).unlink(missing_ok=True)

    def discard_partial(self, dataset: str, seq: int) -> None:
        """Drop a partial download that will never be resumed (the hub no longer has the batch)."""
        self.path(dataset, seq).with_suffix(".edx.part").unlink(missing_ok=True)

    def reject(self, dataset: str, seq: int, code: str) -> Path | None:
        """Keep a refused batch for investigation under rejected/, named with its error code."""
        src = self.path(dataset, seq)
        if not src.exists():
            return None
        dst = self.root / "rejected" / dataset / f"{seq:012d}.{code}.edx"
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.replace(src, dst)
        return dst
