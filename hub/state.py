"""The materialised current state of each dataset, kept so the hub can issue a fresh snapshot (resync).

Every published batch is applied here in chunks: a snapshot replaces the dataset's rows, a changes
batch upserts and deletes by primary key in batch order; the dataset's row count is kept alongside.
A row is stored as its payload CSV text (``agent.payload`` canonical fields, quoted, bare NULL), so a
resync writes stored rows straight into a payload without decoding them; a single-column key is stored
as its canonical text, a composite key as a JSON list. A schema change re-encodes the rows, because a
widened type can change a value's canonical text (5 → 5.00).
"""

from __future__ import annotations

import io
import json
from typing import Iterable, Iterator, Sequence

from sqlalchemy import Connection, delete, func, select, update

from agent.payload import decode_value, encode_value, iter_records, quote
from agent.schema import Schema

from .store import datasets, state_rows, upsert

CHUNK = 2000

Fields = Sequence[str | None]


class KeyOf:
    """The stored key of a row: its primary-key fields' canonical text (JSON list when composite)."""

    def __init__(self, schema: Schema) -> None:
        names = schema.names
        self.idx = [names.index(k) for k in schema.primary_key]

    def __call__(self, fields: Fields) -> str:
        if len(self.idx) == 1:
            return fields[self.idx[0]]  # type: ignore[return-value]  # key columns are never NULL
        return json.dumps([fields[i] for i in self.idx], ensure_ascii=False, separators=(",", ":"))


def row_text(fields: Fields) -> str:
    """The CSV text of one row without its ``_op`` (a payload record is ``"I," + row_text + "\\n"``)."""
    return ",".join([quote(f) for f in fields])


def parse_row(text: str) -> list[str | None]:
    for _op, fields in iter_records(io.BytesIO(("I," + text + "\n").encode())):
        return fields
    raise ValueError("empty stored row")


def _count(conn: Connection, dataset: str) -> int:
    return int(conn.execute(select(datasets.c.state_rows).where(datasets.c.name == dataset)).scalar_one())


def _store_count(conn: Connection, dataset: str, n: int) -> None:
    conn.execute(update(datasets).where(datasets.c.name == dataset).values(state_rows=n))


def apply_batch(conn: Connection, dataset: str, schema: Schema, kind: str,
                records: Iterable[tuple[str, Fields]]) -> int:
    """Apply one batch's records to the state inside ``conn``'s transaction; returns the new row count."""
    key_of = KeyOf(schema)
    if kind == "snapshot":
        conn.execute(delete(state_rows).where(state_rows.c.dataset == dataset))
        buf: dict[str, str] = {}
        for _op, fields in records:
            buf[key_of(fields)] = row_text(fields)  # a repeated key: the last row wins, as in the agent's table
            if len(buf) >= CHUNK:
                _write(conn, dataset, buf, set())
                buf = {}
        _write(conn, dataset, buf, set())
        # counted once at the end: a key repeated across chunks is one row
        n = int(conn.execute(select(func.count()).select_from(state_rows)
                             .where(state_rows.c.dataset == dataset)).scalar_one())
        _store_count(conn, dataset, n)
        return n
    n = _count(conn, dataset)
    chunk: list[tuple[str, Fields]] = []
    for rec in records:
        chunk.append(rec)
        if len(chunk) >= CHUNK:
            n = _apply_changes(conn, dataset, key_of, chunk, n)
            chunk = []
    n = _apply_changes(conn, dataset, key_of, chunk, n)
    _store_count(conn, dataset, n)
    return n


def _existing(conn: Connection, dataset: str, keys: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(keys), 500):
        q = select(state_rows.c.pk).where(state_rows.c.dataset == dataset, state_rows.c.pk.in_(keys[i:i + 500]))
        found.update(r.pk for r in conn.execute(q))
    return found


def _apply_changes(conn: Connection, dataset: str, key_of: KeyOf, chunk: list[tuple[str, Fields]], n: int) -> int:
    if not chunk:
        return n
    keys = [key_of(f) for _op, f in chunk]
    existed = _existing(conn, dataset, list(dict.fromkeys(keys)))
    final: dict[str, str | None] = {}
    for key, (op, fields) in zip(keys, chunk):  # batch order: the last operation per key wins
        final[key] = None if op == "D" else row_text(fields)
    live = {k: v for k, v in final.items() if v is not None}
    gone = {k for k, v in final.items() if v is None and k in existed}
    _write(conn, dataset, live, gone)
    return n + len(set(live) - existed) - len(gone)


def _write(conn: Connection, dataset: str, rows: dict[str, str], gone: set[str]) -> None:
    if rows:
        upsert(conn, state_rows, [{"dataset": dataset, "pk": k, "fields": v} for k, v in rows.items()],
               ["dataset", "pk"])
    gone_list = list(gone)
    for i in range(0, len(gone_list), 500):
        conn.execute(delete(state_rows).where(state_rows.c.dataset == dataset,
                                              state_rows.c.pk.in_(gone_list[i:i + 500])))


def migrate(conn: Connection, dataset: str, old: Schema, new: Schema) -> int:
    """Re-encode every stored row from ``old`` to ``new`` (a compatible change); returns the row count."""
    mapping = [(old.names.index(c.name) if c.name in old.names else None, c) for c in new.columns]
    old_key, new_key = KeyOf(old), KeyOf(new)
    n = 0
    for batch in iter_state(conn, dataset):
        out: dict[str, str] = {}
        gone: set[str] = set()
        for text in batch:
            fields = parse_row(text)
            nf: list[str | None] = []
            for idx, col in mapping:
                value = fields[idx] if idx is not None else None
                nf.append(None if value is None else
                          encode_value(col.type, decode_value(old.column(col.name).type, value)))
            key, was = new_key(nf), old_key(fields)
            if key != was:
                gone.add(was)
            out[key] = row_text(nf)
            n += 1
        _write(conn, dataset, out, gone - set(out))
    _store_count(conn, dataset, n)
    return n


def iter_state(conn: Connection, dataset: str, chunk: int = CHUNK) -> Iterator[list[str]]:
    """The dataset's stored rows (CSV text) in key order, ``chunk`` at a time (keyset pagination: flat memory)."""
    last: str | None = None
    while True:
        q = select(state_rows.c.pk, state_rows.c.fields).where(state_rows.c.dataset == dataset)
        if last is not None:
            q = q.where(state_rows.c.pk > last)
        rows = conn.execute(q.order_by(state_rows.c.pk).limit(chunk)).all()
        if not rows:
            return
        last = rows[-1].pk
        yield [r.fields for r in rows]
