"""SQLite connector: the embedded default; executemany in one transaction, STRICT tables, canonical texts.

SQLite has no server-side bulk path, so the Python path (``_load.load_rows``) is its fast path: records
are parsed with the C csv reader, converted only where SQLite stores a number or blob, and bound with
executemany into a temporary staging table, merged with ``INSERT … ON CONFLICT``. Tables are STRICT so a
value of the wrong storage class is refused (and quarantined) instead of being stored as it comes.
Everything else is text in the payload's canonical form, which round-trips exactly.
"""

from __future__ import annotations

import base64
import datetime as dt
import functools
import hashlib
import re
import sqlite3
from typing import Any, Sequence

import sqlalchemy as sa
from sqlalchemy import event

from agent.errors import (DatabaseBusy, DatabaseConfigError, DatabasePermission, DatabaseUnavailable,
                          DataError)
from agent.payload import Checksum, encode_value
from agent.schema import Column, PortableType, Schema

from ._checksum import canonicalizers, checksum_from_sql
from ._load import (Converter, by_column, finite_float, int_range, json_text, matching, max_length,
                    mapped, present)
from .api import Capabilities, ProbeItem
from .base import BaseConnector

_COL_RE = re.compile(r"(?:failed|column): ?\S*?\.?(\w+)$")


def _bool_one(text: str) -> int:
    if text not in ("0", "1"):
        raise ValueError(f"{text!r} is not a boolean (0 or 1)")
    return int(text)


def _bool_column(values: Sequence[Any]) -> list[Any]:
    if not set(values) <= {"0", "1", None}:
        raise ValueError("not a boolean (0 or 1)")
    return mapped(int, values)


_bool = by_column(_bool_one, _bool_column)


_UUID_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _canonical_check(ptype: PortableType) -> Converter:
    """A cheap check that a text is the canonical form of its type (encode_value's output), kept as is.

    Cheaper than re-encoding with payload.encode_value, which dominated SQLite's load profile.
    """
    b = ptype.base
    if b == "decimal":
        s, p = ptype.scale or 0, ptype.precision or 0
        pat = re.compile(rf"-?(\d{{1,{max(p - s, 1)}}})" + (rf"\.\d{{{s}}}" if s else ""))
        return matching(pat, str(ptype))
    if b == "uuid":
        return matching(_UUID_RE, str(ptype))
    parse, size = {"date": (dt.date.fromisoformat, 10), "time": (dt.time.fromisoformat, 15),
                   "timestamp": (dt.datetime.fromisoformat, 26),
                   "timestamptz": (lambda t: dt.datetime.fromisoformat(t[:26]) if t.endswith("+00:00")
                                   else _fail(t), 32)}.get(b, (None, 0))
    if parse is None:
        return functools.partial(encode_value, ptype)

    def check(text: str) -> str:
        if len(text) != size:
            raise ValueError(f"{text!r} is not a canonical {ptype}")
        parse(text)
        return text

    def column(values: Sequence[Any]) -> Sequence[Any]:
        texts = present(values)
        if texts and set(map(len, texts)) != {size}:
            raise ValueError(f"not a canonical {ptype}")
        for _ in map(parse, texts):   # raises at the first text that does not parse
            pass
        return values
    return by_column(check, column)


def _fail(text: str) -> None:
    raise ValueError(f"{text!r} is not in UTC canonical form")


def _binary(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class SQLiteConnector(BaseConnector):
    """The embedded connector (file database next to the agent's state, or any SQLite file)."""

    name = "sqlite"
    driver = "sqlite3"
    install_hint = "a Python built with the sqlite3 module"
    ph = "?"
    capabilities = Capabilities(bulk_path="executemany", transactional_ddl=True, atomic_swap=True,
                                max_identifier_length=128, schemas=False, timezone_type=False,
                                row_quarantine=True)

    # INT, not INTEGER: an INTEGER PRIMARY KEY is the rowid and turns a NULL key into a new number
    _STORAGE = {"int32": "INT", "int64": "INT", "bool": "INT", "float64": "REAL", "binary": "BLOB"}

    def _create_engine(self, url: str, options: dict[str, Any]) -> sa.Engine:
        engine = sa.create_engine(url, **options)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            # SQLAlchemy drives transactions itself; pysqlite's implicit BEGIN would break savepoints
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=10000", "foreign_keys=ON"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # IMMEDIATE takes the write lock up front: the checkpoint read is as good as FOR UPDATE
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def _names(self, name: str, schema_name: str | None) -> tuple[str | None, str]:
        # no schemas in SQLite: a sandbox "schema" is a name prefix
        return None, f"{schema_name}__{name}" if schema_name else name

    # --- DDL -------------------------------------------------------------------------------------

    def type_sql(self, ptype: PortableType) -> str:
        return self._STORAGE.get(ptype.base, "TEXT")

    def table_options(self) -> str:
        return " STRICT"

    def widen_column_sql(self, qname: str, old: Column, new: Column) -> list[str]:
        if self.type_sql(old.type) != self.type_sql(new.type):
            from agent.errors import SchemaConflict
            raise SchemaConflict(f"column {new.name!r}: SQLite cannot change its storage class "
                                 f"({old.type} -> {new.type}) in place")
        return []  # same storage class; lengths and scales are not enforced by SQLite

    def _create_staging(self, conn: sa.Connection, stg: str, schema: Schema, schema_name: str | None) -> str:
        name = self.q(stg)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{name}")
        cols = ", ".join(self.column_sql(c, staging=True) for c in schema.columns)
        conn.exec_driver_sql(f"CREATE TEMP TABLE {name} (_ord INTEGER PRIMARY KEY, _op TEXT NOT NULL, {cols})")
        return name

    def _swap(self, conn: sa.Connection, table: str, schema_name: str | None, shadow: str, old: str,
              live_exists: bool) -> None:
        if live_exists:
            conn.exec_driver_sql(f"DROP TABLE {self.qname(table, schema_name)}")
        conn.exec_driver_sql(f"ALTER TABLE {shadow} RENAME TO {self.q(self._names(table, schema_name)[1])}")

    # --- probe ---------------------------------------------------------------------------------

    version_sql = "SELECT sqlite_version()"

    def grant_hint(self, step: str, schema_name: str | None) -> str:
        return ("Make the database file and its directory writable by the agent's user "
                "(WAL mode writes -wal and -shm files next to it).")

    def _probe_settings(self, conn: sa.Connection, schema_name: str | None) -> list[ProbeItem]:
        version = sqlite3.sqlite_version_info
        mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
        return [
            ProbeItem("sqlite:version", version >= (3, 37), sqlite3.sqlite_version,
                      "" if version >= (3, 37) else "SQLite 3.37 or newer is needed for STRICT tables."),
            ProbeItem("sqlite:journal_mode", str(mode).lower() == "wal", str(mode),
                      "" if str(mode).lower() == "wal" else "The file system must support WAL (not a network share)."),
        ]

    # --- loading and merge -------------------------------------------------------------------------

    def _converters(self, schema: Schema, *, shadow: bool) -> list[Converter]:
        conv = {"int32": int_range(32), "int64": int_range(64), "float64": finite_float, "bool": _bool,
                "binary": _binary}
        out: list[Converter] = []
        for c in schema.columns:
            b = c.type.base
            if b == "string":   # SQLite stores any length: checked here, refused as elsewhere
                out.append(max_length(c.type.length or 0))
            elif b in conv:
                out.append(conv[b])
            elif b == "text":
                out.append(None)
            elif b == "json":
                out.append(json_text)
            else:               # kept as text: must be the canonical text of its type, as other databases check
                out.append(_canonical_check(c.type))
        return out

    def _upsert_sql(self, target: str, stg: str, schema: Schema, where: str) -> str:
        keys = self._key_list(schema)
        rest = [c for c in schema.names if c not in schema.primary_key]
        action = ("DO UPDATE SET " + ", ".join(f"{self.q(c)} = excluded.{self.q(c)}" for c in rest)
                  if rest else "DO NOTHING")
        cols = ", ".join(self.q(c) for c in schema.names)
        # in key order: the target's B-tree is then walked once instead of at random (180k upserts into
        # 220k rows: 1.63 s -> 0.58 s here, most of it the kernel paging in random pages)
        return (f"INSERT INTO {target} ({cols}) SELECT {self._select_cols(schema)} FROM {stg} s "
                f"WHERE s._op <> 'D'{where} ORDER BY {self._key_list(schema, 's')} ON CONFLICT ({keys}) {action}")

    def _repeated_key_sql(self, stg: str, schema: Schema) -> str | None:
        # the sort of the GROUP BY costs less than the NOT IN delete it saves on a batch without repeats
        return self._first_repeated_key_sql(stg, schema)

    def _touched_rows_sql(self, qtable: str, stg: str, schema: Schema) -> str:
        # read back in key order too. The LIMIT keeps SQLite from flattening the ordered subquery into
        # the join, which drops its ORDER BY (EXPLAIN QUERY PLAN: "SCAN s0" with no temp B-tree): the
        # read-back of 180k rows then looked them up at random, 1.04 s against 0.71 s in key order
        return self._touched_rows_in_key_order_sql(qtable, stg, schema, "CROSS JOIN", " LIMIT -1")

    def _stamp_sql(self, target: str, stg: str | None, schema: Schema) -> str:
        if stg is None:
            return super()._stamp_sql(target, stg, schema)
        return (f"UPDATE {target} AS t SET {self._lineage_sets()} FROM {stg} AS s "
                f"WHERE {self._pk_join(schema)} AND s._op <> 'D'")

    def _lineage_values(self, meta: Any) -> tuple[Any, Any]:
        seq, at = super()._lineage_values(meta)
        return seq, at.isoformat(" ", "microseconds")   # the canonical text a timestamp column holds

    def _canonicalizers(self, schema: Schema) -> list[Any]:
        # typed text columns hold the canonical text, checked on the way in: read back as it is. A
        # decimal keeps the scale it was written with, so after a widening (more scale) it is re-spelled.
        base = canonicalizers(schema)
        out: list[Any] = []
        for c, f in zip(schema.columns, base):
            b = c.type.base
            if b in ("date", "time", "timestamp", "timestamptz", "uuid", "json", "string", "text"):
                out.append(lambda v, f=f: v if v.__class__ is str else f(v))
            elif b == "decimal":
                pat = re.compile(r"-?\d+" + (rf"\.\d{{{c.type.scale}}}" if c.type.scale else ""))
                out.append(lambda v, f=f, pat=pat: v if v.__class__ is str and pat.fullmatch(v) else f(v))
            else:
                out.append(f)
        return out

    # --- reconciliation --------------------------------------------------------------------------------

    def _row_bytes_sql(self, schema: Schema, alias: str) -> str | None:
        """SQL of one row's hashed bytes (payload.row_hash's input), or None where Python must spell a
        column (float64: Python's shortest repr; binary: base64). The text columns hold canonical text
        already; a decimal whose scale is not its column's (written before a widening) is re-spelled by
        the edx_canon function."""
        pieces = []
        for i, c in enumerate(schema.columns):
            col, b = f"{alias}.{self.q(c.name)}", c.type.base
            if b in ("float64", "binary"):
                return None
            if b in ("int32", "int64", "bool"):
                text = f"CAST({col} AS TEXT)"
            elif b == "decimal":
                scale = c.type.scale or 0
                ok = (f"instr({col}, '.') > 0 AND length({col}) - instr({col}, '.') = {scale}" if scale
                      else f"instr({col}, '.') = 0")
                text = f"CASE WHEN {ok} THEN {col} ELSE edx_canon({i}, {col}) END"
            else:
                text = col
            pieces.append(f"coalesce({text}, x'ff')")
        return " || x'00' || ".join(pieces)

    def _checksum(self, conn: sa.Connection, qtable: str, schema: Schema, *, join_stg: str | None = None) -> Checksum:
        # SQLite concatenates each row's canonical bytes; Python only hashes them (reading typed rows back
        # and canonicalising them column by column cost 3-4x more)
        expr = self._row_bytes_sql(schema, "t") if self.checksum_in_sql else None
        if expr is None:
            return super()._checksum(conn, qtable, schema, join_stg=join_stg)
        src = self._checksum_source(qtable, schema, join_stg)
        canon = self._canonicalizers(schema)
        raw = conn.connection.driver_connection
        raw.create_function("edx_canon", 2, lambda i, v: None if v is None else canon[i](v), deterministic=True)
        factory, raw.text_factory = raw.text_factory, bytes
        count = total = 0
        sha = hashlib.sha256
        try:
            cur = raw.execute(f"SELECT {expr} FROM {src}")
            while part := cur.fetchmany(10000):
                count += len(part)
                total += sum(int.from_bytes(sha(r[0]).digest()[:8], "big") for r in part)
        finally:
            raw.text_factory = factory
        return checksum_from_sql(count, total)

    # --- errors --------------------------------------------------------------------------------------

    def _error_class(self, orig: BaseException) -> type | None:
        if isinstance(orig, (sqlite3.IntegrityError, sqlite3.DataError)):
            return DataError
        text = str(orig).lower()
        if isinstance(orig, sqlite3.OperationalError):
            if "locked" in text or "busy" in text:
                return DatabaseBusy
            if "unable to open" in text:
                return DatabaseUnavailable
            if "readonly" in text or "read-only" in text:
                return DatabasePermission
            if "too many columns" in text:
                return DatabaseConfigError
        return None

    def _error_column(self, exc: BaseException) -> str | None:
        m = _COL_RE.search(str(getattr(exc, "orig", exc)))
        return m.group(1) if m else None
