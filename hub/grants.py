"""Grants: which unit may receive which dataset, from when until when (the outcome of 申请 → 审批).

A grant is per (unit, dataset); granting again re-activates a revoked grant. A 不予共享 dataset can
never be granted. Revoking stops delivery at once; the agent sees ``state: "revoked"`` in /v1/grants
and applies the dataset's retention policy. A grant past its end date counts as revoked.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert, select, update

from .catalog import get_dataset
from .errors import GrantMissing, GrantRevoked, NotShareable
from .store import datasets, grants, now_ms


def add_grant(conn: Connection, unit: str, dataset: str, *, start_ms: int | None = None,
              end_ms: int | None = None) -> dict[str, Any]:
    info = get_dataset(conn, dataset)
    if info.sharing == "不予共享":
        raise NotShareable(repr(dataset))
    now = now_ms()
    values = {"state": "active", "start_ms": start_ms if start_ms is not None else now,
              "end_ms": end_ms, "revoked_at_ms": None}
    existing = conn.execute(select(grants.c.id).where(grants.c.unit == unit, grants.c.dataset == dataset)).first()
    if existing:
        conn.execute(update(grants).where(grants.c.id == existing.id).values(**values))
    else:
        conn.execute(insert(grants).values(unit=unit, dataset=dataset, created_at_ms=now, **values))
    return grant_row(conn, unit, dataset)


def revoke_grant(conn: Connection, unit: str, dataset: str) -> dict[str, Any]:
    row = conn.execute(select(grants.c.id).where(grants.c.unit == unit, grants.c.dataset == dataset)).first()
    if row is None:
        raise GrantMissing(f"{dataset!r} (unit {unit!r})")
    conn.execute(update(grants).where(grants.c.id == row.id).values(state="revoked", revoked_at_ms=now_ms()))
    return grant_row(conn, unit, dataset)


def grant_row(conn: Connection, unit: str, dataset: str) -> dict[str, Any]:
    row = conn.execute(select(grants).where(grants.c.unit == unit, grants.c.dataset == dataset)).mappings().first()
    if row is None:
        raise GrantMissing(f"{dataset!r} (unit {unit!r})")
    return dict(row)


def effective_state(row: Any, now: int | None = None) -> str:
    """'active', 'pending' (before start) or 'revoked' (revoked, or past its end)."""
    now = now_ms() if now is None else now
    if row["state"] != "active" or (row["end_ms"] is not None and row["end_ms"] <= now):
        return "revoked"
    if row["start_ms"] > now:
        return "pending"
    return "active"


def require_active(conn: Connection, unit: str, dataset: str) -> None:
    """Refuse delivery unless ``unit`` holds an active grant for ``dataset`` now."""
    row = conn.execute(select(grants).where(grants.c.unit == unit, grants.c.dataset == dataset)).mappings().first()
    if row is None:
        # the same answer for "no grant" and "no such dataset": an agent learns nothing about other data
        raise GrantMissing(repr(dataset))
    state = effective_state(row)
    if state == "revoked":
        raise GrantRevoked(repr(dataset))
    if state != "active":
        raise GrantMissing(f"{dataset!r} (grant starts later)")


def list_grants(conn: Connection, unit: str | None = None) -> list[dict[str, Any]]:
    q = select(grants).order_by(grants.c.unit, grants.c.dataset)
    if unit is not None:
        q = q.where(grants.c.unit == unit)
    now = now_ms()
    return [dict(r) | {"effective": effective_state(r, now)} for r in conn.execute(q).mappings()]


def units_granted(conn: Connection, dataset: str) -> list[str]:
    now = now_ms()
    rows = conn.execute(select(grants).where(grants.c.dataset == dataset)).mappings().all()
    return [r["unit"] for r in rows if effective_state(r, now) == "active"]


def grants_for_agent(conn: Connection, unit: str) -> list[dict[str, Any]]:
    """The /v1/grants body for one unit: catalog facts the agent needs, and the grant's state."""
    from .catalog import schema_for

    out = []
    now = now_ms()
    q = (select(grants, datasets).join(datasets, datasets.c.name == grants.c.dataset)
         .where(grants.c.unit == unit).order_by(grants.c.dataset))
    for r in conn.execute(q).mappings():
        state = effective_state(r, now)
        schema = schema_for(conn, r["name"], r["schema_version"])
        out.append({
            "dataset": r["name"], "title": r["title"], "provider_unit": r["provider_unit"],
            "catalog_id": f"edx:{r['name']}", "schema": schema.to_dict() | {"version": r["schema_version"]},
            "schema_version": r["schema_version"], "update_interval_s": r["update_interval_s"],
            "retention": {"policy": r["retention_policy"], "days": r["retention_days"]},
            "sharing": r["sharing"], "classification": r["classification"],
            "personal_info": bool(r["personal_info"]),
            "state": "revoked" if state == "revoked" else "active",
            "start": r["start_ms"], "end": r["end_ms"],
        })
    return out
