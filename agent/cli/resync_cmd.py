"""``edx-agent resync DATASET``: ask the platform for a fresh snapshot of a dataset and apply it."""

from __future__ import annotations

import sys
from typing import Any

from .. import audit
from ..config import load
from ..errors import ConfigError
from ..i18n import _
from ..pipeline import sync_dataset
from ..runtime import build_context
from ._live import live_progress


def register(sub: Any) -> None:
    p = sub.add_parser("resync", help="replace a dataset's table with a fresh snapshot from the platform")
    p.add_argument("dataset")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(func=run)


def confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes", "是", "确认")


def run(args: Any) -> int:
    cfg = load(args.config)
    table = cfg.table_for(args.dataset)
    if not args.yes and not confirm(_("Replace every row of table {table} with a fresh snapshot of {dataset}?")
                                    .format(table=table, dataset=args.dataset)):
        raise ConfigError("resync not confirmed", remedy="Answer y, or pass --yes in scripts.")
    ctx = build_context(cfg, audit=audit.for_config(cfg).record)
    try:
        ctx.client.resync(args.dataset)
        ctx.audit("resync_requested", dataset=args.dataset, outcome="ok")
        with live_progress(ctx):
            outcomes = sync_dataset(ctx, {"dataset": args.dataset})
    finally:
        ctx.connector.close()
        ctx.client.close()
    snaps = [o for o in outcomes if o.kind == "snapshot" and not o.duplicate]
    for o in snaps:
        print(_("{dataset}: snapshot #{seq} applied, {rows} rows in {seconds:.2f}s").format(
            dataset=args.dataset, seq=o.seq, rows=o.rows, seconds=o.seconds))
    if not snaps:
        print(_("{dataset}: the platform has not produced the snapshot yet; the next sync applies it")
              .format(dataset=args.dataset))
    return 0
