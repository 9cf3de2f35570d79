"""The data path of one batch: download → verify → decrypt → apply (one transaction) → ack → report.

Order matters and is the exactly-once argument (docs/architecture.md):

1. the sealed file is downloaded into the spool and checked against the listed digest;
2. the header signature, recipient, dataset, expiry and sequence are checked (``envelope``), then every
   chunk is decrypted once without output (pass 1), so a forged, cut or spliced batch is refused
   before a single row reaches the database;
3. the payload is decrypted and decompressed again as a stream (pass 2) straight into the connector,
   which loads, merges and writes lineage and checkpoint in one transaction, and calls
   ``source.finish()`` before COMMIT;
4. only after COMMIT is the receipt signed and the batch acknowledged; only after the ack is the
   spool file removed. A crash anywhere leaves either the old checkpoint (the batch is applied again
   from the spool) or the new one (the batch is recognised as a duplicate and acknowledged again).
"""

from __future__ import annotations

import datetime as dt
import io
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import structlog

from . import envelope, faults
from .client import HubClient
from .config import AgentConfig
from .errors import (AgentError, BatchSuperseded, DataError, IntegrityError, PlatformError, Transient,
                     is_transient)
from .payload import Manifest
from .progress import ApplyProgress
from .spool import Spool
from .state import StateDir, now_iso

log = structlog.get_logger(__name__)
SUITE_IDS = {"intl": 1, "gm": 2}
ZERO_HH = b"\x00" * 32


class HubAnswerMalformed(Transient, PlatformError):
    code = "hub-answer-malformed"
    message = "the hub's answer is malformed: {detail}"
    remedy = "Nothing to do unless it persists; then check proxies or 网闸 between this machine and the platform."


class ManifestMismatch(IntegrityError):
    code = "payload-manifest-mismatch"
    message = "the payload does not match its signed header: {detail}"


def suite_hash(suite: int) -> Callable[[bytes], bytes]:
    from cryptography.hazmat.primitives import hashes

    algo = hashes.SM3() if int(suite) == 2 else hashes.SHA256()

    def h(data: bytes) -> bytes:
        d = hashes.Hash(algo)
        d.update(data)
        return d.finalize()
    return h


class PayloadSource:
    """A BatchSource over an envelope's decrypted payload stream (connectors.api.BatchSource).

    ``reopen()`` decrypts the spooled envelope again from the start, so a connector that must read a
    batch twice (to isolate rows the database refused) never keeps a plaintext copy on disk.
    """

    def __init__(self, path: Path, header: Any, ctx: "Context", progress: ApplyProgress | None = None) -> None:
        self._path, self._header, self._ctx = path, header, ctx
        self._progress = progress
        self._files: list[Any] = []
        self._ahead: _ReadAhead | None = None
        try:
            self._stream, self.rows, self.manifest = self._open(read_ahead=True)
        except BaseException:
            self.close()  # a malformed manifest must not leave the read-ahead thread waiting forever
            raise

    def _open(self, *, read_ahead: bool = False) -> tuple[Any, io.BufferedReader, Manifest]:
        f = self._path.open("rb")
        self._files.append(f)
        envelope.read_header(f, trusted=self._ctx.hub_keys, allowed_suites=self._ctx.allowed_suites)
        stream = envelope.open_payload(f, self._header, self._ctx.keys)
        raw: Any = stream
        if read_ahead:
            self._ahead = raw = _ReadAhead(stream, self._progress.advance if self._progress else None)
        rows = io.BufferedReader(raw, 1 << 20)
        return stream, rows, Manifest.read_from(rows)

    def reopen(self) -> io.BufferedReader:
        return self._open()[1]

    def finish(self) -> None:
        if self.rows.read(1):
            raise DataError("the connector stopped reading before the end of the payload")
        if self._ahead is not None:
            self._ahead.join()
        self._stream.finish()

    def close(self) -> None:
        if self._ahead is not None:
            self._ahead.stop()
        for f in self._files:
            f.close()


class _ReadAhead(io.RawIOBase):
    """Decrypts and decompresses the payload in a thread, a few MiB ahead of the connector.

    Pass 2 otherwise runs in series with the database's load on the connector's thread (PostgreSQL
    COPY, SQLite executemany): AES-GCM and zstd release the GIL, so on a second core they overlap with
    the server's parsing. bench/bench_e2e.py measured it on a PostgreSQL snapshot. Errors of the stream
    (a chunk that fails to authenticate, a bomb) are raised to the reader in order, after the bytes
    that were verified before them; memory stays bounded (DEPTH blocks).
    """

    BLOCK = 1 << 20
    DEPTH = 4

    def __init__(self, stream: Any, on_read: Callable[[int], None] | None = None) -> None:
        super().__init__()
        self._on_read = on_read
        self._q: queue.Queue[Any] = queue.Queue(self.DEPTH)
        self._stop = threading.Event()
        self._buf = memoryview(b"")
        self._done = False
        self._thread = threading.Thread(target=self._run, args=(stream,), name="edx-read-ahead", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, stream: Any) -> None:
        try:
            while not self._stop.is_set():
                block = bytearray(self.BLOCK)
                n = stream.readinto(block)
                if not n:
                    break
                del block[n:]
                if not self._put(block):
                    return
            self._put(b"")
        except BaseException as e:  # noqa: BLE001 - handed to the reader, in order
            self._put(e)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        while not len(self._buf):
            if self._done:
                return 0
            item = self._q.get()
            if isinstance(item, BaseException):
                self._done = True
                raise item
            if not item:
                self._done = True
                return 0
            self._buf = memoryview(item)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        if self._on_read is not None:
            self._on_read(n)
        return n

    def join(self) -> None:
        self._thread.join()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class BatchOutcome:
    dataset: str
    seq: int
    kind: str = ""
    rows: int = 0
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    quarantined: int = 0
    duplicate: bool = False
    seconds: float = 0.0
    bytes: int = 0
    phases: dict[str, float] = field(default_factory=dict)


@dataclass
class Context:
    """Everything one sync run needs; built once by the CLI or the daemon."""

    cfg: AgentConfig
    state: StateDir
    client: HubClient
    connector: Any
    spool: Spool
    agent_id: str
    keys: list[Any]                 # current recipient key first
    hub_keys: list[Any]
    audit: Callable[..., None] = lambda *a, **k: None
    schema_name: str | None = None  # target schema (a sandbox in joint-debug mode)
    table_prefix: str = ""
    applying: dict[str, ApplyProgress] = field(default_factory=dict)   # dataset -> batch being applied

    @property
    def allowed_suites(self) -> list[int]:
        return [SUITE_IDS[s] for s in self.cfg.keys.allowed_suites]

    def table_for(self, dataset: str) -> str:
        return self.table_prefix + self.cfg.table_for(dataset)


def open_checked(ctx: Context, path: Path, dataset: str) -> tuple[Any, Any]:
    """Steps 2 of the data path on a spooled file: header, context, sequence, every chunk.

    Returns ``(header, decision)`` with decision "apply" or "duplicate"; raises IntegrityError.
    """
    with path.open("rb") as f:
        header = envelope.read_header(f, trusted=ctx.hub_keys, allowed_suites=ctx.allowed_suites)
        envelope.check_context(header, recipient_id=ctx.agent_id, recipient_keys=ctx.keys,
                               dataset_id=dataset, now_ms=int(time.time() * 1000),
                               limits=envelope.Limits(max_payload_len=ctx.cfg.sync.max_batch_bytes))
        cp = ctx.connector.get_checkpoint(dataset)
        last_seq = cp.seq if cp else 0
        last_hh = bytes.fromhex(cp.batch_digest) if cp else ZERO_HH
        known = ctx.connector.lineage_digest(dataset, header.batch_seq) if last_seq >= header.batch_seq else None
        decision = envelope.check_sequence(header, last_seq, last_hh,
                                           bytes.fromhex(known) if known else None)
        if decision == "apply":
            envelope.verify_stream(f, header, ctx.keys)
    return header, decision


def apply_file(ctx: Context, path: Path, dataset: str, received_at: dt.datetime | None = None,
               listing: dict[str, Any] | None = None) -> BatchOutcome:
    """Verify, decrypt and apply one spooled batch; return what it did (no ack here)."""
    t0 = time.monotonic()
    header, decision = open_checked(ctx, path, dataset)
    faults.point("verify")
    out = BatchOutcome(dataset, header.batch_seq, kind=header.kind, bytes=path.stat().st_size)
    out.phases["verify"] = time.monotonic() - t0
    if decision == "duplicate":
        out.duplicate = True
        return out
    from connectors.api import AlreadyApplied, BatchMeta

    progress = ApplyProgress(dataset, header.batch_seq, header.kind, header.row_count, header.uncompressed_len)
    source = PayloadSource(path, header, ctx, progress)
    ctx.applying[dataset] = progress
    try:
        faults.point("decrypt")
        m = source.manifest
        problems = []
        if m.dataset != dataset:
            problems.append(f"manifest dataset {m.dataset!r}")
        if m.kind != header.kind:
            problems.append(f"manifest kind {m.kind!r} vs header {header.kind!r}")
        if m.rows != header.row_count:
            problems.append(f"manifest rows {m.rows} vs header {header.row_count}")
        if m.schema.digest(suite_hash(header.suite)) != header.schema_hash:
            problems.append("schema digest differs from the signed one")
        if problems:
            raise ManifestMismatch("; ".join(problems))
        expected = None
        ext = getattr(header, "extensions", {}) or {}
        if 0x81 in ext:
            import json
            expected = json.loads(ext[0x81])
        meta = BatchMeta(
            dataset=dataset, table=ctx.table_for(dataset), seq=header.batch_seq, kind=header.kind,
            batch_digest=header.hh.hex(), envelope_digest=(listing or {}).get("sha256", ""),
            provider_unit=(listing or {}).get("provider_unit", ""),
            catalog_id=(listing or {}).get("catalog_id", ""),
            received_at=received_at or dt.datetime.now(dt.timezone.utc),
            expected_checksum=expected,
            quarantine_limit=ctx.cfg.sync.quarantine_limit, schema_name=ctx.schema_name)
        t1 = time.monotonic()
        try:
            result = ctx.connector.apply(meta, source)
        except AlreadyApplied:
            out.duplicate = True
            return out
    finally:
        ctx.applying.pop(dataset, None)
        source.close()
    out.phases["apply"] = time.monotonic() - t1
    out.phases.update({f"apply.{k}": v for k, v in (result.phases or {}).items()})
    out.duplicate = result.duplicate
    out.rows, out.inserted, out.updated = result.rows, result.inserted, result.updated
    out.deleted, out.quarantined = result.deleted, result.quarantined
    out.seconds = time.monotonic() - t0
    out.checksum = result.checksum  # type: ignore[attr-defined]
    out.hh = header.hh  # type: ignore[attr-defined]
    return out


def acknowledge(ctx: Context, out: BatchOutcome, hh: bytes) -> None:
    counts = {"rows": out.rows, "inserted": out.inserted, "updated": out.updated,
              "deleted": out.deleted, "quarantined": out.quarantined, "duplicate": int(out.duplicate)}
    receipt = envelope.sign_receipt(ctx.keys[0], hh, out.dataset, out.seq, counts,
                                    getattr(out, "checksum", {}) or {}, int(time.time() * 1000))
    ctx.state.keep_receipt(receipt)
    ctx.client.ack(out.dataset, out.seq, receipt)


def sync_dataset(ctx: Context, grant: dict[str, Any],
                 progress: Callable[[BatchOutcome], None] | None = None) -> list[BatchOutcome]:
    """Pull and apply every pending batch of one granted dataset, in order."""
    dataset = grant["dataset"]
    bound = log.bind(dataset=dataset)
    outcomes: list[BatchOutcome] = []
    _drain_spooled(ctx, dataset, outcomes)
    superseded: set[int] = set()
    while True:
        cp = ctx.connector.get_checkpoint(dataset)
        listing = ctx.client.batches(dataset, cp.seq if cp else 0)
        batches = listing.get("batches", []) if isinstance(listing, dict) else None
        if not isinstance(batches, list) or not all(isinstance(b, dict) and isinstance(b.get("seq"), int)
                                                     and b.get("dataset") == dataset for b in batches):
            # a listing damaged on the way (a proxy, a cut answer) is retried, never half-used
            raise HubAnswerMalformed(f"batch listing for {dataset}")
        if not batches:
            break
        progressed = False
        for b in batches:
            received = dt.datetime.now(dt.timezone.utc)
            try:
                path = ctx.spool.fetch(ctx.client, b)
            except BatchSuperseded as e:
                # listed before a later snapshot and collected since (the hub keeps 24 h): list again,
                # which now starts at that snapshot; the same batch twice means the hub is inconsistent
                if b["seq"] in superseded:
                    raise
                superseded.add(b["seq"])
                ctx.spool.discard_partial(dataset, b["seq"])
                bound.info("batch_superseded", seq=b["seq"], error=str(e))
                progressed = True
                break
            out = _apply_and_ack(ctx, path, dataset, b, received, bound)
            outcomes.append(out)
            if progress:
                progress(out)
            progressed = progressed or not out.duplicate
        if not progressed:
            break
    return outcomes


def _drain_spooled(ctx: Context, dataset: str, outcomes: list[BatchOutcome]) -> None:
    """Batches left in the spool by a crash: apply (or recognise as applied) and ack them first."""
    d = ctx.spool.root / dataset
    if not d.is_dir():
        return
    for path in sorted(d.glob("*.edx")):
        seq = int(path.stem)
        outcomes.append(_apply_and_ack(ctx, path, dataset, {"dataset": dataset, "seq": seq},
                                       None, log.bind(dataset=dataset)))


def _apply_and_ack(ctx: Context, path: Path, dataset: str, listing: dict[str, Any],
                   received: dt.datetime | None, bound: Any) -> BatchOutcome:
    seq = int(listing["seq"])
    try:
        out = apply_file(ctx, path, dataset, received, listing)
    except AgentError as e:
        if isinstance(e, IntegrityError) and not is_transient(e):
            kept = ctx.spool.reject(dataset, seq, e.code)
            bound.error("batch_rejected", seq=seq, code=e.code, error=str(e), kept=str(kept))
            ctx.audit("batch_rejected", dataset=dataset, seq=seq, outcome=e.code)
        raise
    hh = getattr(out, "hh", None)
    if hh is None:  # duplicate found before apply: take the identity from the header
        with path.open("rb") as f:
            hh = envelope.read_header(f, trusted=ctx.hub_keys, allowed_suites=ctx.allowed_suites).hh
    faults.point("ack")
    acknowledge(ctx, out, hh)
    faults.point("acked")
    ctx.spool.remove(dataset, seq)
    faults.point("spool_cleanup")
    status = ctx.state.status()["datasets"].get(dataset, {})
    ctx.state.update_status(
        dataset, last_seq=out.seq, last_applied_at=now_iso(), state="ok", last_error=None,
        rows_total=int(status.get("rows_total", 0)) + (0 if out.duplicate else out.rows),
        last_batch={"seq": out.seq, "kind": out.kind, "rows": out.rows, "inserted": out.inserted,
                    "updated": out.updated, "deleted": out.deleted, "quarantined": out.quarantined,
                    "duplicate": out.duplicate, "seconds": round(out.seconds, 3)})
    bound.info("batch_applied", seq=out.seq, kind=out.kind, rows=out.rows, inserted=out.inserted,
               updated=out.updated, deleted=out.deleted, quarantined=out.quarantined,
               duplicate=out.duplicate, bytes=out.bytes, seconds=round(out.seconds, 3),
               phases={k: round(v, 3) for k, v in out.phases.items()})
    ctx.audit("batch_applied", dataset=dataset, seq=out.seq, outcome="duplicate" if out.duplicate else "ok",
              rows=out.rows)
    return out


def record_error(ctx: Context, dataset: str, err: AgentError) -> None:
    ctx.state.update_status(dataset, state="error" if not err.transient else "retrying",
                            last_error={**err.to_dict(), "at": now_iso()})
