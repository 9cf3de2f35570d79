"""Where the time of one edx-agent end-to-end run goes: py-spy samples of the worker, summed into buckets.

py-spy samples every thread (``--idle`` too, so a thread blocked on the database is seen waiting) and writes
collapsed stacks; each sample of the main thread is put in the first bucket (in the order of BUCKETS) with a
marker in its stack, and the feeder thread of the MariaDB FIFO is reported on its own line.
The raw stacks are kept in docs/perf/profile-<db>-<kind>.txt for a flame graph (e.g. inferno, speedscope).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import Counter
from pathlib import Path
from typing import Any

# (bucket, markers): the first bucket with a marker anywhere in the sample's stack wins, in this order
BUCKETS = [
    ("pass 1: verify every chunk", ("verify_stream",)),
    ("pass 2: decrypt (AES-GCM)", ("_Chunks.next",)),
    ("pass 2: decompress (zstd)", ("PayloadStream.readinto",)),
    ("reconciliation read-back checksum", ("._checksum (", "._checksum_committed", "checksum_rows", "table_checksum")),
    ("merge (dedup, counts, delete, upsert)", ("._merge", "._dedup", "_quarantine_nulls")),
    ("bulk load (server parsing; client waits)", ("._bulk_load", "._load_python", "load_rows", "._finish_shadow")),
    ("swap, lineage, checkpoint, commit", ("._swap", "_finish_batch", "write_lineage", "write_checkpoint",
                                           "write_schema", ".commit", "_reconcile_only")),
    ("DDL, checkpoint read, session checks", ("._create_", "._evolve", "_read_cp", "read_checkpoint",
                                              "_session_checks", "get_checkpoint", "lineage_digest",
                                              "ensure_meta", "_table_exists", "_check_seq")),
    ("header, signature, key unwrap", ("read_header", "check_context", "_unwrap")),
]


def summarise(raw: Path) -> dict[str, Any]:
    """Bucketed sample counts of the main thread, and of other threads, from py-spy's raw output."""
    main: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    inner: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        frames = stack.split(";")
        if "feed (connectors/mysql.py" in stack:
            threads["FIFO feeder thread: " + _bucket(frames)] += count
            continue
        if "apply_file" not in stack:
            continue
        total += count
        main[_bucket(frames)] += count
        inner[frames[-1].split(" (")[0][:60]] += count
    return {"samples": total, "main": dict(main.most_common()), "threads": dict(threads.most_common()),
            "innermost": dict(inner.most_common(12))}


def _bucket(frames: list[str]) -> str:
    stack = ";".join(frames)
    for name, markers in BUCKETS:
        if any(m in stack for m in markers):
            return name
    return "other"


def py_spy() -> str | None:
    """py-spy on PATH, or beside this interpreter (a virtualenv run without activating it)."""
    return shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))


def profile_all(args: Any, work: Path, log: Any) -> dict[str, Any]:
    """One py-spy-profiled edx-agent run per database and kind of the comparison cases."""
    from bench import _e2e_data, bench_e2e

    if py_spy() is None:
        log("py-spy not found (pip install -r bench/requirements.txt): no profiles")
        return {}
    out: dict[str, Any] = {}
    for db in args.dbs.split(","):
        for kind in args.kinds.split(","):
            base = args.rows if kind == "changes" else None
            snap = _e2e_data.snapshot(args.data, base or args.rows)
            chg = _e2e_data.changes(args.data, args.rows, args.changes) if kind == "changes" else None
            meta = json.loads(((chg or snap) / "meta.json").read_text())
            base_meta = json.loads((snap / "meta.json").read_text())
            case = _e2e_data.case_dir(work, db, snap, chg)
            raw = bench_e2e.PERF / f"profile-{db}-{kind}.txt"
            bench_e2e.PERF.mkdir(parents=True, exist_ok=True)
            res = bench_e2e.run_once("agent-e2e", db, kind, case, meta, base_meta, profile=raw)
            if not raw.exists():
                log(f"profile {db} {kind}: py-spy wrote nothing ({res.get('error', '')})")
                continue
            s = summarise(raw)
            s["wall"] = res.get("wall")
            s["verified"] = res.get("verified")
            out[f"{db}/{kind}"] = s
            log(f"profile {db} {kind}: " + ", ".join(f"{k} {v * 100 / max(s['samples'], 1):.0f}%"
                                                      for k, v in s["main"].items()))
    return out
