"""Publishing a batch: validate rows, write the payload, apply it to the state and give it the next sequence.

The order makes a bad input store nothing: rows are validated and written to a temporary CSV file first
(a bad row fails with its line and column before the database is touched); then, in one transaction,
the dataset gets its next sequence number, the state is updated and the batch row is written. The
payload is kept once as a suite-neutral zstd "master"; per-suite compressed payloads and per-agent
sealed envelopes are derived from it (``hub.sealing``). Memory stays flat: rows stream file to file.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import zstandard
from sqlalchemy import insert, select, update

from agent.errors import DataError
from agent.payload import RowEncoder, encode_record, iter_records, manifest_line
from agent.schema import Schema

from . import catalog, state
from .context import HubContext
from .errors import DatasetUnknown, SchemaChangeRefused
from .store import batches, datasets, now_ms, payloads

MASTER_SUITE = 0  # the payloads row holding the suite-neutral master copy
Record = tuple[str, list[str | None]]


@dataclass(frozen=True)
class PublishResult:
    dataset: str
    seq: int
    kind: str
    rows: int
    schema_version: int
    expected: dict[str, object]
    sealed_for: int

    def to_dict(self) -> dict[str, object]:
        return {"dataset": self.dataset, "seq": self.seq, "kind": self.kind, "rows": self.rows,
                "schema_version": self.schema_version, "expected": self.expected,
                "sealed_for": self.sealed_for}


def expected_figure(kind: str, schema: Schema, records_path: Path) -> dict[str, object]:
    """What the agent's connector must reproduce after applying the batch (header extension 0x81).

    ``agent.reconcile.expected_checksum`` defines the figure, so hub and agent cannot drift apart.
    """
    from agent.reconcile import expected_checksum

    with open(records_path, "rb") as f:
        return expected_checksum(kind, schema, iter_records(f))


def _records_file(ctx: HubContext, records: Iterator[Record]) -> tuple[Path, int]:
    fd, name = tempfile.mkstemp(prefix="records-", suffix=".csv", dir=ctx.tmp_dir)
    n = 0
    try:
        with os.fdopen(fd, "wb", buffering=1 << 20) as out:
            for op, fields in records:
                out.write(encode_record(op, fields).encode())
                n += 1
    except BaseException:
        os.unlink(name)
        raise
    return Path(name), n


def _master_payload(ctx: HubContext, dataset: str, kind: str, schema: Schema, rows: int,
                    records_path: Path) -> Path:
    fd, name = tempfile.mkstemp(prefix="master-", suffix=".zst", dir=ctx.tmp_dir)
    with os.fdopen(fd, "wb") as raw, zstandard.ZstdCompressor(level=3).stream_writer(raw) as z, \
            open(records_path, "rb") as src:
        z.write(manifest_line(dataset, kind, schema, rows))
        shutil.copyfileobj(src, z, 1 << 20)
    return Path(name)


def publish(ctx: HubContext, dataset: str, make_records: Callable[[RowEncoder], Iterator[Record]], *,
            kind: str, schema: Schema | None = None, source: str = "",
            create_meta: dict[str, object] | None = None) -> PublishResult:
    """Publish one batch; ``make_records(encoder)`` yields the rows (see ``hub.sources``)."""
    if kind not in ("snapshot", "changes"):
        raise DataError(f"kind must be snapshot or changes, got {kind!r}")
    with ctx.engine.connect() as conn:
        row = conn.execute(select(datasets.c.schema_version).where(datasets.c.name == dataset)).first()
        seen_version = row.schema_version if row else 0
        current = catalog.schema_for(conn, dataset, seen_version) if row else None
    if current is None and schema is None:
        raise DatasetUnknown(repr(dataset), remedy="A new dataset needs its schema: pass --schema schema.json.")
    if current is not None and current.digest() == (schema or current).digest():
        schema = None  # same columns: no new schema version
    if current is not None and schema is not None:
        catalog.check_schema_change(current, schema, kind)
    effective = schema or current
    assert effective is not None
    version = seen_version + (1 if schema is not None else 0)
    effective = Schema(effective.columns, effective.primary_key, version)

    records_path, rows = _records_file(ctx, make_records(RowEncoder(effective, kind)))
    master = None
    try:
        master = _master_payload(ctx, dataset, kind, effective, rows, records_path)
        master_key = f"payloads/{dataset}/{uuid.uuid4().hex}.master.zst"
        ctx.blobs.put_file(master_key, master)
        try:
            with ctx.engine.begin() as conn:
                result = _commit(conn, dataset, kind, effective, schema, current, seen_version, rows,
                                 records_path, master_key, source, create_meta or {})
        except BaseException:
            ctx.blobs.delete(master_key)
            raise
    finally:
        records_path.unlink(missing_ok=True)
        if master is not None:
            master.unlink(missing_ok=True)
    sealed = 0
    if ctx.settings.seal_on_publish:
        from .sealing import seal_new_batch
        sealed = seal_new_batch(ctx, dataset, result.seq)
    return PublishResult(**{**result.__dict__, "sealed_for": sealed})


def _commit(conn, dataset: str, kind: str, effective: Schema, new_schema: Schema | None,
            current: Schema | None, seen_version: int, rows: int, records_path: Path,
            master_key: str, source: str, create_meta: dict[str, object]) -> PublishResult:
    q = select(datasets).where(datasets.c.name == dataset)
    if conn.dialect.name == "postgresql":
        q = q.with_for_update()  # serialises publishers of one dataset across hub instances
    ds = conn.execute(q).mappings().first()
    if ds is None:
        catalog.create_dataset(conn, dataset, effective, **create_meta)  # type: ignore[arg-type]
        ds = conn.execute(q).mappings().one()
    elif ds["schema_version"] != seen_version:
        raise SchemaChangeRefused("the schema changed while publishing; publish again")
    elif new_schema is not None:
        catalog.add_schema_version(conn, dataset, new_schema)
        if kind == "changes" and current is not None:
            state.migrate(conn, dataset, current, effective)
    seq = ds["latest_seq"] + 1
    with open(records_path, "rb") as f:
        state.apply_batch(conn, dataset, effective, kind, iter_records(f))
    expected = expected_figure(kind, effective, records_path)
    now = now_ms()
    conn.execute(insert(batches).values(dataset=dataset, seq=seq, kind=kind, rows=rows,
                                        schema_version=effective.version, expected_json=json.dumps(expected),
                                        source=source[:500], created_at_ms=now))
    conn.execute(insert(payloads).values(dataset=dataset, seq=seq, suite=MASTER_SUITE, blob_key=master_key,
                                         info_json="{}"))
    values: dict[str, object] = {"latest_seq": seq}
    if kind == "snapshot":
        values["latest_snapshot_seq"] = seq
    conn.execute(update(datasets).where(datasets.c.name == dataset).values(**values))
    return PublishResult(dataset, seq, kind, rows, effective.version, expected, 0)
