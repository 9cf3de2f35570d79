"""``edx-agent sync``: pull and apply every pending batch of every granted dataset, then exit."""

from __future__ import annotations

import json
import time
from typing import Any

from .. import audit
from ..config import load
from ..errors import EXIT_FAILED, AgentError, NotFound
from ..i18n import _
from ..pipeline import BatchOutcome, record_error, sync_dataset
from ..runtime import build_context
from ._live import clear_line, live_progress


def register(sub: Any) -> None:
    p = sub.add_parser("sync", help="pull and apply pending batches once")
    p.add_argument("--once", action="store_true", help="run one pass and exit (the default)")
    p.add_argument("--dataset", action="append", default=[], help="only this dataset (repeatable)")
    p.set_defaults(func=run)


def sync_all(ctx: Any, only: list[str] | None = None, echo: bool = True) -> tuple[list[BatchOutcome], list[tuple[str, AgentError]]]:
    """One pass over the granted datasets; a failing dataset does not stop the others."""
    grants = ctx.client.grants()
    ctx.state.save_grants(grants)
    active = [g for g in grants if g.get("state", "active") == "active"]
    if only:
        names = {g["dataset"] for g in active}
        missing = [d for d in only if d not in names]
        if missing:
            raise NotFound(", ".join(missing) + " (not granted to this unit)")
        active = [g for g in active if g["dataset"] in only]
    outcomes: list[BatchOutcome] = []
    errors: list[tuple[str, AgentError]] = []

    def show(o: BatchOutcome) -> None:
        if echo:
            clear_line()
        if echo and not o.duplicate:
            print("  " + _("{dataset} #{seq} {kind}: {rows} rows (+{inserted} ~{updated} -{deleted} "
                           "quarantined {quarantined}) in {seconds:.2f}s").format(
                dataset=o.dataset, seq=o.seq, kind=o.kind, rows=o.rows, inserted=o.inserted,
                updated=o.updated, deleted=o.deleted, quarantined=o.quarantined, seconds=o.seconds))
        elif echo:
            print("  " + _("{dataset} #{seq}: already applied, acknowledged again").format(
                dataset=o.dataset, seq=o.seq))

    for g in active:
        try:
            outcomes += sync_dataset(ctx, g, progress=show)
            if ctx.state.status().get("datasets", {}).get(g["dataset"], {}).get("state", "ok") != "ok":
                # a clean pass clears an earlier error, so status (and a running daemon) see it fixed
                ctx.state.update_status(g["dataset"], state="ok", last_error=None)
        except AgentError as e:
            record_error(ctx, g["dataset"], e)
            errors.append((g["dataset"], e))
    return outcomes, errors


def run(args: Any) -> int:
    cfg = load(args.config)
    log = audit.for_config(cfg)
    ctx = build_context(cfg, audit=log.record)
    t0 = time.monotonic()
    try:
        with audit.correlation(), log.action("sync", datasets=args.dataset or "all") as extra:
            with live_progress(ctx):
                outcomes, errors = sync_all(ctx, args.dataset, echo=not args.json)
            extra.update(batches=sum(1 for o in outcomes if not o.duplicate),
                         failed={d: e.code for d, e in errors})
    finally:
        ctx.connector.close()
        ctx.client.close()
    applied = [o for o in outcomes if not o.duplicate]
    if args.json:
        print(json.dumps({"ok": not errors, "batches": len(applied),
                          "rows": sum(o.rows for o in applied),
                          "errors": [{"dataset": d, **e.to_dict()} for d, e in errors]}, ensure_ascii=False))
    else:
        print(_("applied {batches} batch(es), {rows} rows in {seconds:.2f}s").format(
            batches=len(applied), rows=sum(o.rows for o in applied), seconds=time.monotonic() - t0))
        for d, e in errors:
            print(f"  ✗ {d}: [{e.code}] {e}")
            if e.remedy_text:
                print("    " + _("what to do:") + f" {e.remedy_text}")
    if errors:
        return max(e.exit_code for _, e in errors) or EXIT_FAILED
    return 0
