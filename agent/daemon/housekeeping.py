"""The daemon's periodic chores: freshness, retention (用而不存), spool and audit clean-up, a summary line.

Retention follows the grant's policy from the platform's catalog:

- ``purge_on_revoke``: when the grant is revoked (or ends), the dataset's rows and checkpoint are
  deleted at once, with any sealed batch of it still in the spool;
- ``purge_after_days``: when the newest applied batch is older than N days, the same purge; the
  dataset then stays ``purged`` (not synced) until a resync, so the old data is not fetched again;
- ``keep``: nothing.

Every purge goes to the audit log, the status file, the metrics and the next heartbeat.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import structlog

from ..errors import AgentError
from ..state import now_iso
from .readiness import parse_ts

log = structlog.get_logger(__name__)

REJECTED_KEEP_DAYS = 90
AUDIT_PRUNE_EVERY = 86400.0


class Housekeeping:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.fresh: dict[str, str] = {}
        self.last_summary = time.monotonic()
        self.last_prune = 0.0
        self.stuck_logged: list[str] = []
        self.skew_logged = False
        self.counted = (0.0, 0.0)

    def run(self) -> None:
        """One housekeeping pass (in the sync pool: it uses the database and writes status)."""
        for chore in (self.freshness, self.retention, self.spool_cleanup, self.audit_prune, self.summary,
                      self.trim_memory):
            try:
                chore()
            except AgentError as e:
                log.warning("housekeeping_failed", chore=chore.__name__, code=e.code, error=str(e))

    # -- freshness
    def freshness(self) -> None:
        svc = self.svc
        for d in svc.snapshot()["datasets"]:
            name, now_state = d["dataset"], d["freshness"]
            before = self.fresh.get(name)
            self.fresh[name] = now_state
            if before == now_state:
                continue
            if now_state == "stale":
                log.warning("dataset_stale", dataset=name, last_applied_at=d["last_applied_at"],
                            update_interval_s=svc.grants.get(name, {}).get("update_interval_s"))
            elif before == "stale":
                log.info("dataset_fresh_again", dataset=name)
            if name in svc.runners or before is not None:
                svc.state_write(name, freshness=now_state)

    # -- retention
    def retention(self, revoked_only: bool = False) -> None:
        svc = self.svc
        status = svc.ctx.state.status().get("datasets", {})
        now = time.time()
        for name, g in list(svc.grants.items()):
            policy = (g.get("retention") or {}).get("policy", "keep")
            st = status.get(name, {})
            if st.get("state") == "purged" or policy == "keep":
                continue
            if policy == "purge_on_revoke" and g.get("state") == "revoked":
                if st or self._has_checkpoint(name):
                    self.purge(name, policy, "grant revoked")
            elif policy == "purge_after_days" and not revoked_only:
                days = (g.get("retention") or {}).get("days") or 0
                applied = parse_ts(st.get("last_applied_at"))
                if days and applied and now - applied > days * 86400:
                    self.purge(name, policy, f"newest batch older than {days} days")

    def _has_checkpoint(self, dataset: str) -> bool:
        try:
            return self.svc.ctx.connector.get_checkpoint(dataset) is not None
        except Exception:  # noqa: BLE001 - unknown means "do not purge blindly"; the next pass retries
            return False

    def purge(self, dataset: str, policy: str, reason: str) -> int:
        svc = self.svc
        ctx = svc.ctx
        table = ctx.table_for(dataset)
        try:
            rows = ctx.connector.purge(dataset, table, ctx.schema_name)
        except AgentError as e:
            svc.audit_record("retention_purge", outcome=e.code, dataset=dataset, table=table, policy=policy)
            raise
        except Exception as e:  # noqa: BLE001 - translated at the connector's seam
            err = ctx.connector.classify(e)
            svc.audit_record("retention_purge", outcome=err.code, dataset=dataset, table=table, policy=policy)
            raise err from None
        spooled = ctx.spool.root / dataset
        if spooled.is_dir():
            shutil.rmtree(spooled, ignore_errors=True)   # sealed copies are data kept too
        svc.audit_record("retention_purge", dataset=dataset, table=table, policy=policy, reason=reason, rows=rows)
        svc.metrics.purges.labels(dataset, policy).inc()
        runner = svc.runners.get(dataset)
        if runner is not None:
            svc.sync.set_state(runner, "purged")
            svc.pause(dataset)
        svc.state_write(dataset, state="purged", purged_at=now_iso(), purged_rows=rows,
                        purge_reason=f"{policy}: {reason}", last_seq=None, last_error=None)
        log.warning("dataset_purged", dataset=dataset, table=table, rows=rows, policy=policy, reason=reason)
        return rows

    # -- spool and audit
    def spool_cleanup(self) -> None:
        """Partial downloads of batches already applied, and refused batches kept long enough."""
        ctx = self.svc.ctx
        root = Path(ctx.spool.root)
        if not root.is_dir():
            return
        for part in root.glob("*/*.edx.part"):
            dataset = part.parent.name
            cp = ctx.connector.get_checkpoint(dataset)
            if cp is not None and int(part.name.split(".")[0]) <= cp.seq:
                part.unlink(missing_ok=True)
                log.info("spool_part_removed", dataset=dataset, file=part.name)
        cutoff = time.time() - REJECTED_KEEP_DAYS * 86400
        for f in (root / "rejected").glob("*/*.edx") if (root / "rejected").is_dir() else []:
            if f.stat().st_mtime < cutoff:
                f.unlink(missing_ok=True)
                self.svc.audit_record("spool_rejected_removed", file=f.name, kept_days=REJECTED_KEEP_DAYS)

    def audit_prune(self) -> None:
        if time.monotonic() - self.last_prune < AUDIT_PRUNE_EVERY and self.last_prune:
            return
        self.last_prune = time.monotonic()
        try:
            removed = self.svc.audit.prune()
        except (OSError, AgentError) as e:
            log.warning("audit_prune_failed", error=str(e))
            return
        if removed:
            log.info("audit_files_pruned", files=removed, retention_days=self.svc.audit.retention_days)

    def trim_memory(self) -> None:
        """Give the heap freed since the last pass back to the OS (glibc keeps it otherwise).

        A snapshot's decompression window and buffers are freed after the batch, but glibc's allocator
        holds on to the pages, so an agent that applied one big batch would sit on that peak for good.
        """
        try:
            import ctypes
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):
            pass   # not glibc (musl, macOS): nothing to do

    # -- one line now and then instead of one per attempt
    def summary(self) -> None:
        svc = self.svc
        if time.monotonic() - self.last_summary < svc.opts.summary_every:
            return
        self.last_summary = time.monotonic()
        snap = svc.snapshot()
        states: dict[str, int] = {}
        for d in snap["datasets"]:
            states[d["state"]] = states.get(d["state"], 0) + 1
        batches = sum(s.value for m in svc.metrics.batches.collect() for s in m.samples if s.name.endswith("_total"))
        rows = sum(s.value for m in svc.metrics.rows.collect() for s in m.samples if s.name.endswith("_total"))
        log.info("daemon_summary", states=states, hub_up=snap["hub_up"], hub_failures=svc.hub.failures,
                 batches=int(batches - self.counted[0]), rows=int(rows - self.counted[1]),
                 stale=[d["dataset"] for d in snap["datasets"] if d["freshness"] == "stale"],
                 retrying={d["dataset"]: (d["last_error"] or {}).get("code") for d in snap["datasets"]
                           if d["state"] == "retrying"})
        self.counted = (batches, rows)

    # -- called from the watchdog tick
    def operator_resumes(self) -> None:
        """A stopped dataset whose status an operator's ``edx-agent sync --dataset D`` cleared resumes."""
        svc = self.svc
        stopped = [r for r in svc.runners.values() if r.state == "stopped"]
        if not stopped:
            return
        status = svc.ctx.state.status().get("datasets", {})
        for r in stopped:
            # a status.json the daemon could not update still says "ok" from before the stop: not an operator
            if status.get(r.dataset, {}).get("state") == "ok" and r.dataset not in svc.status_unwritten:
                svc.resume(r.dataset, "cleared by an operator's sync")

    def note_stuck(self, jobs: list[str]) -> None:
        if jobs != self.stuck_logged:
            if jobs:
                log.error("sync_loop_stuck", jobs=jobs, no_progress_s=self.svc.opts.stuck_after,
                          note="watchdog pings stop; systemd restarts the service")
            else:
                log.info("sync_loop_progressing_again", was=self.stuck_logged)
            self.stuck_logged = jobs

    def note_clock_skew(self, seconds: float) -> None:
        bad = abs(seconds) > 60
        if bad and not self.skew_logged:
            log.warning("clock_skew", skew_s=round(seconds, 1),
                        remedy="Enable time synchronisation (chrony/systemd-timesyncd); signatures expire.")
        elif not bad and self.skew_logged:
            log.info("clock_skew_resolved", skew_s=round(seconds, 1))
        self.skew_logged = bad
