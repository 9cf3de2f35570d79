"""Inputs of the end-to-end benchmark: student payloads, their sealed envelopes and the expected end states.

Rows come from bench/gen_student.py (the connectors benchmark's generator); this module only arranges them
the way bench_e2e.py needs: a snapshot of N rows and a change batch of C records over a table of B rows,
each as a payload file (manifest + CSV, what a connector reads after decryption), a bare CSV (what the
databases' CLIs load) and an envelope sealed with the envelope API under fixed test keys (what the agent
finds in its spool). Expected end states are checksums computed the way ``agent.payload.Checksum`` does;
the state after a change batch is derived from the snapshot's figure (minus the old rows of the touched
keys, plus the new ones), so a 5M-row base never has to be held in memory.

Files are made once per size under the data directory and reused by later runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from agent import envelope
from agent.payload import Checksum, row_hash, write_payload
from agent.reconcile import expected_checksum
from bench.gen_student import SCHEMA, change_records, row, snapshot_rows

DATASET = "student"
_MASK64 = (1 << 64) - 1
CREATED_MS = 1_760_000_000_000
EXT_EXPECTED = 0x81  # the hub's header extension with the expected reconciliation figure (hub/sealing.py)


def keys(data: Path) -> tuple[Any, Any]:
    """(platform signer, agent keys), INTL-1, generated once and kept in ``data/keys.json``."""
    path = data / "keys.json"
    if not path.exists():
        data.mkdir(parents=True, exist_ok=True)
        signer = envelope.generate_signer_key(envelope.Suite.INTL1)
        agent = envelope.generate_agent_keys(envelope.Suite.INTL1)
        path.write_text(json.dumps({"signer": signer.to_dict(), "agent": agent.to_dict()}))
    doc = json.loads(path.read_text())
    return envelope.SignerKey.from_dict(doc["signer"]), envelope.AgentKeys.from_dict(doc["agent"])


def _split_csv(payload: Path, csv: Path) -> None:
    with open(payload, "rb") as src, open(csv, "wb") as dst:
        src.readline()
        while chunk := src.read(1 << 20):
            dst.write(chunk)


def _seal(data: Path, payload: Path, out: Path, *, kind: str, seq: int, prev_hh: bytes, rows: int,
          expected: dict[str, Any]) -> str:
    signer, agent = keys(data)
    comp = out.with_suffix(".zst")
    with open(payload, "rb") as src, open(comp, "wb") as dst:
        info = envelope.compress_payload(src, dst, envelope.Suite.INTL1)
    with open(comp, "rb") as src, open(out, "wb") as dst:
        h = envelope.seal(dst, src, info, suite=envelope.Suite.INTL1, signer=signer, recipient_id="bench-agent",
                          recipient=agent.public(), dataset_id=DATASET, batch_seq=seq, prev_hh=prev_hh, kind=kind,
                          schema_version=SCHEMA.version, schema_hash=SCHEMA.digest(envelope.get_provider(envelope.Suite.INTL1).hash),
                          row_count=rows, created_at_ms=CREATED_MS,
                          extensions={EXT_EXPECTED: json.dumps(expected, sort_keys=True).encode()})
    comp.unlink()
    return h.hh_hex


def snapshot(data: Path, n: int) -> Path:
    """``data/snap-N``: snapshot.payload/.csv/.edx (seq 1) and meta.json (expected checksum, hh)."""
    d = data / f"snap-{n}"
    meta = d / "meta.json"
    if meta.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "snapshot.payload", "wb", buffering=1 << 20) as f:
        ck = write_payload(f, DATASET, "snapshot", SCHEMA, (("I", r) for r in snapshot_rows(n)), n)
    _split_csv(d / "snapshot.payload", d / "snapshot.csv")
    expected = {**ck.to_dict(), "deleted": 0}
    hh = _seal(data, d / "snapshot.payload", d / "snapshot.edx", kind="snapshot", seq=1,
               prev_hh=envelope.ZERO_HH, rows=n, expected=expected)
    meta.write_text(json.dumps({"rows": n, "expected": ck.to_dict(), "figure": expected, "hh": hh,
                                "bytes": os.path.getsize(d / "snapshot.payload"),
                                "sealed_bytes": os.path.getsize(d / "snapshot.edx")}, indent=1))
    return d


def changes(data: Path, base: int, c: int) -> Path:
    """``data/chg-B-C``: a change batch of C records (70/20/10) over the B-row snapshot, sealed as seq 2."""
    d = data / f"chg-{base}-{c}"
    meta = d / "meta.json"
    if meta.exists():
        return d
    snap = json.loads((snapshot(data, base) / "meta.json").read_text())
    d.mkdir(parents=True, exist_ok=True)
    recs = change_records(c, base)
    with open(d / "changes.payload", "wb", buffering=1 << 20) as f:
        write_payload(f, DATASET, "changes", SCHEMA, recs, len(recs))
    _split_csv(d / "changes.payload", d / "changes.csv")
    # the table after the batch = the snapshot - old versions of touched keys + new versions of upserted keys
    count, total = snap["expected"]["rows"], int(snap["expected"]["sum64"], 16)
    for op, fields in recs:
        i = int(fields[0][1:]) - 2010000000
        if i < base:
            count -= 1
            total -= row_hash(row(i))
        if op != "D":
            count += 1
            total += row_hash(fields)
    after = Checksum(count, total & _MASK64)
    figure = expected_checksum("changes", SCHEMA, recs)
    hh = _seal(data, d / "changes.payload", d / "changes.edx", kind="changes", seq=2,
               prev_hh=bytes.fromhex(snap["hh"]), rows=len(recs), expected=figure)
    meta.write_text(json.dumps({"rows": len(recs), "base": base, "expected": after.to_dict(), "figure": figure,
                                "hh": hh, "base_hh": snap["hh"],
                                "bytes": os.path.getsize(d / "changes.payload"),
                                "sealed_bytes": os.path.getsize(d / "changes.edx")}, indent=1))
    return d


def case_dir(work: Path, db: str, snap: Path, chg: Path | None) -> Path:
    """A directory laid out as bench_connectors expects ({kind}.payload, {kind}.csv, bench.db for SQLite)."""
    d = work / db
    d.mkdir(parents=True, exist_ok=True)
    links = {f"snapshot.{ext}": snap / f"snapshot.{ext}" for ext in ("payload", "csv", "edx")}
    if chg is not None:
        links.update({f"changes.{ext}": chg / f"changes.{ext}" for ext in ("payload", "csv", "edx")})
    for name in ("snapshot.payload", "snapshot.csv", "snapshot.edx", "changes.payload", "changes.csv",
                 "changes.edx"):
        p = d / name
        if p.is_symlink() or p.exists():
            p.unlink()
        if name in links:
            p.symlink_to(links[name])
    return d
