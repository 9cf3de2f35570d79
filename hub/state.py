"""The materialised current state of each dataset, kept so the hub can issue a fresh snapshot (resync).

Every published batch is applied here in chunks: a snapshot replaces the dataset's rows, a changes
batch upserts and deletes by primary key in batch order. Alongside, the order-independent checksum of
the whole state (row count and sum of 64-bit row hashes, ``agent.payload.Checksum``) is maintained
incrementally, so the figure an agent's table must match after each batch is known without a scan.
Rows are stored as their canonical field texts (JSON list in schema column order); a schema change
re-encodes them, because a widened type can change a value's canonical text (5 → 5.00).
"""

from __future__ import annotations

import json
from typing import IO, Iterable, Iterator, Sequence

from sqlalchemy import Connection, delete, select, update

from agent.payload import Checksum, decode_value, encode_value, iter_records, row_hash
from agent.schema import Schema

from .store import datasets, state_rows, upsert

CHUNK = 2000
_MASK = (1 << 64) - 1

Fields = list[str | None]


def pk_text(schema: Schema, fields: Sequence[str | None]) -> str:
    idx = [schema.names.index(k) for k in schema.primary_key]
    return json.dumps([fields[i] for i in idx], ensure_ascii=False, separators=(",", ":"))


def _load_checksum(conn: Connection, dataset: str) -> Checksum:
    r = conn.execute(select(datasets.c.state_rows, datasets.c.state_sum).where(datasets.c.name == dataset)).one()
    return Checksum(int(r.state_rows), int(r.state_sum, 16))


def _store_checksum(conn: Connection, dataset: str, ck: Checksum) -> None:
    conn.execute(update(datasets).where(datasets.c.name == dataset)
                 .values(state_rows=ck.count, state_sum=ck.hexdigest()))


def apply_batch(conn: Connection, dataset: str, schema: Schema, kind: str,
                records: Iterable[tuple[str, Fields]]) -> Checksum:
    """Apply one batch's records to the state inside ``conn``'s transaction; returns the new state checksum."""
    if kind == "snapshot":
        conn.execute(delete(state_rows).where(state_rows.c.dataset == dataset))
        ck = Checksum()
        buf: dict[str, Fields] = {}
        for _op, fields in records:
            # a snapshot may repeat a key; the last row wins, as it would in the agent's table
            key = pk_text(schema, fields)
            if key in buf:
                ck.count -= 1
                ck.total = (ck.total - row_hash(buf[key])) & _MASK
            buf[key] = fields
            ck.add(fields)
            if len(buf) >= CHUNK:
                _write(conn, dataset, buf, set())
                buf = {}
        _write(conn, dataset, buf, set())
        _store_checksum(conn, dataset, ck)
        return ck
    ck = _load_checksum(conn, dataset)
    chunk: list[tuple[str, Fields]] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= CHUNK:
            _apply_changes(conn, dataset, schema, chunk, ck)
            chunk = []
    _apply_changes(conn, dataset, schema, chunk, ck)
    _store_checksum(conn, dataset, ck)
    return ck


def _apply_changes(conn: Connection, dataset: str, schema: Schema, chunk: list[tuple[str, Fields]],
                   ck: Checksum) -> None:
    if not chunk:
        return
    keys = [pk_text(schema, f) for _op, f in chunk]
    current: dict[str, Fields | None] = {k: None for k in keys}
    unique = list(current)
    for i in range(0, len(unique), 500):
        q = select(state_rows.c.pk, state_rows.c.fields).where(
            state_rows.c.dataset == dataset, state_rows.c.pk.in_(unique[i:i + 500]))
        for r in conn.execute(q):
            current[r.pk] = json.loads(r.fields)
    existed = {k for k, v in current.items() if v is not None}
    for key, (op, fields) in zip(keys, chunk):
        old = current[key]
        if old is not None:
            ck.count -= 1
            ck.total = (ck.total - row_hash(old)) & _MASK
        if op == "D":
            current[key] = None
        else:
            current[key] = fields
            ck.add(fields)
    gone = {k for k in existed if current[k] is None}
    _write(conn, dataset, {k: v for k, v in current.items() if v is not None}, gone)


def _write(conn: Connection, dataset: str, rows: dict[str, Fields], gone: set[str]) -> None:
    if rows:
        upsert(conn, state_rows, [{"dataset": dataset, "pk": k, "fields": json.dumps(v, ensure_ascii=False)}
                                  for k, v in rows.items()], ["dataset", "pk"])
    gone_list = list(gone)
    for i in range(0, len(gone_list), 500):
        conn.execute(delete(state_rows).where(state_rows.c.dataset == dataset,
                                              state_rows.c.pk.in_(gone_list[i:i + 500])))


def migrate(conn: Connection, dataset: str, old: Schema, new: Schema) -> Checksum:
    """Re-encode every stored row from ``old`` to ``new`` (a compatible change); returns the new checksum."""
    ck = Checksum()
    mapping = [(old.names.index(c.name) if c.name in old.names else None, c) for c in new.columns]
    for batch in iter_state(conn, dataset):
        out: dict[str, Fields] = {}
        gone: set[str] = set()
        for fields in batch:
            nf: Fields = []
            for idx, col in mapping:
                text = fields[idx] if idx is not None else None
                nf.append(None if text is None else
                          encode_value(col.type, decode_value(old.column(col.name).type, text)))
            key, old_key = pk_text(new, nf), pk_text(old, fields)
            if key != old_key:
                gone.add(old_key)
            out[key] = nf
            ck.add(nf)
        _write(conn, dataset, out, gone - set(out))
    _store_checksum(conn, dataset, ck)
    return ck


def iter_state(conn: Connection, dataset: str, chunk: int = CHUNK) -> Iterator[list[Fields]]:
    """The dataset's rows in primary-key order, ``chunk`` at a time (keyset pagination: flat memory)."""
    last: str | None = None
    while True:
        q = select(state_rows.c.pk, state_rows.c.fields).where(state_rows.c.dataset == dataset)
        if last is not None:
            q = q.where(state_rows.c.pk > last)
        rows = conn.execute(q.order_by(state_rows.c.pk).limit(chunk)).all()
        if not rows:
            return
        last = rows[-1].pk
        yield [json.loads(r.fields) for r in rows]


def records_from_payload(stream: IO[bytes]) -> Iterator[tuple[str, Fields]]:
    return iter_records(stream)
