"""The catalog (资源目录): datasets with their sharing type, classification, interval, retention and schema versions.

A dataset's schema versions are all kept. A new schema is accepted for a changes batch only when every
agent can apply it in place (``SchemaDiff.safe``: added nullable columns, lossless widening); anything
else (narrowing, dropped or re-keyed columns) must come as a snapshot, which rebuilds the table.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, insert, select, update

from agent.schema import Schema

from .errors import CatalogInvalid, DatasetExists, DatasetUnknown, SchemaChangeRefused
from .store import datasets, now_ms, schema_versions

SHARING = ("无条件", "有条件", "不予共享")
CLASSIFICATION = ("一般", "重要", "核心")
RETENTION = ("keep", "purge_after_days", "purge_on_revoke")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# English aliases accepted on the command line; the catalog stores the Chinese terms of the regulation
SHARING_ALIASES = {"unconditional": "无条件", "conditional": "有条件", "none": "不予共享",
                   "not-shareable": "不予共享"}
CLASS_ALIASES = {"general": "一般", "important": "重要", "core": "核心"}


@dataclass(frozen=True)
class DatasetInfo:
    """One catalog row with its current schema."""

    name: str
    title: str
    provider_unit: str
    sharing: str
    classification: str
    personal_info: bool
    update_interval_s: int
    retention_policy: str
    retention_days: int | None
    description: str
    schema_version: int
    schema: Schema | None
    latest_seq: int
    latest_snapshot_seq: int
    state_rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "title": self.title, "provider_unit": self.provider_unit,
            "sharing": self.sharing, "classification": self.classification,
            "personal_info": self.personal_info, "update_interval_s": self.update_interval_s,
            "retention": {"policy": self.retention_policy, "days": self.retention_days},
            "description": self.description, "schema_version": self.schema_version,
            "schema": self.schema.to_dict() if self.schema else None,
            "latest_seq": self.latest_seq, "latest_snapshot_seq": self.latest_snapshot_seq,
            "rows": self.state_rows,
        }


def validate_meta(*, name: str | None = None, sharing: str | None = None,
                  classification: str | None = None, retention_policy: str | None = None,
                  retention_days: int | None = None, update_interval_s: int | None = None) -> dict[str, Any]:
    """Normalise catalog fields (aliases to the regulation's terms); every problem in one error."""
    problems: list[str] = []
    out: dict[str, Any] = {}
    if name is not None and not _NAME_RE.match(name):
        problems.append(f"name {name!r}: lowercase letters, digits and _ only, starting with a letter")
    if sharing is not None:
        sharing = SHARING_ALIASES.get(sharing, sharing)
        if sharing not in SHARING:
            problems.append(f"sharing {sharing!r}: one of {', '.join(SHARING)}")
        out["sharing"] = sharing
    if classification is not None:
        classification = CLASS_ALIASES.get(classification, classification)
        if classification not in CLASSIFICATION:
            problems.append(f"classification {classification!r}: one of {', '.join(CLASSIFICATION)}")
        out["classification"] = classification
    if retention_policy is not None:
        if retention_policy not in RETENTION:
            problems.append(f"retention {retention_policy!r}: one of {', '.join(RETENTION)}")
        if retention_policy == "purge_after_days" and not (retention_days and retention_days > 0):
            problems.append("retention purge_after_days needs --retention-days N (N > 0)")
        out["retention_policy"] = retention_policy
        out["retention_days"] = retention_days if retention_policy == "purge_after_days" else None
    if update_interval_s is not None:
        if update_interval_s <= 0:
            problems.append("update interval must be positive (seconds)")
        out["update_interval_s"] = update_interval_s
    if problems:
        raise CatalogInvalid("; ".join(problems))
    return out


def create_dataset(conn: Connection, name: str, schema: Schema, *, title: str | None = None,
                   provider_unit: str = "platform", sharing: str = "有条件", classification: str = "一般",
                   personal_info: bool = False, update_interval_s: int = 86400,
                   retention_policy: str = "keep", retention_days: int | None = None,
                   description: str = "") -> None:
    meta = validate_meta(name=name, sharing=sharing, classification=classification,
                         retention_policy=retention_policy, retention_days=retention_days,
                         update_interval_s=update_interval_s)
    if conn.execute(select(datasets.c.name).where(datasets.c.name == name)).first():
        raise DatasetExists(name)
    conn.execute(insert(datasets).values(
        name=name, title=title or name, provider_unit=provider_unit, personal_info=personal_info,
        description=description, schema_version=0, latest_seq=0, latest_snapshot_seq=0,
        state_rows=0, created_at_ms=now_ms(), **meta))
    add_schema_version(conn, name, schema)


def update_dataset(conn: Connection, name: str, **fields: Any) -> None:
    fields = {k: v for k, v in fields.items() if v is not None}
    meta = validate_meta(**{k: fields.pop(k) for k in list(fields)
                            if k in ("sharing", "classification", "retention_policy", "retention_days",
                                     "update_interval_s")})
    get_dataset(conn, name)
    values = {**fields, **meta}
    if values:
        conn.execute(update(datasets).where(datasets.c.name == name).values(**values))


def add_schema_version(conn: Connection, name: str, schema: Schema) -> int:
    """Store ``schema`` as the dataset's next version and make it current; returns the version."""
    current = conn.execute(select(datasets.c.schema_version).where(datasets.c.name == name)).scalar_one()
    version = current + 1
    conn.execute(insert(schema_versions).values(
        dataset=name, version=version, schema_json=json.dumps(schema.to_dict() | {"version": version}),
        digest=schema.digest().hex(), created_at_ms=now_ms()))
    conn.execute(update(datasets).where(datasets.c.name == name).values(schema_version=version))
    return version


def schema_for(conn: Connection, name: str, version: int) -> Schema:
    raw = conn.execute(select(schema_versions.c.schema_json).where(
        schema_versions.c.dataset == name, schema_versions.c.version == version)).scalar_one()
    return Schema.from_json(raw)


def check_schema_change(old: Schema, new: Schema, kind: str) -> bool:
    """True when ``new`` differs from ``old``; refuses an incompatible change outside a snapshot."""
    if old.canonical_bytes() == new.canonical_bytes():
        return False
    diff = old.evolution_to(new)
    if not diff.safe and kind != "snapshot":
        raise SchemaChangeRefused("; ".join(diff.refused))
    return True


def get_dataset(conn: Connection, name: str) -> DatasetInfo:
    row = conn.execute(select(datasets).where(datasets.c.name == name)).mappings().first()
    if row is None:
        raise DatasetUnknown(repr(name))
    return _info(conn, row)


def _info(conn: Connection, row: Any) -> DatasetInfo:
    schema = schema_for(conn, row["name"], row["schema_version"]) if row["schema_version"] else None
    return DatasetInfo(
        name=row["name"], title=row["title"], provider_unit=row["provider_unit"], sharing=row["sharing"],
        classification=row["classification"], personal_info=bool(row["personal_info"]),
        update_interval_s=row["update_interval_s"], retention_policy=row["retention_policy"],
        retention_days=row["retention_days"], description=row["description"] or "",
        schema_version=row["schema_version"], schema=schema, latest_seq=row["latest_seq"],
        latest_snapshot_seq=row["latest_snapshot_seq"], state_rows=row["state_rows"])


def list_datasets(conn: Connection) -> list[DatasetInfo]:
    rows = conn.execute(select(datasets).order_by(datasets.c.name)).mappings().all()
    return [_info(conn, r) for r in rows]


def schema_history(conn: Connection, name: str) -> list[dict[str, Any]]:
    rows = conn.execute(select(schema_versions).where(schema_versions.c.dataset == name)
                        .order_by(schema_versions.c.version)).mappings().all()
    return [{"version": r["version"], "digest": r["digest"], "created_at_ms": r["created_at_ms"],
             "schema": json.loads(r["schema_json"])} for r in rows]
