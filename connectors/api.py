"""The connector contract: what the agent's pipeline asks of a database, and nothing more.

The pipeline holds a ``Connector`` and reads its ``Capabilities``; it never branches on a database's
name. A connector applies one batch in one database transaction together with the batch's lineage row
and the dataset's checkpoint, so a batch is applied exactly once across crashes: ``apply`` first reads
the checkpoint inside the transaction and refuses (``AlreadyApplied``) a batch that is already there.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import IO, Any, Protocol, runtime_checkable

from agent.errors import AgentError, Terminal
from agent.payload import Checksum, Manifest
from agent.schema import Schema


@dataclass(frozen=True)
class Capabilities:
    """What a connector can do; the pipeline and the tests read these, never the database's name."""

    bulk_path: str                 # "load-data-local", "copy", "executemany", "fast-executemany", "array-dml"
    transactional_ddl: bool        # CREATE/ALTER/RENAME run inside a transaction
    atomic_swap: bool              # a snapshot's shadow table replaces the live one atomically
    max_identifier_length: int
    schemas: bool = True           # database has schema namespaces (sandbox can be a schema)
    timezone_type: bool = True     # has a native timestamp-with-time-zone type
    row_quarantine: bool = True    # can refuse single rows into edx_quarantine without failing the batch


@dataclass(frozen=True)
class Checkpoint:
    """The last batch applied for a dataset, as stored in ``edx_checkpoint`` in the target database."""

    dataset: str
    seq: int
    batch_digest: str              # hex of the envelope's header hash (hh); chains batches
    applied_at: dt.datetime


@dataclass(frozen=True)
class BatchMeta:
    """Identity of the batch being applied; written to lineage and checkpoint."""

    dataset: str
    table: str                     # target table name (the dataset name unless the config maps it)
    seq: int
    kind: str                      # "snapshot" or "changes"
    batch_digest: str              # hex hh of the envelope header
    envelope_digest: str = ""      # hex SHA-256/SM3 of the sealed file as received
    provider_unit: str = ""
    catalog_id: str = ""
    received_at: dt.datetime | None = None
    prev_seq: int = 0              # the checkpoint seq this batch expects (0 = first batch)
    expected_checksum: dict[str, Any] | None = None   # the hub's reconciliation figure, if sent
    quarantine_limit: float = 0.01  # fraction of the batch's rows that may be quarantined
    schema_name: str | None = None  # target schema/namespace (sandbox for joint-debug tests)
    lineage_columns: bool = False


class BatchSource(Protocol):
    """The decrypted payload of one batch, read as a stream.

    A source may also offer ``reopen() -> IO[bytes]``: a fresh stream of the same CSV records (after the
    manifest line). Connectors use it to read a batch a second time when the database refused rows on the
    bulk path (quarantine); without it they keep a temporary copy of the bytes while the batch applies
    (docs/connectors.md §Quarantine).
    """

    manifest: Manifest
    rows: IO[bytes]                # CSV records (docs/envelope.md §Payload), after the manifest line

    def finish(self) -> None:
        """Raise ``IntegrityError`` unless every byte was read and verified; call before COMMIT."""


@dataclass
class ApplyResult:
    """What a batch did to the target; becomes the lineage row, the receipt and the status figures."""

    dataset: str
    seq: int
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    quarantined: int = 0
    rows: int = 0                  # records in the batch
    checksum: dict[str, Any] = field(default_factory=dict)  # reconciliation figure of the affected rows
    phases: dict[str, float] = field(default_factory=dict)   # seconds per phase (load, merge, commit…)
    duplicate: bool = False        # the checkpoint already held this batch; nothing was done


@dataclass
class ProbeItem:
    name: str
    ok: bool
    detail: str = ""
    remedy: str = ""


class AlreadyApplied(Terminal, AgentError):
    code = "batch-already-applied"
    message = "batch {detail} is already applied (found in the checkpoint)"
    remedy = "Nothing to do; the agent acknowledges it again."
    exit_code = 0


@runtime_checkable
class Connector(Protocol):
    name: str
    capabilities: Capabilities

    def probe(self, schema_name: str | None = None) -> list[ProbeItem]:
        """Connection, privileges and settings that matter, each with a remedy (used by doctor)."""

    def ensure_meta_tables(self) -> None:
        """Create ``edx_checkpoint``, ``edx_lineage`` and ``edx_quarantine`` if missing."""

    def get_checkpoint(self, dataset: str) -> Checkpoint | None: ...

    def lineage_digest(self, dataset: str, seq: int) -> str | None:
        """The batch digest recorded for ``seq`` (detects a replayed or forked batch)."""

    def plan_schema(self, table: str, schema: Schema, schema_name: str | None = None) -> list[str]:
        """The DDL ``apply`` would run for this schema (``edx-agent schema plan``); raises SchemaConflict."""

    def apply(self, meta: BatchMeta, source: BatchSource) -> ApplyResult:
        """Apply one batch exactly once: rows, lineage and checkpoint in one transaction."""

    def table_checksum(self, table: str, schema: Schema, schema_name: str | None = None) -> Checksum:
        """Count and order-independent checksum of a whole table, computed as the hub does."""

    def purge(self, dataset: str, table: str, schema_name: str | None = None) -> int:
        """Delete every row of a dataset (retention: 用而不存) and its checkpoint; returns rows removed."""

    def drop_table(self, table: str, schema_name: str | None = None) -> None: ...

    def classify(self, exc: BaseException) -> AgentError:
        """Map a driver exception into the project's error tree (transient vs terminal)."""

    def close(self) -> None: ...
