"""Garbage collection of the blobs no agent can be sent again: what a later snapshot superseded.

A listing never goes back before a dataset's latest snapshot (hub/delivery.py: a cursor older than the
snapshot starts at the snapshot, a new agent starts there, a resync seals the current state afresh), so
once a snapshot #S is published, the compressed payloads of #1…#S-1 (every suite) and the envelopes
sealed from them for each agent are dead weight: with thousands of agents the sealed copies are most of
the hub's disk. ``collect`` deletes them once the snapshot is older than a grace period (default 24 h,
so an agent that listed just before the snapshot can still download what it was offered).

What stays: every batch's row (``hub_batches``: lineage, counts, the figure) and every sealed envelope's
row (``hub_sealed``: digest, header hash, ack and receipt: the delivery record, and the chain a later
sealing links to); a collected envelope's ``blob_key`` is emptied and a download of it answers 410
``batch-superseded``, which sends the agent back to the listing. Rows go first, then the blobs: a crash
in between leaves an unreferenced file, never a row pointing at nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from .context import HubContext
from .store import batches, datasets, now_ms, payloads, sealed

DEFAULT_GRACE_S = 24 * 3600


def collect(ctx: HubContext, *, grace_s: float = DEFAULT_GRACE_S, dry_run: bool = False,
            now: int | None = None) -> dict[str, Any]:
    """Delete superseded payloads and sealed envelopes; returns what was (or, dry run, would be) freed."""
    now = now_ms() if now is None else now
    out: dict[str, Any] = {"datasets": {}, "payloads": 0, "envelopes": 0, "bytes": 0, "dry_run": dry_run}
    with ctx.engine.connect() as conn:
        candidates = conn.execute(
            select(datasets.c.name, datasets.c.latest_snapshot_seq, batches.c.created_at_ms)
            .join(batches, (batches.c.dataset == datasets.c.name) & (batches.c.seq == datasets.c.latest_snapshot_seq))
            .where(datasets.c.latest_snapshot_seq > 1)).all()
    for name, snap, published in candidates:
        if now - published < grace_s * 1000:
            continue
        blobs: list[tuple[str, int | None]] = []
        with ctx.engine.begin() as conn:
            p_rows = conn.execute(select(payloads.c.blob_key).where(
                payloads.c.dataset == name, payloads.c.seq < snap)).all()
            s_rows = conn.execute(select(sealed.c.blob_key, sealed.c.size).where(
                sealed.c.dataset == name, sealed.c.seq < snap, sealed.c.blob_key != "")).all()
            if not dry_run:
                conn.execute(delete(payloads).where(payloads.c.dataset == name, payloads.c.seq < snap))
                conn.execute(update(sealed).where(sealed.c.dataset == name, sealed.c.seq < snap,
                                                  sealed.c.blob_key != "").values(blob_key=""))
        blobs += [(r.blob_key, None) for r in p_rows] + [(r.blob_key, int(r.size)) for r in s_rows]
        freed = 0
        for key, size in blobs:
            if size is None:
                try:
                    size = ctx.blobs.size(key)
                except OSError:
                    size = 0
            freed += size
            if not dry_run:
                ctx.blobs.delete(key)
        if blobs:
            out["datasets"][name] = {"before_snapshot": snap, "payloads": len(p_rows), "envelopes": len(s_rows),
                                     "bytes": freed}
            out["payloads"] += len(p_rows)
            out["envelopes"] += len(s_rows)
            out["bytes"] += freed
    return out
