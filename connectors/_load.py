"""Row-level loading in Python: the quarantine collector, the chunked executemany path and stream replay.

This is SQLite's fast path, MySQL's path when ``local_infile`` is off, and every connector's slow path:
after the server's bulk load refused the batch, the records are read again and inserted in chunks, a
chunk that fails is retried row by row in savepoints, and the rows the database refuses go to
quarantine with the database's reason. Bulk paths stay free of per-row Python work.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
import uuid
from typing import IO, Any, Callable, Iterator, Sequence

import sqlalchemy as sa

from agent.errors import DataError, QuarantineLimitExceeded
from agent.payload import encode_record
from agent.schema import Schema

CHUNK = 5000
Converter = Callable[[str], Any] | None


# --- converters every row-level path shares: canonical text -> the value bound, or ValueError ---------
#
# A converter takes one text. It may also carry ``column``: the same work over a whole column of a chunk
# (None values kept as None) done by C loops (map, join, one regex) instead of one Python call per value.
# ``column`` raises at the first bad value without saying which; the chunk is then converted row by row
# so that exactly the bad rows go to quarantine (see load_rows).

ColumnConverter = Callable[[Sequence[Any]], Sequence[Any]]


def by_column(conv: Callable[[str], Any], column: ColumnConverter) -> Callable[[str], Any]:
    conv.column = column  # type: ignore[attr-defined]
    return conv


def convert_column(conv: Callable[[str], Any], values: Sequence[Any]) -> Sequence[Any]:
    """``conv`` over a column (None stays None), through its ``column`` form when it has one."""
    column = getattr(conv, "column", None)
    if column is not None:
        return column(values)
    return [None if v is None else conv(v) for v in values]


def present(values: Sequence[Any]) -> Sequence[Any]:
    """The values of a column that are not NULL (the column itself when it has none)."""
    return [v for v in values if v is not None] if None in values else values


def mapped(fn: Callable[[str], Any], values: Sequence[Any]) -> list[Any]:
    if None in values:
        return [None if v is None else fn(v) for v in values]
    return list(map(fn, values))


def int_range(bits: int) -> Callable[[str], int]:
    """A signed integer of ``bits`` bits (the database would refuse or, worse, wrap a larger one)."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1

    def conv(text: str) -> int:
        n = int(text)
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of range for int{bits}")
        return n

    def column(values: Sequence[Any]) -> list[Any]:
        out = mapped(int, values)
        got = present(out)
        if got and (min(got) < lo or max(got) > hi):
            raise ValueError(f"out of range for int{bits}")
        return out
    return by_column(conv, column)


def _finite(text: str) -> float:
    f = float(text)
    if not math.isfinite(f):
        raise ValueError("NaN and infinity are not portable")
    return f


def _finite_column(values: Sequence[Any]) -> list[Any]:
    out = mapped(float, values)
    if not all(map(math.isfinite, present(out))):
        raise ValueError("NaN and infinity are not portable")
    return out


finite_float = by_column(_finite, _finite_column)


def json_text(text: str) -> str:
    json.loads(text)  # valid JSON or refused; the canonical text itself is stored
    return text


def uuid_text(text: str) -> str:
    return str(uuid.UUID(text))


def max_length(n: int) -> Callable[[str], str]:
    """A string of at most ``n`` characters, kept as it is (for databases that would store a longer one)."""
    def check(text: str) -> str:
        if len(text) > n:
            raise ValueError(f"{len(text)} characters exceed string({n})")
        return text

    def column(values: Sequence[Any]) -> Sequence[Any]:
        if max(map(len, filter(None, values)), default=0) > n:
            raise ValueError(f"exceeds string({n})")
        return values
    return by_column(check, column)


def matching(pattern: "re.Pattern[str]", what: str) -> Callable[[str], str]:
    """A text that ``pattern`` matches whole, kept as it is; a column is checked by one regex over the
    values joined by newlines (the patterns used here never match a newline)."""
    whole = re.compile(rf"(?:(?:{pattern.pattern})\n)*(?:{pattern.pattern})")

    def check(text: str) -> str:
        if pattern.fullmatch(text) is None:
            raise ValueError(f"{text!r} is not a canonical {what}")
        return text

    def column(values: Sequence[Any]) -> Sequence[Any]:
        texts = present(values)
        if texts:
            joined = "\n".join(texts)
            # a value holding a newline would pass as two matches: the newlines must be the joins only
            if joined.count("\n") != len(texts) - 1 or whole.fullmatch(joined) is None:
                raise ValueError(f"not a canonical {what}")
        return values
    return by_column(check, column)


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
    """Insert records with executemany in chunks; isolate refused rows in savepoints. Returns records read.

    Each chunk is converted column by column (``convert_column``); a chunk holding a value that does not
    convert is converted again row by row, and only the rows that fail go to quarantine.
    """
    conv = [(i, c) for i, c in enumerate(converters) if c is not None]
    pending: list[tuple[str, list[str | None]]] = []
    n = 0

    def rows_of(part: list[tuple[str, list[str | None]]], first: int) -> tuple[list[tuple[Any, ...]], list[Any]]:
        """The parameter rows of ``part`` (records numbered from ``first``) and the records kept."""
        heads: list[tuple[Any, ...]] = [
            ((first + j,) if with_ord else ()) + ((op,) if with_op else ()) for j, (op, _) in enumerate(part)]
        fields_of = [f for _, f in part]
        if set(map(len, fields_of)) != {len(names)}:
            bad = next(f for f in fields_of if len(f) != len(names))
            raise DataError(f"malformed record: {len(bad)} fields, the schema has {len(names)}")
        try:
            cols = list(zip(*fields_of))
            for i, c in conv:
                cols[i] = convert_column(c, cols[i])  # type: ignore[call-overload]
            return [h + tuple(v) for h, v in zip(heads, zip(*cols))], part
        except (ValueError, TypeError, OverflowError):
            pass
        rows, kept = [], []
        for h, (op, fields) in zip(heads, part):
            values: list[Any] = list(fields)
            try:
                for i, c in conv:
                    if values[i] is not None:
                        values[i] = c(values[i])
            except (ValueError, TypeError, OverflowError) as e:
                quarantine.add(op, fields, names[i], f"{names[i]}: {e}")
                continue
            rows.append(h + tuple(values))
            kept.append((op, fields))
        return rows, kept

    def flush() -> None:
        if not pending:
            return
        part = pending[:]   # ``raw`` below must outlive the clear
        pending.clear()
        batch, raw = rows_of(part, n - len(part) + 1)
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

    for rec in records:
        n += 1
        pending.append(rec)
        if len(pending) >= chunk:
            flush()
    flush()
    return n


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", exc)
    return " ".join(str(orig).split())
