"""The hub's database: every table, the engine for SQLite (default) or PostgreSQL, and upsert helpers.

All state that matters lives here or in the blob store, never in process memory, so several hub
instances can serve the same PostgreSQL database behind a load balancer. SQLite runs in WAL mode and
every transaction is ``BEGIN IMMEDIATE``: nearly every request writes (at least its nonce), and an
immediate transaction waits on the busy timeout instead of failing when two writers meet.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Sequence

from sqlalchemy import (BigInteger, Boolean, Column, Connection, Engine, Index, Integer, MetaData,
                        String, Table, Text, create_engine, event)
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect

metadata = MetaData()


def now_ms() -> int:
    return int(time.time() * 1000)


datasets = Table(
    "hub_datasets", metadata,
    Column("name", String(63), primary_key=True),
    Column("title", Text, nullable=False),
    Column("provider_unit", String(200), nullable=False),
    Column("sharing", String(16), nullable=False),          # 无条件 / 有条件 / 不予共享
    Column("classification", String(16), nullable=False),   # 一般 / 重要 / 核心
    Column("personal_info", Boolean, nullable=False),
    Column("update_interval_s", Integer, nullable=False),
    Column("retention_policy", String(32), nullable=False),  # keep / purge_after_days / purge_on_revoke
    Column("retention_days", Integer),
    Column("description", Text, nullable=False, default=""),
    Column("schema_version", Integer, nullable=False, default=0),
    Column("latest_seq", BigInteger, nullable=False, default=0),
    Column("latest_snapshot_seq", BigInteger, nullable=False, default=0),
    Column("state_rows", BigInteger, nullable=False, default=0),  # rows in the materialised state
    Column("created_at_ms", BigInteger, nullable=False),
)

schema_versions = Table(
    "hub_schema_versions", metadata,
    Column("dataset", String(63), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("schema_json", Text, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("created_at_ms", BigInteger, nullable=False),
)

batches = Table(
    "hub_batches", metadata,
    Column("dataset", String(63), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("expected_json", Text),                # reconciliation figure after applying this batch
    Column("source", Text, nullable=False, default=""),
    Column("created_at_ms", BigInteger, nullable=False),
)

# compressed plaintext payload of a batch, one per cipher suite (the content digest is the suite's hash)
payloads = Table(
    "hub_payloads", metadata,
    Column("dataset", String(63), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("suite", Integer, primary_key=True),
    Column("blob_key", Text, nullable=False),
    Column("info_json", Text, nullable=False),
)

grants = Table(
    "hub_grants", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("unit", String(200), nullable=False),
    Column("dataset", String(63), nullable=False),
    Column("state", String(16), nullable=False),      # active / revoked
    Column("start_ms", BigInteger, nullable=False),
    Column("end_ms", BigInteger),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("revoked_at_ms", BigInteger),
    Index("ux_grants_unit_dataset", "unit", "dataset", unique=True),
)

tokens = Table(
    "hub_tokens", metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("unit", String(200), nullable=False),
    Column("datasets_json", Text, nullable=False),
    Column("expires_ms", BigInteger, nullable=False),
    Column("used_at_ms", BigInteger),
    Column("used_by", String(64)),
    Column("created_at_ms", BigInteger, nullable=False),
)

agents = Table(
    "hub_agents", metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("unit", String(200), nullable=False),
    Column("hostname", Text, nullable=False, default=""),
    Column("agent_version", String(64), nullable=False, default=""),
    Column("suite", Integer, nullable=False),
    Column("keys_json", Text, nullable=False),
    Column("state", String(16), nullable=False),      # active / disabled / revoked
    Column("enrolled_at_ms", BigInteger, nullable=False),
    Column("last_seen_ms", BigInteger),
    Column("heartbeat_json", Text),                   # the last heartbeat body, verbatim
    Column("heartbeats", BigInteger, nullable=False, default=0),
    Index("ix_agents_unit", "unit"),
)

nonces = Table(
    "hub_nonces", metadata,
    Column("agent_id", String(64), primary_key=True),
    Column("nonce", String(32), primary_key=True),
    Column("expires_ms", BigInteger, nullable=False),
    Index("ix_nonces_expires", "expires_ms"),
)

sealed = Table(
    "hub_sealed", metadata,
    Column("dataset", String(63), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("agent_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("rows", BigInteger, nullable=False),
    Column("blob_key", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("hh", String(64), nullable=False),
    Column("prev_hh", String(64), nullable=False),
    Column("resync", Boolean, nullable=False, default=False),
    Column("created_at_ms", BigInteger, nullable=False),
    Column("acked_at_ms", BigInteger),
    Column("receipt_json", Text),
    Column("checksum_mismatch", Boolean, nullable=False, default=False),
    Column("expected_json", Text),                # the figure sealed into this envelope's header (0x81)
    Index("ix_sealed_agent", "agent_id", "dataset"),
)

commands = Table(
    "hub_commands", metadata,
    Column("id", String(32), primary_key=True),
    Column("agent_id", String(64), nullable=False),
    Column("type", String(32), nullable=False),       # resync / doctor / diagnostics
    Column("dataset", String(63)),
    Column("state", String(16), nullable=False),      # pending / sent / done / failed
    Column("created_at_ms", BigInteger, nullable=False),
    Column("sent_at_ms", BigInteger),
    Column("done_at_ms", BigInteger),
    Column("result_json", Text),
    Index("ix_commands_agent_state", "agent_id", "state"),
)

# everything an agent sends besides heartbeats: feedback, requests, test reports, diagnostics bundles
messages = Table(
    "hub_messages", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", String(64), nullable=False),
    Column("unit", String(200), nullable=False),
    Column("kind", String(16), nullable=False),       # feedback / request / test-report / diagnostics
    Column("dataset", String(63)),
    Column("seq", BigInteger),
    Column("body_json", Text, nullable=False),
    Column("blob_key", Text),
    Column("created_at_ms", BigInteger, nullable=False),
    Index("ix_messages_agent", "agent_id", "kind"),
)

# the materialised current state of each dataset: canonical fields by primary key
state_rows = Table(
    "hub_state_rows", metadata,
    Column("dataset", String(63), primary_key=True),
    Column("pk", Text, primary_key=True),
    Column("fields", Text, nullable=False),
)


def normalise_url(url: str) -> str:
    """Pick the psycopg 3 driver for a bare postgresql:// URL (the one installed with the hub)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str) -> Engine:
    """Engine for the hub's store; creates the tables if they are missing."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False},
                               pool_size=8, max_overflow=16)

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy's "begin" event below issues BEGIN itself
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        engine = create_engine(url, pool_size=10, max_overflow=30, pool_pre_ping=True)
    metadata.create_all(engine)
    return engine


def is_postgres(conn: Connection) -> bool:
    return conn.dialect.name == "postgresql"


def _insert(conn: Connection, table: Table) -> Any:
    return (pg_dialect.insert(table) if is_postgres(conn) else sqlite_dialect.insert(table))


def insert_ignore(conn: Connection, table: Table, values: dict[str, Any]) -> bool:
    """Insert unless the primary key exists; True when this call inserted the row."""
    # RETURNING rather than rowcount: psycopg 3 under SQLAlchemy 2.1 reports -1 for this statement
    key = list(table.primary_key.columns)[0]
    stmt = _insert(conn, table).values(**values).on_conflict_do_nothing().returning(key)
    return conn.execute(stmt).first() is not None


def upsert(conn: Connection, table: Table, rows: Sequence[dict[str, Any]], keys: Iterable[str]) -> None:
    """Insert or update ``rows`` (all with the same columns) by the unique ``keys``."""
    if not rows:
        return
    keys = list(keys)
    stmt = _insert(conn, table)
    update = {c: stmt.excluded[c] for c in rows[0] if c not in keys}
    conn.execute(stmt.on_conflict_do_update(index_elements=keys, set_=update), list(rows))
