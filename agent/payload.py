"""The batch payload: a schema manifest line followed by rows as CSV that databases load natively.

Layout of the (decompressed) payload, specified in docs/envelope.md §Payload:

    {manifest JSON on one line}\\n
    I,"S0001","张三",NULL,"2024-09-01"\\n
    ...

* The first line is the manifest (``format``, ``dataset``, ``kind``, ``schema``, ``rows``, ``columns``).
* Then one CSV record per row: the ``_op`` column first (bare ``I``, ``U`` or ``D``), then the schema's
  columns in order. Every non-NULL value is enclosed in double quotes, with ``"`` doubled; NULL is the
  bare word ``NULL`` (so ``"NULL"`` is the four-letter string). Records end with LF; quoted values may
  hold any character but NUL. No escape character: MySQL/MariaDB ``LOAD DATA ... ENCLOSED BY '"'
  ESCAPED BY ''`` and PostgreSQL ``COPY ... (FORMAT csv, NULL 'NULL')`` read it as it is, so the
  connectors stream it to the server without touching rows one by one.
* Values are written in one canonical text per portable type (``encode_value``); the same text is what
  the order-independent row checksum hashes, on the hub when publishing and on the agent when
  reconciling, so both sides compute the same figure.
"""

from __future__ import annotations

import base64
import binascii
import csv
import datetime as dt
import hashlib
import io
import json
import math
import re
import uuid
from decimal import Context, Decimal, InvalidOperation
from typing import IO, Any, Iterable, Iterator, Sequence

from .errors import DataError
from .schema import Column, PortableType, Schema

FORMAT = "edx-csv/1"
NULL = "NULL"
OPS = frozenset({"I", "U", "D"})
MAX_MANIFEST = 1 << 20
_INT_RANGE = {"int32": (-(1 << 31), (1 << 31) - 1), "int64": (-(1 << 63), (1 << 63) - 1)}
_UTC = dt.timezone.utc
# a text or binary value may be far larger than csv's default 128 KiB field limit (process-wide setting)
if csv.field_size_limit() < 1 << 30:
    csv.field_size_limit(1 << 30)
# decimal(38,s) needs more digits than the default 28-digit context
_DEC = Context(prec=80)
_FIELD_RE = re.compile(r'"((?:[^"]|"")*)"|([^,"\n]*)')


# --- canonical text of one value ---------------------------------------------------------------

def encode_value(ptype: PortableType, value: Any) -> str | None:
    """Canonical text of ``value`` for ``ptype``; ``None`` for NULL. Raises ValueError with a reason.

    Accepts both JSON-decoded forms (strings for dates, base64 for binary, numbers) and Python
    objects from a database driver (``date``, ``Decimal``, ``bytes``, ``UUID``...).
    """
    if value is None:
        return None
    base = ptype.base
    if base in ("int32", "int64"):
        if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ValueError(f"expected an integer, got {type(value).__name__}")
        n = int(value) if not isinstance(value, str) else int(value.strip())
        lo, hi = _INT_RANGE[base]
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of range for {base}")
        return str(n)
    if base == "decimal":
        if isinstance(value, bool):
            raise ValueError("expected a decimal number, got a boolean")
        try:
            d = Decimal(str(value)) if not isinstance(value, Decimal) else value
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a decimal number") from None
        if not d.is_finite():
            raise ValueError("decimal values must be finite")
        q = d.quantize(Decimal(1).scaleb(-(ptype.scale or 0)), context=_DEC)
        if q != d:
            raise ValueError(f"{value} has more than {ptype.scale} decimal places")
        if q.is_zero():
            q = q.copy_abs()  # databases store -0.00 as 0.00; the canonical text must agree
        digits = len(q.as_tuple().digits) if q != 0 else 1
        int_digits = max(digits - (ptype.scale or 0), 0)
        if int_digits > (ptype.precision or 0) - (ptype.scale or 0):
            raise ValueError(f"{value} does not fit decimal({ptype.precision},{ptype.scale})")
        return format(q, "f")
    if base == "float64":
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise ValueError(f"expected a number, got {type(value).__name__}")
        f = float(value)
        if not math.isfinite(f):
            raise ValueError("NaN and infinity are not portable")
        return repr(f)
    if base == "bool":
        if isinstance(value, bool):
            return "1" if value else "0"
        if value in (0, 1):
            return str(int(value))
        raise ValueError(f"expected true or false, got {value!r}")
    if base in ("string", "text"):
        if not isinstance(value, str):
            raise ValueError(f"expected a string, got {type(value).__name__}")
        if "\x00" in value:
            raise ValueError("NUL characters are not allowed in text")
        if base == "string" and len(value) > (ptype.length or 0):
            raise ValueError(f"{len(value)} characters exceed string({ptype.length})")
        return value
    if base == "date":
        if isinstance(value, dt.datetime):
            raise ValueError("expected a date, got a timestamp")
        d = value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value))
        return d.isoformat()
    if base == "time":
        t = value if isinstance(value, dt.time) else (
            _timedelta_time(value) if isinstance(value, dt.timedelta) else dt.time.fromisoformat(str(value)))
        if t.tzinfo is not None:
            raise ValueError("time values carry no time zone")
        return t.isoformat(timespec="microseconds")
    if base == "timestamp":
        ts = value if isinstance(value, dt.datetime) else _parse_ts(str(value))
        if ts.tzinfo is not None:
            raise ValueError("timestamp is a wall-clock time without a zone; use timestamptz for instants")
        return ts.isoformat(sep=" ", timespec="microseconds")
    if base == "timestamptz":
        ts = value if isinstance(value, dt.datetime) else _parse_ts(str(value))
        if ts.tzinfo is None:
            raise ValueError("timestamptz needs an explicit offset (e.g. +08:00 or Z)")
        return ts.astimezone(_UTC).isoformat(sep=" ", timespec="microseconds")
    if base == "uuid":
        u = value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
        return str(u)
    if base == "binary":
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
        elif isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except binascii.Error:
                raise ValueError("binary values must be base64") from None
        else:
            raise ValueError(f"expected base64 text, got {type(value).__name__}")
        return base64.b64encode(raw).decode("ascii")
    if base == "json":
        if isinstance(value, (str, bytes)) and not isinstance(value, str):
            value = value.decode()
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    raise ValueError(f"no encoding for type {ptype}")


def _timedelta_time(td: dt.timedelta) -> dt.time:
    # MySQL drivers return TIME columns as timedelta
    secs = td.total_seconds()
    if not 0 <= secs < 86400:
        raise ValueError("time of day out of range")
    return (dt.datetime.min + td).time()


def _parse_ts(text: str) -> dt.datetime:
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    return dt.datetime.fromisoformat(t)


def decode_value(ptype: PortableType, text: str | None) -> Any:
    """Python value of a canonical text, for connectors that bind parameters (SQLite, Oracle, SQL Server)."""
    if text is None:
        return None
    base = ptype.base
    if base in ("int32", "int64"):
        return int(text)
    if base == "decimal":
        return Decimal(text)
    if base == "float64":
        return float(text)
    if base == "bool":
        return text == "1"
    if base == "date":
        return dt.date.fromisoformat(text)
    if base == "time":
        return dt.time.fromisoformat(text)
    if base in ("timestamp", "timestamptz"):
        return dt.datetime.fromisoformat(text)
    if base == "binary":
        return base64.b64decode(text)
    return text  # string, text, uuid, json keep their canonical text


def canonical_from_db(ptype: PortableType, value: Any) -> str | None:
    """Canonical text of a value read back from a database (for reconciliation checksums)."""
    if value is None:
        return None
    base = ptype.base
    if base == "bool":
        return "1" if bool(value) else "0"
    if base == "timestamptz" and isinstance(value, dt.datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)  # databases without a zone type store UTC (docs/connectors.md)
    if base == "timestamptz" and isinstance(value, str):
        value = _parse_ts(value if ("+" in value[10:] or value.endswith("Z")) else value + "+00:00")
    if base == "json" and isinstance(value, (str, bytes)):
        # a stored JSON null is the value null, not SQL NULL: canonicalise it directly
        return json.dumps(json.loads(value), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    if base == "decimal" and not isinstance(value, (Decimal, str)):
        value = Decimal(str(value))
    if base == "decimal":
        return encode_value(ptype, Decimal(str(value)).quantize(Decimal(1).scaleb(-(ptype.scale or 0)),
                                                                context=_DEC))
    if base == "float64":
        return repr(float(value))
    return encode_value(ptype, value)


# --- records -----------------------------------------------------------------------------------

def quote(text: str | None) -> str:
    return NULL if text is None else '"' + text.replace('"', '""') + '"'


def encode_record(op: str, fields: Sequence[str | None]) -> str:
    """One CSV record (with its LF) from already-canonical field texts."""
    return op + "," + ",".join([quote(f) for f in fields]) + "\n"


class RowEncoder:
    """Turns source rows (JSON objects or driver tuples) into canonical fields and CSV records.

    Used by the hub when publishing. Errors name the row number and column so the publisher can fix
    the source: ``DataError`` with code ``data-invalid``.
    """

    def __init__(self, schema: Schema, kind: str) -> None:
        self.schema = schema
        self.kind = kind
        self._cols = list(schema.columns)
        self._names = set(schema.names)
        self._pk = set(schema.primary_key)

    def fields_from_mapping(self, row: Any, where: str) -> tuple[str, list[str | None]]:
        if not isinstance(row, dict):
            raise DataError(f"{where}: expected a JSON object")
        op = row.get("_op", "I")
        if self.kind == "snapshot":
            if op != "I":
                raise DataError(f"{where}: snapshot rows cannot carry _op={op!r}")
        elif op not in OPS:
            raise DataError(f"{where}: _op must be \"I\", \"U\" or \"D\", got {op!r}")
        unknown = [k for k in row if k != "_op" and k not in self._names]
        if unknown:
            raise DataError(f"{where}: unknown column(s) {', '.join(map(repr, sorted(unknown)))}")
        return op, self._fields([row.get(c.name) for c in self._cols], op, where)

    def fields_from_sequence(self, values: Sequence[Any], op: str, where: str) -> list[str | None]:
        if len(values) != len(self._cols):
            raise DataError(f"{where}: {len(values)} values for {len(self._cols)} columns")
        return self._fields(values, op, where)

    def _fields(self, values: Sequence[Any], op: str, where: str) -> list[str | None]:
        out: list[str | None] = []
        for col, value in zip(self._cols, values):
            if value is None:
                if not col.nullable and (op != "D" or col.name in self._pk):
                    raise DataError(f"{where}: column {col.name!r} may not be null")
                out.append(None)
                continue
            try:
                out.append(encode_value(col.type, value))
            except (ValueError, TypeError, OverflowError) as e:
                raise DataError(f"{where}: column {col.name!r} ({col.type}): {e}") from None
        return out


# --- checksum ----------------------------------------------------------------------------------

_MASK64 = (1 << 64) - 1


def row_hash(fields: Sequence[str | None]) -> int:
    """64-bit hash of one row's canonical fields: SHA-256 over the UTF-8 texts joined by NUL, NULL as 0xFF.

    Unambiguous because a canonical text never holds NUL (refused above) and valid UTF-8 never holds 0xFF;
    databases spell it in one cheap expression (no per-field length prefix), see docs/envelope.md.
    """
    return int.from_bytes(hashlib.sha256(b"\x00".join(
        [b"\xff" if f is None else f.encode() for f in fields])).digest()[:8], "big")


class Checksum:
    """Order-independent multiset checksum: count plus the sum of 64-bit row hashes modulo 2**64."""

    __slots__ = ("count", "total")

    def __init__(self, count: int = 0, total: int = 0) -> None:
        self.count = count
        self.total = total

    def add(self, fields: Sequence[str | None]) -> None:
        self.count += 1
        self.total = (self.total + row_hash(fields)) & _MASK64

    def __add__(self, other: "Checksum") -> "Checksum":
        """The figure of two disjoint sets of rows (the sum is order-independent, so it splits freely)."""
        return Checksum(self.count + other.count, (self.total + other.total) & _MASK64)

    def hexdigest(self) -> str:
        return f"{self.total:016x}"

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.count, "sum64": self.hexdigest()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Checksum) and (self.count, self.total) == (other.count, other.total)

    def __repr__(self) -> str:
        return f"Checksum(rows={self.count}, sum64={self.hexdigest()})"


# --- manifest ----------------------------------------------------------------------------------

def manifest_line(dataset: str, kind: str, schema: Schema, rows: int, **extra: Any) -> bytes:
    doc = {"format": FORMAT, "dataset": dataset, "kind": kind, "schema": schema.to_dict(),
           "rows": rows, "columns": ["_op", *schema.names], "null": NULL, **extra}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


class Manifest:
    """The parsed first line of a payload."""

    def __init__(self, doc: dict[str, Any]) -> None:
        if doc.get("format") != FORMAT:
            raise DataError(f"payload format {doc.get('format')!r} is not {FORMAT!r}",
                            remedy="Upgrade the agent to read newer payload formats.")
        self.doc = doc
        self.dataset: str = doc["dataset"]
        self.kind: str = doc["kind"]
        self.schema = Schema.from_dict(doc["schema"])
        self.rows: int = int(doc["rows"])
        if doc.get("columns") != ["_op", *self.schema.names]:
            raise DataError("payload column list does not match its schema")

    @classmethod
    def read_from(cls, stream: IO[bytes]) -> "Manifest":
        """Read the manifest line from a binary stream, leaving the stream at the first CSV record."""
        line = stream.readline(MAX_MANIFEST + 1)
        if not line.endswith(b"\n") or len(line) > MAX_MANIFEST:
            raise DataError("payload manifest is missing or longer than 1 MiB")
        try:
            return cls(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError) as e:  # AttributeError: JSON but not an object
            raise DataError(f"payload manifest is malformed: {e}") from None


# --- reading records in Python -----------------------------------------------------------------

class _LineTap:
    """Feeds lines to csv.reader and keeps the raw text of the current record."""

    __slots__ = ("_lines", "raw")

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.raw: list[str] = []

    def __iter__(self) -> "_LineTap":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.raw.append(line)
        return line


def _retokenize(record: str) -> list[str | None]:
    """Split one raw record honouring quotes, so bare NULL and quoted "NULL" differ."""
    out: list[str | None] = []
    pos = 0
    text = record[:-1] if record.endswith("\n") else record
    while True:
        m = _FIELD_RE.match(text, pos)
        if m is None:  # pragma: no cover - the pattern matches the empty string
            raise DataError("malformed CSV record")
        if m.group(1) is not None:
            out.append(m.group(1).replace('""', '"'))
        else:
            bare = m.group(2)
            out.append(None if bare == NULL else bare)
        pos = m.end()
        if pos >= len(text):
            break
        if text[pos] != ",":
            raise DataError("malformed CSV record: text after a closing quote")
        pos += 1
    return out


def iter_records(stream: IO[bytes]) -> Iterator[tuple[str, list[str | None]]]:
    """Yield ``(op, fields)`` from the CSV part of a payload; NULL fields are ``None``.

    csv.reader (C) does the work; a record is re-read by hand only in the rare case that it holds the
    quoted text "NULL" somewhere, because csv.reader cannot tell a bare NULL from a quoted one.
    """
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="")
    tap = _LineTap(iter(text))
    try:
        for row in csv.reader(tap, strict=True):
            raw = tap.raw
            tap.raw = []
            if NULL in row:
                record = "".join(raw)
                # every value is quoted: without a quoted "NULL" in the record, each NULL field is bare
                row = _retokenize(record) if '"NULL"' in record else [None if f == NULL else f for f in row]
            if not row or row[0] not in OPS:
                raise DataError(f"malformed record: operation {row[0] if row else ''!r} is not I, U or D")
            yield row[0], row[1:]  # type: ignore[misc]
    except csv.Error as e:
        raise DataError(f"malformed CSV in payload: {e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"payload is not valid UTF-8: {e}") from None
    finally:
        text.detach()


def write_payload(out: IO[bytes], dataset: str, kind: str, schema: Schema,
                  records: Iterable[tuple[str, Sequence[str | None]]], rows: int) -> Checksum:
    """Write a whole payload (manifest + records) to ``out``; returns the checksum of the rows."""
    out.write(manifest_line(dataset, kind, schema, rows))
    ck = Checksum()
    for op, fields in records:
        out.write(encode_record(op, fields).encode())
        ck.add(fields)
    return ck


__all__ = [
    "FORMAT", "NULL", "Checksum", "Column", "Manifest", "RowEncoder", "canonical_from_db",
    "decode_value", "encode_record", "encode_value", "iter_records", "manifest_line", "quote",
    "row_hash", "write_payload",
]
