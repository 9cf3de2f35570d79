"""The agent's own tables in the target database: checkpoint, lineage, quarantine and remembered schemas.

They are SQLAlchemy Core tables so every dialect (Oracle and SQL Server included) gets correct DDL
without a hand-written type map. They live next to the data they describe (same schema), so a sandbox
schema used for joint debugging has its own checkpoint and lineage.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from agent.schema import Schema

from .api import BatchMeta, Checkpoint

CHECKPOINT, LINEAGE, QUARANTINE, SCHEMA = "edx_checkpoint", "edx_lineage", "edx_quarantine", "edx_schema"

_TS = sa.DateTime(timezone=True).with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
_LONG = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_MYSQL = {"mysql_charset": "utf8mb4", "mysql_engine": "InnoDB"}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: Any) -> dt.datetime | None:
    """Stored times are UTC; databases without a zone type hand them back naive (or as text)."""
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.replace(tzinfo=dt.timezone.utc) if value.tzinfo is None else value.astimezone(dt.timezone.utc)


def build(names: dict[str, str], schema: str | None) -> dict[str, sa.Table]:
    """The four meta tables under the (possibly prefixed) ``names`` in ``schema``."""
    md = sa.MetaData(schema=schema)
    cp = sa.Table(
        names[CHECKPOINT], md,
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("batch_digest", sa.String(128), nullable=False),
        sa.Column("applied_at", _TS, nullable=False),
        **_MYSQL)
    lin = sa.Table(
        names[LINEAGE], md,
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("table_name", sa.String(128), nullable=False),
        sa.Column("provider_unit", sa.String(200)),
        sa.Column("catalog_id", sa.String(200)),
        sa.Column("rows_total", sa.BigInteger, nullable=False),
        sa.Column("rows_inserted", sa.BigInteger, nullable=False),
        sa.Column("rows_updated", sa.BigInteger, nullable=False),
        sa.Column("rows_deleted", sa.BigInteger, nullable=False),
        sa.Column("rows_quarantined", sa.BigInteger, nullable=False),
        sa.Column("received_at", _TS),
        sa.Column("applied_at", _TS, nullable=False),
        sa.Column("envelope_digest", sa.String(128)),
        sa.Column("batch_digest", sa.String(128), nullable=False),
        sa.Column("checksum", sa.String(200)),
        **_MYSQL)
    qu = sa.Table(
        names[QUARANTINE], md,
        sa.Column("dataset", sa.String(200), primary_key=True),
        sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("n", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("key_json", sa.Text),
        sa.Column("column_name", sa.String(128)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("row_text", _LONG),
        sa.Column("at", _TS, nullable=False),
        **_MYSQL)
    sc = sa.Table(
        names[SCHEMA], md,
        sa.Column("table_name", sa.String(128), primary_key=True),
        sa.Column("schema_json", _LONG, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        **_MYSQL)
    return {CHECKPOINT: cp, LINEAGE: lin, QUARANTINE: qu, SCHEMA: sc}


def read_checkpoint(conn: sa.Connection, t: sa.Table, dataset: str, lock: bool) -> Checkpoint | None:
    q = sa.select(t).where(t.c.dataset == dataset)
    if lock:
        q = q.with_for_update()
    row = conn.execute(q).first()
    if row is None:
        return None
    return Checkpoint(row.dataset, int(row.seq), row.batch_digest, as_utc(row.applied_at))  # type: ignore[arg-type]


def write_checkpoint(conn: sa.Connection, t: sa.Table, meta: BatchMeta, exists: bool, now: dt.datetime) -> None:
    values = {"seq": meta.seq, "batch_digest": meta.batch_digest, "applied_at": now}
    if exists:
        conn.execute(t.update().where(t.c.dataset == meta.dataset).values(**values))
    else:
        conn.execute(t.insert().values(dataset=meta.dataset, **values))


def write_lineage(conn: sa.Connection, t: sa.Table, meta: BatchMeta, result: Any, now: dt.datetime) -> None:
    # a snapshot re-applied under the same seq (resync) replaces its lineage row
    conn.execute(t.delete().where(t.c.dataset == meta.dataset, t.c.seq == meta.seq))
    conn.execute(t.insert().values(
        dataset=meta.dataset, seq=meta.seq, kind=meta.kind, table_name=meta.table,
        provider_unit=meta.provider_unit, catalog_id=meta.catalog_id, rows_total=result.rows,
        rows_inserted=result.inserted, rows_updated=result.updated, rows_deleted=result.deleted,
        rows_quarantined=result.quarantined, received_at=meta.received_at, applied_at=now,
        envelope_digest=meta.envelope_digest, batch_digest=meta.batch_digest,
        checksum=json.dumps(result.checksum, sort_keys=True) if result.checksum else None))


def write_quarantine(conn: sa.Connection, t: sa.Table, meta: BatchMeta, entries: list[dict[str, Any]],
                     now: dt.datetime) -> None:
    conn.execute(t.delete().where(t.c.dataset == meta.dataset, t.c.seq == meta.seq))
    if entries:
        conn.execute(t.insert(), [dict(e, dataset=meta.dataset, seq=meta.seq, n=i, at=now)
                                  for i, e in enumerate(entries, 1)])


def read_schema(conn: sa.Connection, t: sa.Table, table: str) -> Schema | None:
    row = conn.execute(sa.select(t.c.schema_json).where(t.c.table_name == table)).first()
    return Schema.from_json(row[0]) if row else None


def write_schema(conn: sa.Connection, t: sa.Table, table: str, schema: Schema, now: dt.datetime) -> None:
    conn.execute(t.delete().where(t.c.table_name == table))
    conn.execute(t.insert().values(table_name=table, schema_json=json.dumps(schema.to_dict()),
                                   version=schema.version, digest=schema.digest().hex(), updated_at=now))
