"""Row-level loading in Python: the quarantine collector, the chunked executemany path and stream replay.

This is SQLite's fast path, MySQL's path when ``local_infile`` is off, and every connector's slow path:
after the server's bulk load refused the batch, the records are read again and inserted in chunks, a
chunk that fails is retried row by row in savepoints, and the rows the database refuses go to
quarantine with the database's reason. Bulk paths stay free of per-row Python work.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from typing import IO, Any, Callable, Iterator, Sequence

import sqlalchemy as sa

from agent.errors import QuarantineLimitExceeded
from agent.payload import encode_record
from agent.schema import Schema

CHUNK = 5000
Converter = Callable[[str], Any] | None


# --- converters every row-level path shares: canonical text -> the value bound, or ValueError ---------

def int_range(bits: int) -> Callable[[str], int]:
    """A signed integer of ``bits`` bits (the database would refuse or, worse, wrap a larger one)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def conv(text: str) -> int:
        n = int(text)
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of range for int{bits}")
        return n
    return conv


def finite_float(text: str) -> float:
    f = float(text)
    if f != f or f in (float("inf"), float("-inf")):
        raise ValueError("NaN and infinity are not portable")
    return f


def json_text(text: str) -> str:
    json.loads(text)  # valid JSON or refused; the canonical text itself is stored
    return text


def uuid_text(text: str) -> str:
    return str(uuid.UUID(text))


class Quarantine:
    """Rows refused by the database, up to ``floor(fraction × rows)``; one more raises the limit error."""

    def __init__(self, schema: Schema, fraction: float, rows: int) -> None:
        self.limit = int(fraction * max(rows, 0))
        self.entries: list[dict[str, Any]] = []
        self._pk = [schema.names.index(k) for k in schema.primary_key]
        self._pk_names = list(schema.primary_key)

    def __len__(self) -> int:
        return len(self.entries)

    def key_json(self, fields: Sequence[str | None]) -> str:
        return json.dumps({n: fields[i] for n, i in zip(self._pk_names, self._pk)}, ensure_ascii=False)

    def add(self, op: str, fields: Sequence[str | None], column: str | None, reason: str) -> None:
        self.entries.append({"key_json": self.key_json(fields), "column_name": column,
                             "reason": reason[:2000], "row_text": encode_record(op, fields)})
        if len(self.entries) > self.limit:
            raise QuarantineLimitExceeded(
                f"more than {self.limit} of the batch's rows refused (limit {self.limit}); "
                f"last: {reason[:300]}", refused=len(self.entries))


class Replay:
    """Gives the fast path a stream and the slow path a second reading of the same records.

    A source with ``reopen()`` is read again from the spool; otherwise the fast path's bytes are
    kept in an unnamed temporary file (plaintext on local disk while the batch applies; see
    docs/connectors.md).
    """

    def __init__(self, source: Any) -> None:
        self._source = source
        self._reopen = getattr(source, "reopen", None)
        self._tee: IO[bytes] | None = None if self._reopen else tempfile.TemporaryFile()
        self.stream = _Tee(source.rows, self._tee)

    def again(self) -> IO[bytes]:
        # the fast path may have stopped early; the source must still be read to its end to verify it
        self.stream.drain()
        if self._reopen is not None:
            return self._reopen()
        assert self._tee is not None
        self._tee.seek(0)
        return self._tee

    def close(self) -> None:
        if self._tee is not None:
            self._tee.close()


class _Tee:
    """A read-only stream that copies what it hands out into ``sink`` (if any)."""

    def __init__(self, inner: IO[bytes], sink: IO[bytes] | None) -> None:
        self._inner, self._sink = inner, sink

    def read(self, n: int = -1) -> bytes:
        data = self._inner.read(n)
        if data and self._sink is not None:
            self._sink.write(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


def load_rows(conn: sa.Connection, sql: str, records: Iterator[tuple[str, list[str | None]]],
              converters: Sequence[Converter], quarantine: Quarantine,
              is_refusal: Callable[[BaseException], bool], error_column: Callable[[BaseException], str | None],
              *, with_ord: bool, with_op: bool, names: Sequence[str], chunk: int = CHUNK) -> int:
    """Insert records with executemany in chunks; isolate refused rows in savepoints. Returns records read."""
    conv = [(i, c) for i, c in enumerate(converters) if c is not None]
    batch: list[tuple[Any, ...]] = []
    raw: list[tuple[str, list[str | None]]] = []
    n = 0

    def flush() -> None:
        if not batch:
            return
        try:
            with conn.begin_nested():
                conn.exec_driver_sql(sql, batch)
        except sa.exc.DBAPIError as e:
            if not is_refusal(e):
                raise
            for params, (op, fields) in zip(batch, raw):
                try:
                    with conn.begin_nested():
                        conn.exec_driver_sql(sql, params)
                except sa.exc.DBAPIError as e1:
                    if not is_refusal(e1):
                        raise
                    quarantine.add(op, fields, error_column(e1), _reason(e1))
        batch.clear()
        raw.clear()

    for op, fields in records:
        n += 1
        values: list[Any] = list(fields)
        try:
            for i, c in conv:
                if values[i] is not None:
                    values[i] = c(values[i])
        except (ValueError, TypeError, OverflowError) as e:
            quarantine.add(op, fields, names[i], f"{names[i]}: {e}")
            continue
        head: tuple[Any, ...] = ((n,) if with_ord else ()) + ((op,) if with_op else ())
        batch.append(head + tuple(values))
        raw.append((op, fields))
        if len(batch) >= chunk:
            flush()
    flush()
    return n


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    return " ".join(str(orig).split())
