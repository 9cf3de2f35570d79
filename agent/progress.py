"""Live progress of the batch being applied: rows done of total and rows per second.

The connector reads the decrypted payload through ``PayloadSource``; every block it pulls is counted here.
Rows done are estimated from the payload bytes read (``rows_total`` x bytes read / payload length, the
length being signed in the envelope header), since MySQL's and PostgreSQL's bulk paths stream bytes and
never see rows one by one. Written by the applying thread, read by ``status``, ``/readyz`` and
``/metrics`` from others: plain attribute reads, no lock (a reading may be one block old).
"""

from __future__ import annotations

import time
from typing import Any


class ApplyProgress:
    __slots__ = ("dataset", "seq", "kind", "rows_total", "bytes_total", "bytes_done", "started", "phase")

    def __init__(self, dataset: str, seq: int, kind: str, rows_total: int, bytes_total: int) -> None:
        self.dataset, self.seq, self.kind = dataset, seq, kind
        self.rows_total, self.bytes_total = rows_total, max(bytes_total, 1)
        self.bytes_done = 0
        self.started = time.monotonic()
        self.phase = "load"          # load: rows stream in; then "finish": merge/swap, checksum, commit

    def advance(self, nbytes: int) -> None:
        self.bytes_done += nbytes
        if self.bytes_done >= self.bytes_total:
            self.phase = "finish"

    def snapshot(self) -> dict[str, Any]:
        elapsed = max(time.monotonic() - self.started, 1e-6)
        frac = min(self.bytes_done / self.bytes_total, 1.0)
        done = int(self.rows_total * frac)
        rate = done / elapsed
        eta = (self.rows_total - done) / rate if rate > 0 and self.phase == "load" else None
        return {"seq": self.seq, "kind": self.kind, "phase": self.phase, "rows_done": done,
                "rows_total": self.rows_total, "rows_per_s": round(rate, 1), "elapsed_s": round(elapsed, 1),
                "eta_s": None if eta is None else round(eta, 1)}


def describe(p: dict[str, Any]) -> str:
    """One line for people: 'seq 12 snapshot: 41,000 / 100,000 rows (41 %), 20,500 rows/s, ~3 s left'."""
    from .i18n import _
    total = p.get("rows_total") or 0
    text = _("seq {seq} {kind}: {done} / {total} rows").format(
        seq=p["seq"], kind=p["kind"], done=f"{p['rows_done']:,}", total=f"{total:,}")
    if total:
        text += f" ({100 * p['rows_done'] // total} %)"
    text += ", " + _("{rate} rows/s").format(rate=f"{p['rows_per_s']:,.0f}")
    if p.get("phase") == "finish":
        return text + ", " + _("merging, reconciling and committing")
    if p.get("eta_s") is not None:
        text += ", " + _("about {s} s left").format(s=f"{p['eta_s']:.0f}")
    return text


__all__ = ["ApplyProgress", "describe"]
