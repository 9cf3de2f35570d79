"""What the daemon says about itself: the snapshot behind /metrics and heartbeats, /readyz, STATUS=.

Readiness checks real dependencies and gives a reason for each (Vector's hard-coded ``ok``, vector#4249,
is the anti-pattern): the configuration in force, the keys, the hub's last answer, a database round
trip made for the check, the sync loop's progress and the audit log. The database check runs on its
own connection and gives up after a few seconds, so a hung database makes /readyz say so instead of
hanging with it.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

from ..errors import AgentError

PROBE_TIMEOUT = 5.0
SPOOL_CACHE_S = 10.0


def parse_ts(value: Any) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return None


def freshness(applied_ts: float | None, declared: Any, grace: float, now: float) -> str:
    """'stale' once the newest data is older than the dataset's declared update interval plus grace."""
    if applied_ts is None:
        return "unknown"
    if declared and now - applied_ts > float(declared) + grace:
        return "stale"
    return "fresh"


class Readiness:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._probe_conn: Any = None
        self._spool: tuple[float, dict[str, Any]] = (0.0, {})

    def reset(self) -> None:
        """Forget the database connection (after a reload the URL may have changed)."""
        if self._probe_conn is not None:
            self._probe_conn.close()
            self._probe_conn = None

    # -- the snapshot
    def spool_usage(self) -> dict[str, Any]:
        at, value = self._spool
        if time.monotonic() - at > SPOOL_CACHE_S and self.svc.ctx is not None:
            try:
                value = self.svc.ctx.spool.usage()
            except OSError as e:
                value = {"error": e.strerror}
            self._spool = (time.monotonic(), value)
        return value

    def snapshot(self) -> dict[str, Any]:
        svc = self.svc
        now = time.time()
        status = svc.ctx.state.status().get("datasets", {}) if svc.ctx is not None else {}
        grace = svc.cfg.sync.freshness_grace if svc.cfg is not None else 0.0
        rows = []
        for name in sorted(set(svc.runners) | set(svc.grants)):
            r, g, st = svc.runners.get(name), svc.grants.get(name, {}), status.get(name, {})
            if r is not None:
                state = r.state
            elif st.get("state") == "purged":
                state = "purged"
            else:
                state = "revoked" if g.get("state") == "revoked" else "disabled"
            applied = parse_ts(st.get("last_applied_at"))
            progress = None
            if r is not None and r.running_since:
                progress = {"running": True, "since_s": round(now - r.running_since, 1),
                            "batches": r.batches_this_run}
                applying = svc.ctx.applying.get(name) if svc.ctx is not None else None
                if applying is not None:
                    progress["applying"] = applying.snapshot()
            rows.append({
                "dataset": name, "state": state, "last_seq": st.get("last_seq"),
                "last_applied_at": st.get("last_applied_at"), "last_applied_ts": applied,
                "rows_total": st.get("rows_total"),
                "last_error": (r.error.to_dict() if r is not None and r.error is not None and  # status.json may
                               (st.get("last_error") or {}).get("code") != r.error.code   # be unwritable
                               else st.get("last_error")),
                "freshness": freshness(applied, g.get("update_interval_s"), grace, now),
                "last_success_ts": r.last_success if r else None, "progress": progress,
                "interval_s": r.interval if r else None, "attempts": r.attempts if r else 0})
        hub = svc.hub
        return {"uptime_s": round(now - svc.started, 1), "hub_up": hub.up, "hub_last_ok": hub.last_ok,
                "hub_down_since": hub.since if hub.up is False else None,
                "config_digest": svc.cfg.digest() if svc.cfg is not None else "",
                "maintenance": self.maintenance(), "datasets": rows, "spool": self.spool_usage()}

    def status_text(self) -> str:
        snap = self.snapshot()
        counts: dict[str, int] = {}
        for d in snap["datasets"]:
            counts[d["state"]] = counts.get(d["state"], 0) + 1
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no datasets granted"
        hub = "hub up" if snap["hub_up"] else ("hub unreachable since " + time.strftime(
            "%H:%M:%S", time.localtime(snap["hub_down_since"])) if snap["hub_up"] is False else "hub not contacted yet")
        stale = sum(1 for d in snap["datasets"] if d["freshness"] == "stale")
        return f"{parts}; {hub}" + (f"; {stale} stale" if stale else "") + (
            "; MAINTENANCE" if snap["maintenance"] else "")

    # -- readiness
    def maintenance(self) -> bool:
        svc = self.svc
        return svc.maintenance or (svc.cfg is not None and (svc.cfg.state_dir / "maintenance").exists())

    def probe_database(self) -> tuple[bool, str]:
        svc = self.svc
        if svc.ctx is None:
            return False, "not connected yet"
        result: list[tuple[bool, str]] = []

        def run() -> None:
            from ..runtime import open_connector
            from .service import probe_database
            t0 = time.monotonic()
            try:
                if self._probe_conn is None:
                    self._probe_conn = open_connector(svc.cfg)
                probe_database(self._probe_conn)
                result.append((True, f"round trip {1000 * (time.monotonic() - t0):.0f} ms"))
            except AgentError as e:
                # a busy database is reachable: the sync loop holds a write lock, that is all
                result.append((e.code == "database-busy", f"[{e.code}] {e}"))
            except Exception as e:  # noqa: BLE001 - the check reports, it never raises
                result.append((False, f"{type(e).__name__}: {e}"))
        t = threading.Thread(target=run, name="readyz-db", daemon=True)
        t.start()
        t.join(PROBE_TIMEOUT)
        return result[0] if result else (False, f"no answer within {PROBE_TIMEOUT:.0f} s")

    def evaluate(self) -> dict[str, Any]:
        svc = self.svc
        now = time.time()
        checks: dict[str, dict[str, Any]] = {}

        def check(name: str, ok: bool, reason: str) -> None:
            checks[name] = {"ok": ok, "reason": reason}

        if svc.cfg is None:
            check("config", False, "not loaded")
        else:
            reason = f"{svc.cfg.digest()} from {svc.cfg.source}"
            if svc.reload_refused:
                reason += f"; a reload was refused ({svc.reload_refused['problems'][0]}), running on this one"
            check("config", True, reason)
        keys = getattr(svc.ctx, "keys", None)
        check("keys", bool(keys), f"{len(keys)} key(s) loaded" if keys else "not loaded yet")
        # three missed heartbeats, as peers count an agent offline (DataSync, Elastic: ~5 min at 60 s)
        window = 3 * svc.cfg.heartbeat.interval + 5.0 if svc.cfg is not None else 30.0
        last = svc.hub.last_ok
        if last is not None and now - last <= window:
            check("hub", True, f"last answer {now - last:.0f} s ago")
        else:
            err = svc.hub.last_error
            why = f"[{err.code}] {err}" if err else "no answer yet"
            ago = f"last answer {now - last:.0f} s ago" if last else "never answered"
            check("hub", False, f"{ago} (window {window:.0f} s): {why}")
        check("database", *self.probe_database())
        stuck = svc.liveness.stuck(svc.opts.stuck_after)
        check("sync_loop", not stuck, f"no progress for {svc.opts.stuck_after:.0f} s: {', '.join(stuck)}"
              if stuck else "making progress")
        ae = svc.audit_error
        check("audit", ae is None, f"[{ae.code}] {ae}" if ae else "writable")
        maintenance = self.maintenance()
        ready = svc.ready and not svc.stopping.is_set() and not maintenance and all(c["ok"] for c in checks.values())
        doc: dict[str, Any] = {"ready": ready, "checks": checks, "maintenance": maintenance}
        if maintenance:
            doc["reason"] = "maintenance mode (SIGUSR1, or the file <state_dir>/maintenance)"
        elif svc.stopping.is_set():
            doc["reason"] = "stopping"
        elif not svc.ready:
            doc["reason"] = "starting"
        return doc
