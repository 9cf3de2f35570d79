"""What an agent pulls: the batch listing after its cursor, resync snapshots, acks, and the joint-debug test batch.

Listing rule (docs/protocol.md §Batches): batches with seq > ``after``, except that a cursor older than
the dataset's latest snapshot, or one this hub never delivered to this agent, starts at the latest
snapshot (a snapshot replaces everything before it). A cursor ahead of the latest snapshot that the hub
cannot continue (the agent re-enrolled under a new id, or its chain was reset) gets a fresh resync
snapshot instead, so an agent is never left with a gap it cannot close.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select, update

from agent.errors import AgentError, BatchSuperseded
from agent.schema import Schema

from . import catalog, state
from .context import HubContext
from .errors import BatchUnknown, ReceiptInvalid
from .grants import require_active
from .publish import _master_payload, expected_figure
from .sealing import ZERO_HH, _compress_from_master, _seal_to_blob, _sealed_row, descriptor, seal_for
from .store import insert_ignore, now_ms, sealed

MAX_LIST = 1000
SELFTEST_DATASET = "edx_selftest"


def list_batches(ctx: HubContext, agent: dict[str, Any], dataset: str, after: int, limit: int) -> dict[str, Any]:
    limit = max(1, min(limit, MAX_LIST))
    with ctx.engine.connect() as conn:
        require_active(conn, agent["unit"], dataset)
        ds = catalog.get_dataset(conn, dataset)
        pending = conn.execute(select(sealed).where(
            sealed.c.agent_id == agent["agent_id"], sealed.c.dataset == dataset, sealed.c.resync.is_(True),
            sealed.c.acked_at_ms.is_(None), sealed.c.seq >= after, sealed.c.blob_key != "")
            .order_by(sealed.c.seq.desc())).mappings().first()
        at_cursor = _sealed_row(conn, dataset, after, agent["agent_id"]) if after >= 1 else None
    latest, snap = ds.latest_seq, ds.latest_snapshot_seq
    if latest == 0 or after > latest:
        return {"batches": [], "latest_seq": latest}
    if pending is not None:
        start = pending["seq"]
    elif after >= snap and at_cursor is not None:
        start = after + 1
    elif after > snap:
        resync(ctx, agent, dataset)
        return list_batches(ctx, agent, dataset, after, limit)
    else:
        start = snap
    out = []
    for seq in range(start, min(latest, start + limit - 1) + 1):
        out.append(descriptor(seal_for(ctx, agent, dataset, seq)))
    return {"batches": out, "latest_seq": latest}


def ready_datasets(ctx: HubContext, agent: dict[str, Any], cursors: dict[str, int]) -> dict[str, int]:
    """Of ``cursors`` (dataset -> the agent's last seq), the datasets with a batch after the cursor or a
    resync snapshot waiting, mapped to their latest seq. Datasets without an active grant are left out,
    exactly like datasets that do not exist. Cheap: the long-poll calls it once a second."""
    ready: dict[str, int] = {}
    with ctx.engine.connect() as conn:
        for dataset, after in cursors.items():
            try:
                require_active(conn, agent["unit"], dataset)
                ds = catalog.get_dataset(conn, dataset)
            except AgentError:   # no grant, revoked, not started, unknown: nothing to say
                continue
            pending = conn.execute(select(sealed.c.seq).where(
                sealed.c.agent_id == agent["agent_id"], sealed.c.dataset == dataset, sealed.c.resync.is_(True),
                sealed.c.acked_at_ms.is_(None), sealed.c.seq >= after, sealed.c.blob_key != "").limit(1)).first()
            if ds.latest_seq > after or pending is not None:
                ready[dataset] = ds.latest_seq
    return ready


def sealed_for_download(ctx: HubContext, agent: dict[str, Any], dataset: str, seq: int) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        require_active(conn, agent["unit"], dataset)
        row = _sealed_row(conn, dataset, seq, agent["agent_id"])
    if row is None:
        raise BatchUnknown(f"{dataset} #{seq} (list batches first)")
    if not row["blob_key"]:   # collected by hub/gc.py
        raise BatchSuperseded(f"{dataset} #{seq}")
    return row


def resync(ctx: HubContext, agent: dict[str, Any], dataset: str) -> dict[str, Any]:
    """A fresh snapshot of the dataset's current state for this agent, at the dataset's latest seq."""
    fd, name = tempfile.mkstemp(prefix="resync-", suffix=".csv", dir=ctx.tmp_dir)
    records = Path(name)
    master: Path | None = None
    try:
        with ctx.engine.begin() as conn:  # one transaction: the state and latest_seq agree
            require_active(conn, agent["unit"], dataset)
            ds = catalog.get_dataset(conn, dataset)
            if ds.latest_seq == 0 or ds.schema is None:
                raise BatchUnknown(f"{dataset} has no published batch yet")
            rows = 0
            with os.fdopen(fd, "wb", buffering=1 << 20) as out:
                for chunk in state.iter_state(conn, dataset):
                    # stored rows are already payload CSV: no decoding on the way out
                    out.write("".join(["I," + text + "\n" for text in chunk]).encode())
                    rows += len(chunk)
            seq = ds.latest_seq
            prev = _sealed_row(conn, dataset, seq - 1, agent["agent_id"]) if seq > 1 else None
        schema = Schema(ds.schema.columns, ds.schema.primary_key, ds.schema_version)
        master = _master_payload(ctx, dataset, "snapshot", schema, rows, records)
        suite = int(agent["suite"])
        payload_key, info = _compress_from_master_path(ctx, master, suite, f"resync/{dataset}/{seq}")
        expected = expected_figure("snapshot", schema, records)
        try:
            key, size, sha, hh = _seal_to_blob(
                ctx, agent, payload_key=payload_key, info=info, dataset=dataset, seq=seq,
                prev_hh=prev["hh"] if prev else ZERO_HH, kind="snapshot", schema=schema, rows=rows,
                expected=expected)
        finally:
            ctx.blobs.delete(payload_key)
    finally:
        records.unlink(missing_ok=True)
        if master is not None:
            master.unlink(missing_ok=True)
    row = {"dataset": dataset, "seq": seq, "agent_id": agent["agent_id"], "kind": "snapshot", "rows": rows,
           "blob_key": key, "size": size, "sha256": sha, "hh": hh, "prev_hh": prev["hh"] if prev else ZERO_HH,
           "resync": True, "created_at_ms": now_ms(), "checksum_mismatch": False,
           "expected_json": json.dumps(expected)}
    with ctx.engine.begin() as conn:
        # the resync snapshot replaces what this agent had at seq, and anything sealed after it chained
        # to the old envelope, so those are dropped and re-sealed on the next listing
        old = conn.execute(select(sealed.c.blob_key).where(
            sealed.c.agent_id == agent["agent_id"], sealed.c.dataset == dataset, sealed.c.seq >= seq)).all()
        conn.execute(delete(sealed).where(sealed.c.agent_id == agent["agent_id"], sealed.c.dataset == dataset,
                                          sealed.c.seq >= seq))
        insert_ignore(conn, sealed, row)
    for r in old:
        if r.blob_key:   # "" once hub/gc.py collected the envelope
            ctx.blobs.delete(r.blob_key)
    return descriptor(row)


def _compress_from_master_path(ctx: HubContext, master: Path, suite: int, prefix: str) -> tuple[str, Any]:
    key = f"{prefix}-{os.urandom(6).hex()}.master.zst"
    ctx.blobs.put_file(key, master)
    try:
        return _compress_from_master(ctx, key, suite, prefix)
    finally:
        ctx.blobs.delete(key)


def ack(ctx: HubContext, agent: dict[str, Any], dataset: str, seq: int, receipt: Any) -> dict[str, Any]:
    """Verify and store the agent's signed receipt; idempotent; flags a reconciliation mismatch."""
    from agent.envelope import verify_receipt

    from .enrolment import parse_public_keys

    with ctx.engine.connect() as conn:
        row = _sealed_row(conn, dataset, seq, agent["agent_id"])
    if row is None:
        raise BatchUnknown(f"{dataset} #{seq}")
    public = parse_public_keys(json.loads(agent["keys_json"]))
    try:
        verify_receipt(receipt, public)
    except Exception as e:  # every way a receipt can fail is the same answer to the agent
        raise ReceiptInvalid(getattr(e, "text", None) or str(e) or type(e).__name__) from None
    doc = dict(receipt)
    if (doc.get("hh"), doc.get("dataset"), doc.get("seq")) != (row["hh"], dataset, seq):
        raise ReceiptInvalid(f"receipt is for {doc.get('dataset')} #{doc.get('seq')} hh {str(doc.get('hh'))[:16]}…, "
                             f"not the envelope sealed as {dataset} #{seq}")
    mismatch = _checksum_mismatch(row, doc)
    if row["acked_at_ms"] is not None:
        return {"acked": True, "duplicate": True, "checksum_mismatch": bool(row["checksum_mismatch"])}
    with ctx.engine.begin() as conn:
        conn.execute(update(sealed).where(sealed.c.dataset == dataset, sealed.c.seq == seq,
                                          sealed.c.agent_id == agent["agent_id"], sealed.c.acked_at_ms.is_(None))
                     .values(acked_at_ms=now_ms(), receipt_json=json.dumps(receipt, default=str),
                             checksum_mismatch=mismatch))
    return {"acked": True, "duplicate": False, "checksum_mismatch": mismatch}


def _checksum_mismatch(row: dict[str, Any], receipt: dict[str, Any]) -> bool:
    """True when the receipt's checksum differs from the figure the hub sealed into the header."""
    got, raw = receipt.get("checksum"), row.get("expected_json")
    if not isinstance(got, dict) or not raw:
        return False
    expected = json.loads(raw)
    shared = [k for k in ("rows", "sum64", "deleted") if k in got and k in expected]
    return bool(shared) and any(str(got[k]) != str(expected[k]) for k in shared)


__all__ = ["ack", "list_batches", "resync", "sealed_for_download", "SELFTEST_DATASET"]
