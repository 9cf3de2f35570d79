"""The audit log: append-only, hash-chained, fsynced JSON lines of operator actions, batches and purges.

Each record says who (uid, user, sudo user, pid, via), what (``event`` plus ``detail``), when (UTC),
the outcome and a correlation id, and carries ``prev``, the digest of the record before it, and
``hash``, the digest of ``prev`` followed by its own canonical JSON. SHA-256 by default, SM3 where the
agent runs the 国密 suite (GB/T 39786 prefers it); the algorithm is named in each record, so a change
of algorithm does not break the chain.

Files are ``audit-NNNNNN-YYYYMMDD.jsonl``. A new file starts when the current one reaches
``max_bytes`` or a new month begins; its first record carries the last digest of the previous file,
so rotation never breaks the chain. Files whose every record is older than the retention period
(≥ 180 days, 网络安全法 §21) are removed, the last removed digest kept in ``audit.anchor``. After every
append ``audit.head`` holds the last sequence number and digest, which is what makes a truncated tail
detectable; the daemon also reports the head to the hub in each heartbeat, an anchor off this machine.
Writers in several processes (the daemon, an operator's CLI command) are serialised with ``flock``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import fcntl
import json
import os
import pwd
import re
import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from cryptography.hazmat.primitives import hashes

from .errors import AgentError, IntegrityError, StorageError
from .fsutil import atomic_write_json, fsync_dir, read_json
from .logs import redact_value

GENESIS = "0" * 64
HASHES = {"sha256": hashes.SHA256, "sm3": hashes.SM3}
FILE_RE = re.compile(r"^audit-(\d{6})-(\d{8})\.jsonl$")
MIN_RETENTION_DAYS = 180

_cid: contextvars.ContextVar[str | None] = contextvars.ContextVar("audit_cid", default=None)
_thread_lock = threading.Lock()


class AuditWriteFailed(StorageError):
    code = "audit-write-failed"
    message = "the audit log cannot be written: {detail}"
    remedy = "Free disk space and check permissions of the audit directory; `edx-agent audit verify` checks it."


class AuditChainBroken(IntegrityError):
    code = "audit-chain-broken"
    message = "the audit log's hash chain is broken: {detail}"
    remedy = ("Someone or something altered the audit log. Keep the files as evidence, compare with the "
              "platform's copy of the head (heartbeats), and report it to the security officer.")


def new_cid() -> str:
    return secrets.token_hex(8)


@contextlib.contextmanager
def correlation(cid: str | None = None) -> Iterator[str]:
    """Records written inside the block share one correlation id (one sync run, one command)."""
    token = _cid.set(cid or new_cid())
    try:
        yield _cid.get() or ""
    finally:
        _cid.reset(token)


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_digest(alg: str, prev: str, body: dict[str, Any]) -> str:
    """Digest of one record: H(prev digest bytes ‖ canonical JSON of the record without ``hash``)."""
    h = hashes.Hash(HASHES[alg]())
    h.update(bytes.fromhex(prev))
    h.update(canonical({k: v for k, v in body.items() if k != "hash"}))
    return h.finalize().hex()


def who(via: str) -> dict[str, Any]:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:  # a DynamicUser= or container uid without a passwd entry
        user = str(uid)
    out: dict[str, Any] = {"uid": uid, "user": user, "pid": os.getpid(), "via": via}
    if os.environ.get("SUDO_USER"):
        out["sudo_user"] = os.environ["SUDO_USER"]
    return out


def _utc(now: dt.datetime | None = None) -> dt.datetime:
    return now or dt.datetime.now(dt.timezone.utc)


def list_files(root: Path) -> list[Path]:
    found = [p for p in Path(root).glob("audit-*.jsonl") if FILE_RE.match(p.name)]
    return sorted(found, key=lambda p: int(FILE_RE.match(p.name).group(1)))  # type: ignore[union-attr]


def _last_line(path: Path) -> tuple[bytes, int]:
    """The last complete line of a file and the offset just after it (0, 0 if none)."""
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        pos, buf = end, b""
        while pos > 0:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            buf = f.read(step) + buf
            nl = buf.rfind(b"\n")
            if nl < 0:
                continue
            complete_end = pos + nl + 1
            start = buf.rfind(b"\n", 0, nl)
            if start >= 0 or pos == 0:
                return buf[start + 1:nl + 1], complete_end
        return b"", 0


class AuditLog:
    """Appends chained records to the audit directory; safe across threads and processes."""

    def __init__(self, root: Path, *, alg: str = "sha256", via: str = "cli",
                 max_bytes: int = 8 << 20, retention_days: int = MIN_RETENTION_DAYS) -> None:
        if alg not in HASHES:
            raise ValueError(f"audit hash {alg!r}: one of {', '.join(HASHES)}")
        self.root = Path(root)
        self.alg = alg
        self.via = via
        self.max_bytes = max_bytes
        self.retention_days = max(retention_days, MIN_RETENTION_DAYS)
        self._torn = 0

    # -- writing
    def record(self, event: str, *, outcome: str = "ok", cid: str | None = None,
               now: dt.datetime | None = None, **fields: Any) -> dict[str, Any]:
        """Append one record (fsynced before returning) and return it."""
        detail = {k: redact_value(k, v) for k, v in fields.items()}
        try:
            with self._locked():
                return self._append(event, outcome, cid or _cid.get() or new_cid(), detail, _utc(now))
        except OSError as e:
            raise AuditWriteFailed(f"{self.root}: {e.strerror or e}") from None

    @contextlib.contextmanager
    def action(self, event: str, **fields: Any) -> Iterator[dict[str, Any]]:
        """Record an operator action with its outcome: ``ok``, or the error code it failed with.

        The block may add fields to the yielded dict (e.g. the agent id once enrolment succeeded).
        """
        extra: dict[str, Any] = {}
        try:
            yield extra
        except AgentError as e:
            self.record(event, outcome=e.code, **fields, **extra, error=str(e))
            raise
        except BaseException as e:
            self.record(event, outcome="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                        **fields, **extra, error=type(e).__name__)
            raise
        self.record(event, **fields, **extra)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        with _thread_lock:
            fd = os.open(self.root / "audit.lock", os.O_RDWR | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield
            finally:
                os.close(fd)  # closing releases the flock

    def _tail(self) -> tuple[Path | None, dict[str, Any] | None]:
        """The current file and the last record of the chain; cuts a torn last line (power loss)."""
        files = list_files(self.root)
        last: dict[str, Any] | None = None
        for path in reversed(files):
            line, end = _last_line(path)
            size = path.stat().st_size
            if end < size:
                # bytes after the last newline never formed a record: an interrupted write
                with path.open("r+b") as f:
                    f.truncate(end)
                    os.fsync(f.fileno())
                self._torn = size - end
            if line:
                try:
                    last = json.loads(line)
                except ValueError:
                    raise AuditChainBroken(f"{path.name}: last record is not JSON") from None
                break
        if last is None:
            anchor = read_json(self.root / "audit.anchor")
            if anchor:
                last = {"seq": anchor["seq"], "hash": anchor["hash"]}
        return (files[-1] if files else None), last

    def _append(self, event: str, outcome: str, cid: str, detail: dict[str, Any],
                now: dt.datetime) -> dict[str, Any]:
        self._torn = 0
        path, last = self._tail()
        if self._torn:
            torn = self._torn
            self._write_one(path, last, "audit_torn_tail_cut", "ok", cid, {"bytes": torn}, now)
            path, last = self._tail()
        return self._write_one(path, last, event, outcome, cid, detail, now)

    def _write_one(self, path: Path | None, last: dict[str, Any] | None, event: str, outcome: str,
                   cid: str, detail: dict[str, Any], now: dt.datetime) -> dict[str, Any]:
        new_file = path is None or self._due(path, now)
        if new_file:
            index = int(FILE_RE.match(path.name).group(1)) + 1 if path else 1  # type: ignore[union-attr]
            path = self.root / f"audit-{index:06d}-{now:%Y%m%d}.jsonl"
        rec: dict[str, Any] = {
            "seq": (last["seq"] + 1) if last else 1, "ts": now.isoformat(timespec="milliseconds"),
            "event": event, "outcome": outcome, "who": who(self.via), "cid": cid, "detail": detail,
            "alg": self.alg, "prev": last["hash"] if last else GENESIS}
        rec["hash"] = chain_digest(self.alg, rec["prev"], rec)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, canonical(rec) + b"\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        if new_file:
            fsync_dir(self.root)
        atomic_write_json(self.root / "audit.head", {"seq": rec["seq"], "hash": rec["hash"],
                                                     "file": path.name}, mode=0o640)
        return rec

    def _due(self, path: Path, now: dt.datetime) -> bool:
        started = FILE_RE.match(path.name).group(2)  # type: ignore[union-attr]
        return path.stat().st_size >= self.max_bytes or started[:6] != f"{now:%Y%m}"

    # -- retention
    def prune(self, now: dt.datetime | None = None) -> list[str]:
        """Remove files whose every record is past the retention period; the chain stays verifiable."""
        now = _utc(now)
        cutoff = (now - dt.timedelta(days=self.retention_days)).strftime("%Y%m%d")
        removed: list[str] = []
        with self._locked():
            files = list_files(self.root)
            for old, newer in zip(files, files[1:]):
                # every record of ``old`` is older than the first record of ``newer``
                if FILE_RE.match(newer.name).group(2) >= cutoff:  # type: ignore[union-attr]
                    break
                line, _ = _last_line(old)
                last = json.loads(line)
                atomic_write_json(self.root / "audit.anchor", {"seq": last["seq"], "hash": last["hash"],
                                                               "file": old.name, "pruned_at": now.isoformat()})
                old.unlink()
                removed.append(old.name)
            if removed:
                fsync_dir(self.root)
                path, last = self._tail()
                self._write_one(path, last, "audit_pruned", "ok", _cid.get() or new_cid(),
                                {"files": removed, "retention_days": self.retention_days}, now)
        return removed

    def head(self) -> dict[str, Any] | None:
        return read_json(self.root / "audit.head")


@dataclass
class Verdict:
    ok: bool
    records: int = 0
    files: list[str] = field(default_factory=list)
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    broken: dict[str, Any] | None = None     # file, line, seq, reason of the first broken record

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def verify(root: Path, expect_head: tuple[int, str] | None = None) -> Verdict:
    """Check the whole chain across files; name the first broken record and why."""
    root = Path(root)
    files = list_files(root)
    anchor = read_json(root / "audit.anchor")
    v = Verdict(ok=True, files=[p.name for p in files])
    prev, expected = (anchor["hash"], anchor["seq"] + 1) if anchor else (GENESIS, 1)

    def broken(path: Path | None, line: int | None, seq: Any, reason: str) -> Verdict:
        v.ok = False
        v.broken = {"file": path.name if path else None, "line": line, "seq": seq, "reason": reason}
        return v

    for path in files:
        with path.open("rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):
                    return broken(path, lineno, None, "incomplete last line: the file was cut")
                try:
                    rec = json.loads(raw)
                    seq, alg = rec["seq"], rec["alg"]
                except (ValueError, KeyError, TypeError):
                    return broken(path, lineno, None, "not a valid audit record")
                if seq != expected:
                    why = ("records before it are missing" if v.records == 0 and seq > expected else
                           "a record was deleted, inserted or moved")
                    return broken(path, lineno, seq, f"sequence {seq}, expected {expected}: {why}")
                if rec.get("prev") != prev:
                    return broken(path, lineno, seq, "does not link to the digest of the record before it")
                if alg not in HASHES or chain_digest(alg, prev, rec) != rec.get("hash"):
                    return broken(path, lineno, seq, "digest does not match the content: the record was edited")
                if v.first_seq is None:
                    v.first_seq = seq
                prev, expected = rec["hash"], seq + 1
                v.records += 1
    v.last_seq, v.last_hash = (expected - 1 if v.records else None), (prev if v.records else None)
    heads = [("audit.head", read_json(root / "audit.head"))]
    if expect_head:
        heads.append(("the expected head", {"seq": expect_head[0], "hash": expect_head[1]}))
    for name, head in heads:
        if head and (head["seq"] != expected - 1 or head["hash"] != prev):
            if head["seq"] > expected - 1:
                return broken(files[-1] if files else None, None, expected,
                              f"the log ends at sequence {expected - 1} but {name} says {head['seq']}: "
                              "records were removed from the end")
            return broken(files[-1] if files else None, None, head["seq"],
                          f"{name} (sequence {head['seq']}) does not match the chain")
    return v


def audit_dir(cfg: Any) -> Path:
    return Path(os.environ.get("EDX_AGENT_AUDIT_DIR") or cfg.audit_dir)


def for_config(cfg: Any, via: str = "cli") -> AuditLog:
    """The audit log of an agent configuration (``[audit]``): SM3 chain by default with the 国密 suite."""
    a = cfg.audit
    alg = os.environ.get("EDX_AGENT_AUDIT_HASH") or (
        a.hash if a.hash != "auto" else "sm3" if cfg.keys.suite == "gm" else "sha256")
    return AuditLog(audit_dir(cfg), alg=alg, via=via, max_bytes=a.max_file_mb << 20,
                    retention_days=a.retention_days)


_default: AuditLog | None = None


def configure(cfg: Any, via: str = "cli") -> AuditLog:
    """Set the process's audit log, used by :func:`record`."""
    global _default
    _default = for_config(cfg, via)
    return _default


def record(event: str, **fields: Any) -> dict[str, Any]:
    """Append to the audit log set by :func:`configure` (CLI commands call this)."""
    if _default is None:
        raise RuntimeError("audit.configure(cfg) must be called before audit.record()")
    return _default.record(event, **fields)
