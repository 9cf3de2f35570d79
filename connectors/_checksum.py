"""Reconciliation checksums of rows read back from a database, computed exactly as payload.Checksum does.

Two ways to the same figure. The Python way reads rows back and canonicalises them like
``payload.canonical_from_db`` (with fast paths for the common types). The SQL way has the server hash
the canonical text of every row (SHA-256 of the UTF-8 fields joined by NUL, NULL as 0xFF, first 8 bytes
summed modulo 2**64), so no row crosses the wire; a connector offers it where the server can spell the
canonical text of every column type (float64's shortest repr cannot be, so such tables use Python).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any, Callable, Iterable, Sequence

from agent.payload import Checksum, canonical_from_db
from agent.schema import PortableType, Schema

_MASK64 = (1 << 64) - 1
_NULL = b"\xff"


def _canon(ptype: PortableType) -> Callable[[Any], str | None]:
    base = ptype.base
    slow = lambda v: canonical_from_db(ptype, v)  # noqa: E731
    if base in ("string", "text"):
        return lambda v: v if v.__class__ is str else slow(v)
    if base in ("int32", "int64"):
        return lambda v: str(v) if v.__class__ is int else slow(v)
    if base == "uuid":
        return lambda v: str(v) if isinstance(v, uuid.UUID) else slow(v)
    if base == "timestamp":
        return lambda v: v.isoformat(" ", "microseconds") if v.__class__ is dt.datetime else slow(v)
    if base == "date":
        return lambda v: v.isoformat() if v.__class__ is dt.date else slow(v)
    return slow


def canonicalizers(schema: Schema) -> list[Callable[[Any], str | None]]:
    return [_canon(c.type) for c in schema.columns]


_sha256 = hashlib.sha256


def row_hash_fast(fields: Sequence[str | None]) -> int:
    """payload.row_hash, inlined for the read-back loop."""
    return int.from_bytes(_sha256(b"\x00".join(
        [_NULL if f is None else f.encode() for f in fields])).digest()[:8], "big")


def checksum_rows(schema: Schema, rows: Iterable[Sequence[Any]],
                  canon: list[Callable[[Any], str | None]] | None = None) -> Checksum:
    """Checksum of database rows (values as the driver returns them, columns in schema order)."""
    canon = canon or canonicalizers(schema)
    pairs = list(zip(canon, range(len(canon))))
    count = total = 0
    for row in rows:
        fields = [None if row[i] is None else f(row[i]) for f, i in pairs]
        total += row_hash_fast(fields)
        count += 1
    return Checksum(count, total & _MASK64)


def checksum_from_sql(count: Any, total: Any) -> Checksum:
    """Checksum from the server's (count, sum of signed or unsigned 64-bit hashes)."""
    return Checksum(int(count or 0), int(total or 0) & _MASK64)
