"""``edx-agent status``: per-dataset state: last batch, rows, freshness, last error with its code.

The state directory gives what was applied; when the daemon runs, its local /status endpoint adds what it
is doing now (the batch being applied: rows done of total, rows/s, time left).
"""

from __future__ import annotations

import json
from typing import Any

from ..config import load
from ..i18n import _
from ..progress import describe
from ..state import StateDir


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="show the sync status of each dataset")
    p.set_defaults(func=run)


def collect(cfg: Any) -> dict[str, Any]:
    state = StateDir(cfg.state_dir)
    doc: dict[str, Any] = {"enrolled": state.is_enrolled(), "datasets": []}
    if doc["enrolled"]:
        enr = state.enrolment()
        doc.update(agent_id=enr.agent_id, unit=enr.unit, hub=enr.hub_url)
    st = state.status().get("datasets", {})
    grants = {g["dataset"]: g for g in state.grants()}
    live = daemon_status(cfg)
    doc["daemon"] = {"running": live is not None}
    running = {d["dataset"]: d for d in (live or {}).get("datasets", [])}
    for name in sorted(set(grants) | set(st)):
        entry = {"dataset": name, "table": cfg.table_for(name),
                 "grant": grants.get(name, {}).get("state", "unknown"), **st.get(name, {})}
        if (running.get(name) or {}).get("progress"):
            entry["progress"] = running[name]["progress"]
        doc["datasets"].append(entry)
    return doc


def daemon_status(cfg: Any, timeout: float = 1.0) -> dict[str, Any] | None:
    """The running daemon's live status from its health endpoint, or None (not running, or disabled)."""
    if not cfg.health.enabled:
        return None
    import urllib.request
    host, _sep, port = cfg.health.listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/status", timeout=timeout) as r:
            doc = json.loads(r.read())
        return doc if isinstance(doc, dict) else None
    except (OSError, ValueError):
        return None


def run(args: Any) -> int:
    cfg = load(args.config)
    doc = collect(cfg)
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 0
    if not doc["enrolled"]:
        print(_("not enrolled yet: run `edx-agent enrol --token T --hub URL`"))
        return 0
    print(_("agent {agent_id} (unit {unit}) → {hub}").format(agent_id=doc["agent_id"], unit=doc["unit"],
                                                              hub=doc["hub"]))
    if not doc["datasets"]:
        print("  " + _("no datasets granted yet"))
    for d in doc["datasets"]:
        last = d.get("last_batch") or {}
        err = d.get("last_error")
        state = d.get("state") or _("never synced")
        line = (f"  {d['dataset']:<20} table={d['table']:<20} seq={d.get('last_seq', '-')!s:<6} "
                f"rows={d.get('rows_total', 0):<9} state={state}")
        if d.get("last_applied_at"):
            line += f" last={d['last_applied_at']}"
        print(line)
        applying = (d.get("progress") or {}).get("applying")
        if applying:
            print("      " + _("applying now:") + " " + describe(applying))
        if last:
            print("      " + _("last batch #{seq} {kind}: {rows} rows, {quarantined} quarantined, {seconds}s")
                  .format(seq=last.get("seq"), kind=last.get("kind"), rows=last.get("rows"),
                          quarantined=last.get("quarantined", 0), seconds=last.get("seconds")))
        if err:
            print("      " + _("last error") + f" [{err.get('code')}] {err.get('message')}")
            if err.get("remedy"):
                print("      " + _("what to do:") + f" {_(err['remedy'])}")
    return 0
