"""Sealing batches per agent: per-suite payloads, the per-(dataset, agent) hash chain, resync and resend.

Each batch is sealed separately for every agent that receives it (its data key wrapped to that agent's
key), eagerly at publish for agents already following the dataset and lazily on listing for the rest.
``prev_hh`` chains the batches one agent received: the header hash of the batch seq-1 sealed for that
agent, all zero for its first batch, which is always a snapshot. Sealing is ordered by sequence, so a
batch is sealed for an agent only when the one before it is (or when it is a snapshot). Two hub
instances sealing the same batch for the same agent race harmlessly: the first row inserted wins and
the loser deletes its blob.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from pathlib import Path
from typing import Any

import zstandard
from sqlalchemy import and_, delete, select

from agent.schema import Schema

from . import catalog
from .context import HubContext
from .enrolment import parse_public_keys
from .errors import BatchUnknown
from .store import agents, batches, grants, insert_ignore, now_ms, payloads, sealed

ZERO_HH = "00" * 32
EXT_EXPECTED = 0x81


def _suite_payload(ctx: HubContext, dataset: str, seq: int, suite: int) -> tuple[str, Any]:
    """The batch's payload compressed for ``suite`` (content digest is the suite's hash), made once."""
    from agent.envelope import PayloadInfo

    with ctx.engine.connect() as conn:
        rows = {r.suite: r for r in conn.execute(select(payloads).where(
            payloads.c.dataset == dataset, payloads.c.seq == seq))}
    if suite in rows:
        return rows[suite].blob_key, _info(PayloadInfo, rows[suite].info_json)
    if 0 not in rows:
        raise BatchUnknown(f"{dataset} #{seq} has no payload (deleted?)")
    key, info = _compress_from_master(ctx, rows[0].blob_key, suite, f"payloads/{dataset}/{seq}")
    with ctx.engine.begin() as conn:
        won = insert_ignore(conn, payloads, {"dataset": dataset, "seq": seq, "suite": suite, "blob_key": key,
                                             "info_json": _info_json(info)})
    if not won:
        ctx.blobs.delete(key)
        return _suite_payload(ctx, dataset, seq, suite)
    return key, info


def _compress_from_master(ctx: HubContext, master_key: str, suite: int, prefix: str) -> tuple[str, Any]:
    from agent.envelope import compress_payload

    fd, name = tempfile.mkstemp(prefix="payload-", dir=ctx.tmp_dir)
    try:
        with ctx.blobs.open(master_key) as raw, zstandard.ZstdDecompressor().stream_reader(raw) as plain, \
                os.fdopen(fd, "wb") as dst:
            info = compress_payload(plain, dst, suite)
        key = f"{prefix}-s{suite}-{uuid.uuid4().hex[:12]}.zst"
        ctx.blobs.put_file(key, Path(name))
    finally:
        Path(name).unlink(missing_ok=True)
    return key, info


def _info_json(info: Any) -> str:
    return json.dumps({"uncompressed_len": info.uncompressed_len, "payload_len": info.payload_len,
                       "content_digest": bytes(info.content_digest).hex()})


def _info(cls: Any, raw: str) -> Any:
    d = json.loads(raw)
    return cls(uncompressed_len=d["uncompressed_len"], payload_len=d["payload_len"],
               content_digest=bytes.fromhex(d["content_digest"]))


def schema_hash(schema: Schema, suite: int) -> bytes:
    from agent.envelope.provider import get_provider
    return schema.digest(get_provider(suite).hash)


def _seal_to_blob(ctx: HubContext, agent: dict[str, Any], *, payload_key: str, info: Any, dataset: str,
                  seq: int, prev_hh: str, kind: str, schema: Schema, rows: int,
                  expected: dict[str, Any] | None) -> tuple[str, int, str, str]:
    """Seal one envelope into the blob store; returns (blob key, size, sha256 hex, hh hex)."""
    from agent.envelope import seal

    suite = int(agent["suite"])
    recipient = parse_public_keys(json.loads(agent["keys_json"]))
    extensions = {EXT_EXPECTED: json.dumps(expected, sort_keys=True).encode()} if expected else None
    now = now_ms()
    expires = now + ctx.settings.batch_expiry_s * 1000 if ctx.settings.batch_expiry_s else 0
    fd, name = tempfile.mkstemp(prefix="sealed-", dir=ctx.tmp_dir)
    try:
        with os.fdopen(fd, "wb") as dst, ctx.blobs.open(payload_key) as src:
            header = seal(dst, src, info, suite=suite, signer=ctx.signers[suite], recipient_id=agent["agent_id"],
                          recipient=recipient, dataset_id=dataset, batch_seq=seq, prev_hh=bytes.fromhex(prev_hh),
                          kind=kind, schema_version=schema.version, schema_hash=schema_hash(schema, suite),
                          row_count=rows, created_at_ms=now, expires_at_ms=expires, extensions=extensions)
        h = hashlib.sha256()
        with open(name, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        size = os.path.getsize(name)
        key = f"sealed/{dataset}/{seq}/{agent['agent_id']}-{uuid.uuid4().hex[:12]}.edx"
        ctx.blobs.put_file(key, Path(name))
    finally:
        Path(name).unlink(missing_ok=True)
    return key, size, h.hexdigest(), header.hh_hex


def _sealed_row(conn: Any, dataset: str, seq: int, agent_id: str) -> dict[str, Any] | None:
    r = conn.execute(select(sealed).where(sealed.c.dataset == dataset, sealed.c.seq == seq,
                                          sealed.c.agent_id == agent_id)).mappings().first()
    return dict(r) if r else None


def seal_for(ctx: HubContext, agent: dict[str, Any], dataset: str, seq: int) -> dict[str, Any]:
    """The batch ``seq`` sealed for ``agent``, sealing it now if needed (the chain must allow it)."""
    with ctx.engine.connect() as conn:
        existing = _sealed_row(conn, dataset, seq, agent["agent_id"])
        if existing:
            return existing
        b = conn.execute(select(batches).where(batches.c.dataset == dataset, batches.c.seq == seq)).mappings().first()
        if b is None:
            raise BatchUnknown(f"{dataset} #{seq}")
        prev = _sealed_row(conn, dataset, seq - 1, agent["agent_id"]) if seq > 1 else None
        schema = catalog.schema_for(conn, dataset, b["schema_version"])
    if prev is None and b["kind"] != "snapshot":
        raise BatchUnknown(f"{dataset} #{seq}: a changes batch needs #{seq - 1} first")
    payload_key, info = _suite_payload(ctx, dataset, seq, int(agent["suite"]))
    expected = json.loads(b["expected_json"]) if b["expected_json"] else None
    key, size, sha, hh = _seal_to_blob(ctx, agent, payload_key=payload_key, info=info, dataset=dataset, seq=seq,
                                       prev_hh=prev["hh"] if prev else ZERO_HH, kind=b["kind"], schema=schema,
                                       rows=b["rows"], expected=expected)
    row = {"dataset": dataset, "seq": seq, "agent_id": agent["agent_id"], "kind": b["kind"], "rows": b["rows"],
           "blob_key": key, "size": size, "sha256": sha, "hh": hh, "prev_hh": prev["hh"] if prev else ZERO_HH,
           "resync": False, "created_at_ms": now_ms(), "checksum_mismatch": False,
           "expected_json": b["expected_json"]}
    with ctx.engine.begin() as conn:
        won = insert_ignore(conn, sealed, row)
        if not won:
            ctx.blobs.delete(key)
            existing = _sealed_row(conn, dataset, seq, agent["agent_id"])
            assert existing is not None
            return existing
    return row


def seal_new_batch(ctx: HubContext, dataset: str, seq: int) -> int:
    """Eager sealing after publish, for every active agent of a granted unit that follows the chain."""
    from .grants import effective_state

    with ctx.engine.connect() as conn:
        b = conn.execute(select(batches.c.kind).where(batches.c.dataset == dataset, batches.c.seq == seq)).one()
        q = (select(agents, grants.c.state.label("g_state"), grants.c.start_ms, grants.c.end_ms)
             .join(grants, and_(grants.c.unit == agents.c.unit, grants.c.dataset == dataset))
             .where(agents.c.state == "active"))
        candidates = []
        for r in conn.execute(q).mappings():
            g = {"state": r["g_state"], "start_ms": r["start_ms"], "end_ms": r["end_ms"]}
            if effective_state(g) != "active":
                continue
            follows = _sealed_row(conn, dataset, seq - 1, r["agent_id"]) is not None
            if b.kind == "snapshot" or follows:
                candidates.append(dict(r))
    for agent in candidates:
        seal_for(ctx, agent, dataset, seq)
    return len(candidates)


def descriptor(row: dict[str, Any], created_at_ms: int | None = None) -> dict[str, Any]:
    return {"dataset": row["dataset"], "seq": row["seq"], "kind": row["kind"], "size": row["size"],
            "sha256": row["sha256"], "rows": row["rows"], "hh": row["hh"], "prev_hh": row["prev_hh"],
            "resync": bool(row["resync"]), "created_at": created_at_ms or row["created_at_ms"]}


def drop_sealed(ctx: HubContext, agent_id: str, dataset: str, from_seq: int) -> int:
    """Forget this agent's sealed envelopes from ``from_seq`` on; the next listing re-seals them (补传)."""
    with ctx.engine.begin() as conn:
        rows = conn.execute(select(sealed.c.blob_key).where(
            sealed.c.agent_id == agent_id, sealed.c.dataset == dataset, sealed.c.seq >= from_seq)).all()
        conn.execute(delete(sealed).where(sealed.c.agent_id == agent_id, sealed.c.dataset == dataset,
                                          sealed.c.seq >= from_seq))
    for r in rows:
        if r.blob_key:   # "" once hub/gc.py collected the envelope
            ctx.blobs.delete(r.blob_key)
    return len(rows)
