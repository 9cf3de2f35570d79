"""Crash-safe file writes: a file on disk is either the old version or the new one, never torn.

Write to a temporary file in the same directory, fsync it, rename over the target, fsync the
directory. An fsync error is terminal (FsyncFailed): after a failed fsync the kernel may have dropped
the dirty pages, so retrying the same write could report success over lost data (PostgreSQL's
"fsyncgate"); the caller stops instead of retrying blindly.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path
from typing import Any

from .errors import FsyncFailed, SpoolFull


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as e:
        raise FsyncFailed(f"{path}: {e.strerror}") from None
    finally:
        os.close(fd)


def fsync_file(f: Any, path: Path | str) -> None:
    f.flush()
    try:
        os.fsync(f.fileno())
    except OSError as e:
        raise FsyncFailed(f"{path}: {e.strerror}") from None


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            fsync_file(f, path)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise SpoolFull(f"{path}: {e.strerror}") from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_stale_temps(directory: Path) -> list[str]:
    """Remove ``.NAME.tmpPID`` files left by a writer that died between create and rename (SIGKILL, power
    loss). The target itself is intact (old or new version); a temp of a live process is left alone."""
    removed: list[str] = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for p in entries:
        name, _sep, pid = p.name.rpartition(".tmp")
        if not (name.startswith(".") and pid.isdigit()) or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue                       # its writer still runs (another edx-agent command)
        except ProcessLookupError:
            pass
        except PermissionError:
            continue                       # a live process of another user
        p.unlink(missing_ok=True)
        removed.append(p.name)
    return removed


def atomic_write_json(path: Path, doc: Any, mode: int = 0o600) -> None:
    atomic_write_bytes(path, json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=True).encode() + b"\n",
                       mode)


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
