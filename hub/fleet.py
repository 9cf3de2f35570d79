"""The fleet view's model: each agent's state, and per dataset its lag and freshness against the declared interval.

States (docs/protocol.md §Fleet): Revoked, Disabled, Never seen (enrolled, no heartbeat yet), Offline (no
heartbeat for ``offline_after_beats`` intervals), Degraded (beating, but a dataset reports an error, is
stale, or an ack's checksum disagreed with the hub's figure), Online.

Freshness compares the unit's copy with the hub: a dataset is *fresh* when the agent has applied the
latest batch, or when the oldest batch it still lacks was published less than one declared update
interval (更新时限) ago; otherwise it is *stale* and the lag in seconds is shown. All of it is computed on
request from the store: nothing here is cached between requests or instances.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from sqlalchemy import Connection, func, select

from .context import HubContext
from .grants import effective_state
from .store import agents, batches, datasets, grants, now_ms, sealed

STATES = ("Online", "Degraded", "Offline", "Never seen", "Disabled", "Revoked")


def _dataset_facts(conn: Connection) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, int], int]]:
    ds = {r["name"]: dict(r) for r in conn.execute(select(
        datasets.c.name, datasets.c.title, datasets.c.latest_seq, datasets.c.update_interval_s,
        datasets.c.state_rows)).mappings()}
    created = {(r.dataset, r.seq): r.created_at_ms for r in conn.execute(
        select(batches.c.dataset, batches.c.seq, batches.c.created_at_ms))}
    return ds, created


def _as_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def agent_view(agent: dict[str, Any], granted: list[str], ds: dict[str, dict[str, Any]],
               created: dict[tuple[str, int], int], mismatches: int, now: int, interval_s: int,
               offline_beats: int) -> dict[str, Any]:
    beat = json.loads(agent["heartbeat_json"]) if agent.get("heartbeat_json") else {}
    reported = {d.get("dataset"): d for d in beat.get("datasets") or [] if isinstance(d, dict)}
    rows = []
    for name in granted:
        facts = ds.get(name)
        if facts is None:
            continue
        st = reported.get(name, {})
        last = _as_int(st.get("last_seq")) or 0
        latest = facts["latest_seq"]
        lag_batches = max(0, latest - last)
        lag_s = 0
        if lag_batches:
            oldest_missing = created.get((name, last + 1)) or created.get((name, latest))
            lag_s = max(0, (now - oldest_missing) // 1000) if oldest_missing else 0
        fresh = lag_batches == 0 or lag_s <= facts["update_interval_s"]
        err = st.get("last_error") if isinstance(st.get("last_error"), dict) else None
        rows.append({
            "dataset": name, "title": facts["title"], "latest_seq": latest, "last_seq": last,
            "lag_batches": lag_batches, "lag_s": lag_s, "update_interval_s": facts["update_interval_s"],
            "freshness": "fresh" if fresh else "stale", "agent_freshness": st.get("freshness"),
            "state": st.get("state"), "rows_total": st.get("rows_total"),
            "last_applied_at": st.get("last_applied_at"), "progress": st.get("progress"),
            "last_error": {"code": str(err.get("code", ""))[:100], "message": str(err.get("message", ""))[:500]}
            if err else None,
        })
    if agent["state"] == "revoked":
        state = "Revoked"
    elif agent["state"] == "disabled":
        state = "Disabled"
    elif not agent.get("last_seen_ms"):
        state = "Never seen"
    elif now - agent["last_seen_ms"] > interval_s * offline_beats * 1000:
        state = "Offline"
    elif mismatches or any(r["last_error"] or r["freshness"] == "stale" for r in rows):
        state = "Degraded"
    else:
        state = "Online"
    errors = [r["last_error"]["code"] for r in rows if r["last_error"]]
    return {
        "agent_id": agent["agent_id"], "unit": agent["unit"], "hostname": agent["hostname"],
        "version": agent["agent_version"], "state": state, "enrolled_at_ms": agent["enrolled_at_ms"],
        "last_seen_ms": agent.get("last_seen_ms"), "heartbeats": agent["heartbeats"],
        "config_digest": beat.get("config_digest"), "uptime_s": beat.get("uptime_s"),
        "disk": beat.get("disk") or {}, "certs": beat.get("certs") or {},
        # the agent's clock when it sent its last beat, against ours when we stored it
        "clock_skew_ms": (beat["clock_ms"] - agent["last_seen_ms"]) if isinstance(beat.get("clock_ms"), int)
        and agent.get("last_seen_ms") else None,
        "last_error_code": errors[0] if errors else None, "checksum_mismatches": mismatches,
        "datasets": rows,
    }


def fleet(ctx: HubContext, agent_id: str | None = None) -> dict[str, Any]:
    """The whole fleet (or one agent) as JSON-safe data: what /fleet renders and /admin/v1/fleet returns."""
    now = now_ms()
    with ctx.engine.connect() as conn:
        ds, created = _dataset_facts(conn)
        q = select(agents).order_by(agents.c.unit, agents.c.agent_id)
        if agent_id is not None:
            q = q.where(agents.c.agent_id == agent_id)
        agent_rows = [dict(r) for r in conn.execute(q).mappings()]
        granted: dict[str, list[str]] = {}
        for g in conn.execute(select(grants)).mappings():
            if effective_state(g, now) == "active":
                granted.setdefault(g["unit"], []).append(g["dataset"])
        mism = dict(conn.execute(select(sealed.c.agent_id, func.count()).where(
            sealed.c.checksum_mismatch.is_(True)).group_by(sealed.c.agent_id)).all())
    views = [agent_view(a, sorted(granted.get(a["unit"], [])), ds, created, mism.get(a["agent_id"], 0), now,
                        ctx.settings.heartbeat_interval_s, ctx.settings.offline_after_beats) for a in agent_rows]
    counts = Counter(v["state"] for v in views)
    return {"generated_at_ms": now, "heartbeat_interval_s": ctx.settings.heartbeat_interval_s,
            "offline_after_beats": ctx.settings.offline_after_beats,
            "summary": {s: counts.get(s, 0) for s in STATES}, "agents": views,
            "datasets": [{"name": n, "title": d["title"], "latest_seq": d["latest_seq"], "rows": d["state_rows"],
                          "update_interval_s": d["update_interval_s"]} for n, d in sorted(ds.items())]}
