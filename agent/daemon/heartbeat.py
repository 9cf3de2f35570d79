"""Heartbeats to the hub and the commands its answers carry: resync, doctor, diagnostics.

The body follows docs/protocol.md: version, host, config digest, uptime, per-dataset status with
freshness, spool disk headroom, certificate expiry, the local clock, plus the head of the audit log
so that the platform holds a copy of it off this machine (records cut from the end of the local log
are then detectable with ``audit verify --expect-head``). Each command is executed, audited, and its
outcome reported with POST /v1/commands/{id}/result; a failure to run one never stops the others.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
from typing import Any

import structlog

from .. import __version__
from ..errors import AgentError

log = structlog.get_logger(__name__)


def cert_expiry(path: str) -> dict[str, Any]:
    """Days left on the earliest-expiring certificate of a PEM bundle (the platform CA)."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(open(path, "rb").read())
    except (OSError, ValueError) as e:
        return {"file": path, "error": str(e)[:200]}
    first = min(certs, key=lambda c: c.not_valid_after_utc)
    left = first.not_valid_after_utc - dt.datetime.now(dt.timezone.utc)
    return {"file": path, "subject": first.subject.rfc4514_string()[:200],
            "not_after": first.not_valid_after_utc.isoformat(), "days_left": left.days}


def build_body(svc: Any) -> dict[str, Any]:
    snap = svc.snapshot()
    datasets = []
    for d in snap["datasets"]:
        err = d.get("last_error")
        datasets.append({
            "dataset": d["dataset"], "last_seq": d.get("last_seq"), "last_applied_at": d.get("last_applied_at"),
            "rows_total": d.get("rows_total"), "state": d["state"], "freshness": d.get("freshness"),
            "last_error": {"code": err.get("code", ""), "message": str(err.get("message", ""))[:2000]} if err else None,
            "progress": d.get("progress")})
    cfg = svc.cfg
    certs = {"hub_ca": cert_expiry(str(cfg.path(cfg.hub.ca_file)))} if cfg.hub.ca_file else {}
    head = svc.audit.head()
    return {"agent_version": __version__, "hostname": socket.gethostname(), "config_digest": cfg.digest(),
            "uptime_s": snap["uptime_s"], "datasets": datasets, "disk": snap.get("spool") or {},
            "certs": certs, "clock_ms": int(time.time() * 1000),
            "audit_head": {"seq": head["seq"], "hash": head["hash"]} if head else None,
            "hub_backoff": None if snap["hub_up"] is not False else {"since": snap.get("hub_down_since")},
            "maintenance": snap.get("maintenance", False)}


class CommandRunner:
    """Executes the commands of one heartbeat answer and reports each outcome to the hub."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    def dispatch(self, commands: list[dict[str, Any]]) -> None:
        for cmd in commands:
            kind = cmd.get("type")
            if kind in ("resync", "doctor"):
                # both write to the database (doctor probes the privileges with scratch tables):
                # they queue behind the sync loop, never beside it
                self.svc.submit_sync(lambda c=cmd: self.execute(c), f"command:{cmd.get('id')}")
            else:
                self.svc.submit_default(lambda c=cmd: self.execute(c), f"command:{cmd.get('id')}")

    def execute(self, cmd: dict[str, Any]) -> tuple[bool, str]:
        svc = self.svc
        cid, kind, dataset = str(cmd.get("id")), cmd.get("type"), cmd.get("dataset")
        report: Any = None
        t0 = time.monotonic()
        try:
            handler = getattr(self, f"_do_{kind}", None)
            if handler is None:
                ok, detail = False, f"unsupported: this agent ({__version__}) does not know command type {kind!r}"
            else:
                ok, detail, report = handler(dataset)
        except AgentError as e:
            ok, detail = False, f"[{e.code}] {e}"
        except Exception as e:  # noqa: BLE001 - report any failure to the platform instead of dying
            log.exception("command_internal_error", command=cid, type=kind)
            ok, detail = False, f"internal error: {type(e).__name__}: {e}"
        seconds = round(time.monotonic() - t0, 3)
        svc.metrics.commands.labels(str(kind), "ok" if ok else "failed").inc()
        svc.audit_record("hub_command", outcome="ok" if ok else "failed", command_id=cid, type=kind,
                         dataset=dataset, detail_text=detail[:500], seconds=seconds)
        log.info("command_executed", command=cid, type=kind, dataset=dataset, ok=ok, seconds=seconds)
        try:
            svc.hub_client().command_result(cid, ok, detail[:10000], report)
        except AgentError as e:
            log.warning("command_result_not_delivered", command=cid, code=e.code, error=str(e))
        return ok, detail

    def _do_resync(self, dataset: str | None) -> tuple[bool, str, Any]:
        if not dataset:
            return False, "resync needs a dataset", None
        svc = self.svc
        runner = svc.runners.get(dataset)
        if runner is None:
            return False, f"{dataset} is not granted to this unit (or not synced by this agent)", None
        svc.ctx.client.resync(dataset)
        svc.audit_record("resync_requested", dataset=dataset, via_command=True)
        outcomes = svc.sync.run(runner, reason="resync")
        if runner.state != "ok":
            err = runner.error
            return False, f"resync requested; sync failed: [{err.code}] {err}" if err else "sync failed", None
        svc.resume(dataset, "resync command")
        applied = [o for o in outcomes if not o.duplicate]
        report = {"batches": len(applied), "rows": sum(o.rows for o in applied),
                  "snapshot_applied": any(o.kind == "snapshot" for o in applied)}
        detail = (f"resync requested; {len(applied)} batch(es), {report['rows']} rows applied"
                  + ("" if report["snapshot_applied"] else "; the snapshot follows when the platform has built it"))
        return True, detail, report

    def _do_doctor(self, dataset: str | None) -> tuple[bool, str, Any]:
        try:
            from ..cli.doctor_cmd import run_doctor
        except ImportError:
            return False, "unsupported: this agent build has no doctor", None
        report = run_doctor(self.svc.cfg)
        doc = report.to_dict() if hasattr(report, "to_dict") else report
        ok = bool(getattr(report, "ok", doc.get("ok") if isinstance(doc, dict) else False))
        return ok, "doctor: all checks passed" if ok else "doctor: some checks failed (see report)", doc

    def _do_diagnostics(self, dataset: str | None) -> tuple[bool, str, Any]:
        from ..diagnostics import build_bundle

        svc = self.svc
        data = build_bundle(svc.cfg, status=svc.snapshot(), log_lines=svc.recent_log_lines())
        stored = svc.hub_client().upload_diagnostics(data)
        return True, f"diagnostics bundle uploaded ({len(data)} bytes, redacted)", {"bytes": len(data),
                                                                                   "stored": stored}
