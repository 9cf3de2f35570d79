"""The SQLAlchemy-based connector base: exactly-once apply, schema plan, quarantine and reconciliation.

A database module subclasses ``BaseConnector`` and overrides only what differs: the type map, the bulk
load, the merge and swap SQL, the checksum SQL and ``classify``. The order of an apply is fixed here:

    lock checkpoint -> refuse duplicates -> plan/evolve schema -> bulk load (fast path; slow path on
    refusal) -> merge or swap -> checksum -> lineage, quarantine, checkpoint -> source.finish() -> COMMIT

Databases whose DDL commits by itself (``capabilities.transactional_ddl`` False, i.e. MySQL) run DDL
before the transaction and swap snapshots after it; docs/connectors.md argues why that stays exactly once.
"""

from __future__ import annotations

import functools
import hashlib
import time
from importlib import import_module
from typing import Any

import sqlalchemy as sa

from agent import faults
from agent.errors import (AgentError, DataError, DriverMissing, IntegrityError,
                          ReconciliationError, SchemaConflict)
from agent.payload import Checksum, iter_records
from agent.schema import Column, PortableType, Schema

from . import _meta
from ._load import Converter, Quarantine, Replay, load_rows
from ._merge import MergeMixin
from .api import AlreadyApplied, ApplyResult, BatchMeta, BatchSource, Capabilities, Checkpoint, ProbeItem


def translated(fn: Any) -> Any:
    """Public methods raise only the project's error tree: driver errors are classified at this seam."""
    @functools.wraps(fn)
    def wrapper(self: "BaseConnector", *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(self, *args, **kwargs)
        except AgentError:
            raise
        except Exception as e:  # driver, SQLAlchemy and OS errors
            raise self.classify(e) from e
    return wrapper


class Refused(Exception):
    """The bulk path took the batch but the database refused or altered some rows (warnings)."""


class BaseConnector(MergeMixin):
    """Shared logic of every SQL connector; see the module docstring for the order of an apply."""

    name = "base"
    capabilities: Capabilities
    driver = ""                    # DB-API module imported lazily
    install_hint = ""              # what to install when the driver is missing
    ph = "%s"                      # the driver's positional placeholder

    def __init__(self, url: str, **options: Any) -> None:
        self.url = url
        self.checksum_in_sql = options.pop("checksum_in_sql", True)
        # "always": every apply reads back its rows' checksum (the receipt carries it); "expected": only
        # when the batch brings the hub's figure to compare with; "count": never read back, compare the
        # row counts the database reports (the table's for a snapshot) with the hub's (sync.reconcile)
        self.reconcile = options.pop("reconcile", "always")
        if self.reconcile not in ("always", "expected", "count"):
            raise ValueError(f"reconcile must be always, expected or count, not {self.reconcile!r}")
        self.chunk_rows = int(options.pop("chunk_rows", 5000))
        # per-row lineage (注明数据来源 down to the row): _edx_batch and _edx_applied_at on every row
        self.lineage_columns = bool(options.pop("lineage_columns", False))
        self._import_driver()
        self.engine = self._create_engine(url, options)
        self._prep = self.engine.dialect.identifier_preparer
        self._meta_tables: dict[str, sa.Table] | None = None
        self._checked: set[Any] = set()

    # --- engine and names ---------------------------------------------------------------------

    @classmethod
    def check_driver(cls) -> None:
        """Import the DB-API module now; DriverMissing says what to install (drivers load lazily)."""
        try:
            import_module(cls.driver)
        except ImportError as e:
            raise DriverMissing(f"{cls.driver} ({e})", remedy=f"Install it: {cls.install_hint}") from None

    def _import_driver(self) -> None:
        self.check_driver()

    def _create_engine(self, url: str, options: dict[str, Any]) -> sa.Engine:
        return sa.create_engine(url, pool_pre_ping=True, **options)

    def q(self, name: str) -> str:
        return self._prep.quote_identifier(name)

    def _names(self, name: str, schema_name: str | None) -> tuple[str | None, str]:
        """(schema, table) as stored; SQLite overrides this to prefix names instead."""
        return schema_name, name

    def qname(self, name: str, schema_name: str | None = None) -> str:
        schema, table = self._names(name, schema_name)
        return f"{self.q(schema)}.{self.q(table)}" if schema else self.q(table)

    def aux_name(self, kind: str, table: str) -> str:
        """Name of a helper table (shadow, old, staging) that fits the identifier limit."""
        name = f"edx_{kind}_{table}"
        limit = self.capabilities.max_identifier_length
        if len(name) > limit:
            name = name[:limit - 9] + "_" + hashlib.sha256(table.encode()).hexdigest()[:8]
        return name

    def _meta(self) -> dict[str, sa.Table]:
        """The meta tables, in the connection's default schema whatever schema the data goes to.

        ``get_checkpoint(dataset)`` must find a batch's checkpoint however it was applied, so the
        checkpoint of a sandbox (joint-debug) table lives with the others; datasets keep them apart.
        """
        if self._meta_tables is None:
            names = {n: n for n in (_meta.CHECKPOINT, _meta.LINEAGE, _meta.QUARANTINE, _meta.SCHEMA)}
            self._meta_tables = _meta.build(names, None)
        return self._meta_tables

    @staticmethod
    def _schema_key(table: str, schema_name: str | None) -> str:
        return f"{schema_name}.{table}" if schema_name else table

    def _table_exists(self, conn: sa.Connection, table: str, schema_name: str | None) -> bool:
        schema, name = self._names(table, schema_name)
        return sa.inspect(conn).has_table(name, schema=schema)

    # --- the Connector contract: meta tables and checkpoint -------------------------------------

    @translated
    def ensure_meta_tables(self) -> None:
        if "meta" in self._checked:
            return
        tables = self._meta()
        with self.engine.begin() as conn:
            next(iter(tables.values())).metadata.create_all(conn, checkfirst=True)
            if not self.capabilities.transactional_ddl:  # a crash skips the finally that drops helper tables,
                for t in sa.inspect(conn).get_table_names():  # and a committed staging table holds a row copy
                    if t.startswith(("edx_stg_", "edx_new_", "edx_old_")):
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.q(t)}")
        self._checked.add("meta")

    @translated
    def get_checkpoint(self, dataset: str) -> Checkpoint | None:
        self.ensure_meta_tables()
        with self.engine.connect() as conn:
            return _meta.read_checkpoint(conn, self._meta()[_meta.CHECKPOINT], dataset, False)

    @translated
    def lineage_digest(self, dataset: str, seq: int) -> str | None:
        self.ensure_meta_tables()
        t = self._meta()[_meta.LINEAGE]
        with self.engine.connect() as conn:
            return conn.execute(sa.select(t.c.batch_digest).where(
                t.c.dataset == dataset, t.c.seq == seq)).scalar()

    # --- DDL ----------------------------------------------------------------------------------

    def type_sql(self, ptype: PortableType) -> str:
        raise NotImplementedError

    def staging_type_sql(self, ptype: PortableType) -> str:
        return self.type_sql(ptype)

    def column_sql(self, col: Column, *, staging: bool = False) -> str:
        t = self.staging_type_sql(col.type) if staging else self.type_sql(col.type)
        return f"{self.q(col.name)} {t}" + ("" if staging or col.nullable else " NOT NULL")

    def table_options(self) -> str:
        return ""

    def create_table_sql(self, qname: str, schema: Schema, *, pk_name: str | None = None) -> str:
        cols = [self.column_sql(c) for c in schema.columns]
        pk = self._key_list(schema)
        cons = f"CONSTRAINT {self.q(pk_name)} " if pk_name else ""
        return f"CREATE TABLE {qname} ({', '.join(cols)}, {cons}PRIMARY KEY ({pk})){self.table_options()}"

    def add_column_sql(self, qname: str, col: Column) -> list[str]:
        return [f"ALTER TABLE {qname} ADD COLUMN {self.column_sql(col)}"]

    def widen_column_sql(self, qname: str, old: Column, new: Column) -> list[str]:
        raise NotImplementedError

    @translated
    def plan_schema(self, table: str, schema: Schema, schema_name: str | None = None) -> list[str]:
        self.ensure_meta_tables()
        with self.engine.connect() as conn:
            return self._plan(conn, table, schema, schema_name)[0]

    def _plan(self, conn: sa.Connection, table: str, schema: Schema,
              schema_name: str | None) -> tuple[list[str], bool]:
        """(DDL to run, whether edx_schema must be rewritten) for a changes batch on ``table``."""
        qn = self.qname(table, schema_name)
        old = _meta.read_schema(conn, self._meta()[_meta.SCHEMA], self._schema_key(table, schema_name))
        if not self._table_exists(conn, table, schema_name):
            if old is not None:  # the agent made it: changes on a fresh empty table would silently lose rows
                raise SchemaConflict(f"table {table} was dropped or renamed outside edx-agent",
                                     remedy="Restore the table, or ask for a fresh snapshot with "
                                            "`edx-agent resync DATASET`.")
            return [self.create_table_sql(qn, schema)], True
        if old is None:
            raise SchemaConflict(f"table {table} exists but edx-agent did not create it (no edx_schema entry)",
                                 remedy="Drop or rename the table, or let a snapshot replace it "
                                        "(`edx-agent resync DATASET`).")
        if old.canonical_bytes() == schema.canonical_bytes():
            return [], old.version != schema.version
        diff = old.evolution_to(schema)
        if not diff.safe:
            raise SchemaConflict("; ".join(diff.refused))
        ddl: list[str] = []
        for col in diff.added:
            ddl += self.add_column_sql(qn, col)
        for prev, col in diff.widened:
            ddl += self.widen_column_sql(qn, prev, col)
        return ddl, True

    def _evolve(self, conn: sa.Connection, table: str, schema: Schema, schema_name: str | None) -> list[str]:
        ddl, save = self._plan(conn, table, schema, schema_name)
        for stmt in ddl:
            conn.exec_driver_sql(stmt)
        if save:
            _meta.write_schema(conn, self._meta()[_meta.SCHEMA], self._schema_key(table, schema_name), schema,
                               _meta.utcnow())
        return ddl

    @translated
    def drop_table(self, table: str, schema_name: str | None = None) -> None:
        self.ensure_meta_tables()
        t = self._meta()[_meta.SCHEMA]
        with self.engine.begin() as conn:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {self.qname(table, schema_name)}")
            conn.execute(t.delete().where(t.c.table_name == self._schema_key(table, schema_name)))

    @translated
    def purge(self, dataset: str, table: str, schema_name: str | None = None) -> int:
        self.ensure_meta_tables()
        cp = self._meta()[_meta.CHECKPOINT]
        with self.engine.begin() as conn:
            n = 0
            if self._table_exists(conn, table, schema_name):
                n = conn.exec_driver_sql(f"DELETE FROM {self.qname(table, schema_name)}").rowcount
            conn.execute(cp.delete().where(cp.c.dataset == dataset))
        return max(n, 0)

    # --- per-row lineage columns (off by default) ----------------------------------------------------

    LINEAGE = (Column("_edx_batch", PortableType.parse("int64")),
               Column("_edx_applied_at", PortableType.parse("timestamp")))

    def _ensure_lineage_columns(self, conn: sa.Connection, qtable: str, table: str,
                                schema_name: str | None) -> None:
        """Add the lineage columns to a table that lacks them (created before the option was turned on)."""
        sch, name = self._names(table, schema_name)
        have = {c["name"].lower() for c in sa.inspect(conn).get_columns(name, schema=sch)}
        self._add_lineage_columns(conn, qtable, have)

    def _add_lineage_columns(self, conn: sa.Connection, qtable: str, have: frozenset[str] | set[str] = frozenset()) -> None:
        """Add the lineage columns not in ``have`` (a new shadow has none), when the option is on."""
        if self.lineage_columns:
            for col in self.LINEAGE:
                if col.name not in have:
                    for stmt in self.add_column_sql(qtable, col):
                        conn.exec_driver_sql(stmt)

    def _lineage_values(self, meta: BatchMeta) -> tuple[Any, Any]:
        """(batch seq, applied at) as bound parameters: UTC wall-clock, as the portable timestamp type."""
        return meta.seq, _meta.utcnow().replace(tzinfo=None)

    def _stamp_sql(self, target: str, stg: str | None, schema: Schema) -> str:
        """UPDATE setting both lineage columns (two placeholders) on every row of ``target`` (a snapshot's
        shadow, ``stg`` None) or on the rows a change batch upserted (keys left in ``stg`` with I/U)."""
        sets = self._lineage_sets()
        if stg is None:
            return f"UPDATE {target} SET {sets}"
        keys = self._key_list(schema)
        return f"UPDATE {target} SET {sets} WHERE ({keys}) IN (SELECT {keys} FROM {stg} s WHERE s._op <> 'D')"

    def _lineage_sets(self, alias: str = "") -> str:
        a = f"{alias}." if alias else ""
        return f"{a}{self.q('_edx_batch')} = {self.ph}, {a}{self.q('_edx_applied_at')} = {self.ph}"

    def _stamp(self, conn: sa.Connection, meta: BatchMeta, target: str, stg: str | None, schema: Schema) -> None:
        conn.exec_driver_sql(self._stamp_sql(target, stg, schema), self._lineage_values(meta))

    # --- hooks a database module fills in ---------------------------------------------------------

    def _session_checks(self, conn: sa.Connection, table: str, schema_name: str | None) -> None:
        """Refuse before writing when the session or table would lose characters (MySQL charset...)."""

    def _bulk_available(self, conn: sa.Connection) -> bool:
        return False

    def _bulk_load(self, conn: sa.Connection, qtable: str, schema: Schema, stream: Any, *,
                   shadow: bool) -> int:
        raise NotImplementedError

    def _converters(self, schema: Schema, *, shadow: bool) -> list[Converter]:
        return [None] * len(schema.columns)

    def _row_layout(self, *, shadow: bool) -> tuple[bool, bool]:
        """(with _ord, with _op) columns in the table the Python path inserts into."""
        return (False, False) if shadow else (True, True)

    def _create_staging(self, conn: sa.Connection, stg: str, schema: Schema, schema_name: str | None) -> str:
        raise NotImplementedError

    def _create_shadow(self, conn: sa.Connection, shadow: str, schema: Schema, *, bulk: bool,
                       pk_name: str | None = None) -> None:
        conn.exec_driver_sql(self.create_table_sql(shadow, schema, pk_name=pk_name))

    def _finish_shadow(self, conn: sa.Connection, shadow: str, schema: Schema, *, bulk: bool) -> None:
        """Post-load work on a shadow table (PostgreSQL: decode binary, drop _op, build the key)."""

    def _swap(self, conn: sa.Connection, table: str, schema_name: str | None, shadow: str, old: str,
              live_exists: bool) -> None:
        raise NotImplementedError

    def _is_refusal(self, exc: BaseException) -> bool:
        """Whether the database refused a row's data (quarantinable) rather than failing as a whole."""
        return isinstance(self.classify(exc), DataError)

    def _error_column(self, exc: BaseException) -> str | None:
        return None

    def _error_class(self, orig: BaseException) -> type | None:
        """The error-tree class for a driver exception, or None to use the generic rules."""
        return None

    def _nonfinite_sql(self, col: str) -> str | None:
        """A predicate true where a float column holds NaN or an infinity (a database that stores them)."""
        return None

    def _check_bulk(self, conn: sa.Connection, qtable: str, schema: Schema) -> None:
        """Refuse a bulk load that stored values the portable types exclude (the slow path quarantines them).

        NaN and the infinities are not portable float64 values; PostgreSQL's COPY takes them. (Only
        databases with ``LIMIT`` define the predicate: the others refuse such values themselves.)
        """
        preds = [p for c in schema.columns if c.type.base == "float64"
                 for p in [self._nonfinite_sql(self.q(c.name))] if p]
        if preds and conn.exec_driver_sql(f"SELECT 1 FROM {qtable} WHERE {' OR '.join(preds)} "
                                          "LIMIT 1").first():
            raise Refused("NaN or infinity in a float64 column")

    # --- loading ----------------------------------------------------------------------------------

    def _insert_sql(self, qtable: str, schema: Schema, *, shadow: bool) -> str:
        with_ord, with_op = self._row_layout(shadow=shadow)
        cols = (["_ord"] if with_ord else []) + (["_op"] if with_op else []) + schema.names
        return (f"INSERT INTO {qtable} ({', '.join(self.q(c) for c in cols)}) "
                f"VALUES ({', '.join([self.ph] * len(cols))})")

    def _load_python(self, conn: sa.Connection, qtable: str, schema: Schema, stream: Any,
                     quar: Quarantine, *, shadow: bool) -> int:
        with_ord, with_op = self._row_layout(shadow=shadow)
        return load_rows(conn, self._insert_sql(qtable, schema, shadow=shadow), iter_records(stream),
                         self._converters(schema, shadow=shadow), quar, self._is_refusal,
                         self._error_column, with_ord=with_ord, with_op=with_op, names=schema.names,
                         chunk=self.chunk_rows)

    def _load(self, conn: sa.Connection, qtable: str, schema: Schema, source: BatchSource,
              quar: Quarantine, *, shadow: bool, redo: Any = None) -> int:
        """Fast path first; if the database refuses rows, roll it back and isolate them on the slow path.

        ``redo`` recreates the table after the savepoint rollback when the table itself was created
        inside it (PostgreSQL's shadow without a key).
        """
        if not self._bulk_available(conn):
            n = self._load_python(conn, qtable, schema, source.rows, quar, shadow=shadow)
            if shadow:   # created for the bulk path: its key is still to be built
                self._finish_shadow(conn, qtable, schema, bulk=True)
            return n
        replay = Replay(source)
        try:
            sp = conn.begin_nested()
            try:
                n = self._bulk_load(conn, qtable, schema, replay.stream, shadow=shadow)
                self._check_bulk(conn, qtable, schema)
                if shadow:
                    self._finish_shadow(conn, qtable, schema, bulk=True)
                sp.commit()
                return n
            except (Refused, sa.exc.DBAPIError) as e:
                if isinstance(e, sa.exc.DBAPIError) and not self._is_refusal(e):
                    raise
                sp.rollback()
            if redo is not None:
                redo()
            n = self._load_python(conn, qtable, schema, replay.again(), quar, shadow=shadow)
            if shadow:
                self._finish_shadow(conn, qtable, schema, bulk=False)
            return n
        finally:
            replay.close()

    # --- apply --------------------------------------------------------------------------------------

    @translated
    def apply(self, meta: BatchMeta, source: BatchSource) -> ApplyResult:
        return self._apply(meta, source)

    def _apply(self, meta: BatchMeta, source: BatchSource) -> ApplyResult:
        man = source.manifest
        if man.kind != meta.kind or man.dataset != meta.dataset:
            raise IntegrityError(f"payload is {man.kind} of {man.dataset!r}, batch is {meta.kind} of "
                                 f"{meta.dataset!r}")
        if meta.kind not in ("snapshot", "changes"):
            raise DataError(f"unknown batch kind {meta.kind!r}")
        self.ensure_meta_tables()
        result = ApplyResult(meta.dataset, meta.seq)
        quar = Quarantine(man.schema, meta.quarantine_limit, man.rows)
        with self.engine.connect() as conn:
            self._session_checks(conn, meta.table, meta.schema_name)
            # refuse a duplicate before any DDL (the locked re-check inside the transaction decides)
            self._check_seq(self._read_cp(conn, meta, lock=False), meta)
            conn.rollback()
            if meta.kind == "snapshot":
                self._apply_snapshot(conn, meta, source, man.schema, quar, result)
            else:
                self._apply_changes(conn, meta, source, man.schema, quar, result)
        return result

    def _read_cp(self, conn: sa.Connection, meta: BatchMeta, *, lock: bool) -> Checkpoint | None:
        return _meta.read_checkpoint(conn, self._meta()[_meta.CHECKPOINT], meta.dataset, lock)

    @staticmethod
    def _check_seq(cp: Checkpoint | None, meta: BatchMeta) -> None:
        if meta.kind == "snapshot":
            # a snapshot may re-apply its own seq (resync); only an older one is refused
            if cp is not None and cp.seq > meta.seq:
                raise AlreadyApplied(f"{meta.dataset}#{meta.seq}")
            return
        if cp is not None and cp.seq >= meta.seq:
            raise AlreadyApplied(f"{meta.dataset}#{meta.seq}")
        have = cp.seq if cp is not None else 0
        if meta.prev_seq and have != meta.prev_seq:
            raise IntegrityError(f"batch {meta.dataset}#{meta.seq} follows #{meta.prev_seq} but the target "
                                 f"holds #{have}", remedy="Resync the dataset with a snapshot.")

    def _wants_checksum(self, meta: BatchMeta) -> bool:
        if self._counts_only():
            return False
        return self.reconcile == "always" or meta.expected_checksum is not None

    def _counts_only(self) -> bool:
        return self.reconcile == "count"

    @staticmethod
    def _figure(quar: Quarantine, ck: Checksum | None, counted: int | None, deleted_keys: int) -> dict[str, Any]:
        """The receipt's figure: the checksum, or the counts alone (reconcile="count"), or nothing."""
        if ck is not None:
            got: dict[str, Any] = {**ck.to_dict(), "deleted": deleted_keys}
        elif counted is not None:
            got = {"rows": counted, "deleted": deleted_keys}
        else:
            return {}
        if quar.entries:
            got["quarantined"] = len(quar)
        return got

    @staticmethod
    def _compare(meta: BatchMeta, quar: Quarantine, got: dict[str, Any]) -> None:
        """A figure that differs from the hub's is an error (with quarantined rows the hub's figure covers
        rows refused on purpose, so it is reported, not compared); counts alone compare counts."""
        exp = meta.expected_checksum
        if exp is None or quar.entries or not got:
            return
        keys = ("rows", "sum64", "deleted") if "sum64" in got else ("rows", "deleted")
        if any(str(exp.get(k, 0)).lower() != str(got.get(k, 0)).lower() for k in keys):
            raise ReconciliationError(f"expected {exp}, the database holds {got}")

    def _finish_batch(self, conn: sa.Connection, meta: BatchMeta, schema: Schema, quar: Quarantine,
                      result: ApplyResult, cp_exists: bool, ck: Checksum | None, deleted_keys: int,
                      counted: int | None = None) -> None:
        """Checksum or counts, reconciliation, quarantine, lineage and checkpoint: the end of every transaction."""
        result.quarantined = len(quar)
        result.checksum = self._figure(quar, ck, counted, deleted_keys)
        self._compare(meta, quar, result.checksum)
        m = self._meta()
        now = _meta.utcnow()
        _meta.write_quarantine(conn, m[_meta.QUARANTINE], meta, quar.entries, now)
        _meta.write_lineage(conn, m[_meta.LINEAGE], meta, result, now)
        _meta.write_checkpoint(conn, m[_meta.CHECKPOINT], meta, cp_exists, now)

    def _apply_changes(self, conn: sa.Connection, meta: BatchMeta, source: BatchSource, schema: Schema,
                       quar: Quarantine, result: ApplyResult) -> None:
        transactional = self.capabilities.transactional_ddl
        target = self.qname(meta.table, meta.schema_name)
        stg = None
        t0 = time.perf_counter()
        try:
            if not transactional:
                self._evolve(conn, meta.table, schema, meta.schema_name)
                if self.lineage_columns:
                    self._ensure_lineage_columns(conn, target, meta.table, meta.schema_name)
                conn.commit()
                stg = self._create_staging(conn, self.aux_name("stg", meta.table), schema, meta.schema_name)
                conn.commit()
            with conn.begin():
                cp = self._read_cp(conn, meta, lock=True)
                self._check_seq(cp, meta)
                if transactional:
                    self._evolve(conn, meta.table, schema, meta.schema_name)
                    if self.lineage_columns:
                        self._ensure_lineage_columns(conn, target, meta.table, meta.schema_name)
                    stg = self._create_staging(conn, self.aux_name("stg", meta.table), schema, meta.schema_name)
                t1 = time.perf_counter()
                result.rows = self._load(conn, stg, schema, source, quar, shadow=False)
                faults.point("staging_load")
                t2 = time.perf_counter()
                self._drop_quarantined_keys(conn, stg, schema, quar)
                self._quarantine_nulls(conn, stg, schema, quar)
                want = self._wants_checksum(meta)
                ins, upd, dele, dkeys, ck = self._merge(conn, target, stg, schema, quar, checksum=want)
                if self.lineage_columns:
                    self._stamp(conn, meta, target, stg, schema)
                faults.point("merge")
                result.inserted, result.updated, result.deleted = ins, upd, dele
                t3 = time.perf_counter()
                if want and ck is None:
                    ck = self._checksum(conn, target, schema, join_stg=stg)
                # counts alone: the keys the batch left in the table as the merge counted them
                self._finish_batch(conn, meta, schema, quar, result, cp is not None, ck, dkeys,
                                   ins + upd if self._counts_only() else None)
                faults.point("checkpoint_write")
                if transactional:
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {stg}")
                source.finish()
                faults.point("commit")
                t4 = time.perf_counter()
            faults.point("committed")
            result.phases = {"prepare": t1 - t0, "load": t2 - t1, "merge": t3 - t2, "checksum": t4 - t3,
                             "commit": time.perf_counter() - t4}
        finally:
            if not transactional and stg is not None:
                self._drop_quietly(conn, stg)

    def _apply_snapshot(self, conn: sa.Connection, meta: BatchMeta, source: BatchSource, schema: Schema,
                        quar: Quarantine, result: ApplyResult) -> None:
        transactional = self.capabilities.transactional_ddl
        table, sn = meta.table, meta.schema_name
        shadow = self.qname(self.aux_name("new", table), sn)
        old = self.qname(self.aux_name("old", table), sn)
        pk_name = self.aux_name("pk", table)
        t0 = time.perf_counter()
        swapped = False
        try:
            if not transactional:
                # a leftover shadow is from an interrupted snapshot: drop it and start again
                for t in (shadow, old):
                    conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t}")
                self._create_shadow(conn, shadow, schema, bulk=True, pk_name=pk_name)
                self._add_lineage_columns(conn, shadow)
                conn.commit()
            with conn.begin():
                cp = self._read_cp(conn, meta, lock=True)
                self._check_seq(cp, meta)
                redo = None
                if transactional:
                    for t in (shadow, old):
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {t}")
                    self._create_shadow(conn, shadow, schema, bulk=True, pk_name=pk_name)
                    self._add_lineage_columns(conn, shadow)

                    def redo() -> None:
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {shadow}")
                        self._create_shadow(conn, shadow, schema, bulk=False, pk_name=pk_name)
                        self._add_lineage_columns(conn, shadow)
                t1 = time.perf_counter()
                result.rows = self._load(conn, shadow, schema, source, quar, shadow=True, redo=redo)
                if self.lineage_columns:
                    self._stamp(conn, meta, shadow, None, schema)
                faults.point("staging_load")
                t2 = time.perf_counter()
                if transactional:
                    ck = self._checksum(conn, shadow, schema) if self._wants_checksum(meta) else None
                    counted = self._count(conn, shadow) if self._counts_only() else None
                    live_exists = self._table_exists(conn, table, sn)
                    result.inserted = self._rows_in(ck, counted, result, quar)
                    result.deleted = self._count(conn, self.qname(table, sn)) if live_exists else 0
                    t3 = time.perf_counter()
                    self._swap(conn, table, sn, shadow, old, live_exists)
                    faults.point("merge")
                    swapped = True
                    _meta.write_schema(conn, self._meta()[_meta.SCHEMA], self._schema_key(table, sn), schema, _meta.utcnow())
                    self._finish_batch(conn, meta, schema, quar, result, cp is not None, ck, 0, counted)
                    faults.point("checkpoint_write")
                    faults.point("commit")
                source.finish()
            if not transactional:
                # the shadow is committed (not live): its checksum can use a second server thread; then
                # everything that can fail runs before the swap, and the swap itself commits (MySQL)
                ck = self._checksum_committed(conn, shadow, schema, result.rows) if self._wants_checksum(meta) else None
                counted = self._count(conn, shadow) if self._counts_only() else None
                live_exists = self._table_exists(conn, table, sn)
                result.inserted = self._rows_in(ck, counted, result, quar)
                result.deleted = self._count(conn, self.qname(table, sn)) if live_exists else 0
                result.quarantined = len(quar)
                self._compare(meta, quar, self._figure(quar, ck, counted, 0))
                conn.commit()
                t3 = time.perf_counter()
                self._swap(conn, table, sn, shadow, old, live_exists)
                faults.point("merge")
                swapped = True
                conn.commit()
                with conn.begin():
                    cp = self._read_cp(conn, meta, lock=True)
                    _meta.write_schema(conn, self._meta()[_meta.SCHEMA], self._schema_key(table, sn), schema, _meta.utcnow())
                    self._finish_batch(conn, meta, schema, quar, result, cp is not None, ck, 0, counted)
                    faults.point("checkpoint_write")
                    faults.point("commit")
                self._drop_quietly(conn, old)
            faults.point("committed")
            result.phases = {"prepare": t1 - t0, "load": t2 - t1, "checksum": t3 - t2,
                             "swap_commit": time.perf_counter() - t3}
        finally:
            if not transactional and not swapped:
                self._drop_quietly(conn, shadow)

    @staticmethod
    def _rows_in(ck: Checksum | None, counted: int | None, result: ApplyResult, quar: Quarantine) -> int:
        """Rows a snapshot put in its table: as read back or counted there, else as loaded."""
        if ck is not None:
            return ck.count
        return counted if counted is not None else result.rows - len(quar)

    def _drop_quietly(self, conn: sa.Connection, qtable: str) -> None:
        try:
            if conn.in_transaction():
                conn.rollback()
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {qtable}")
            conn.commit()
        except sa.exc.SQLAlchemyError:
            pass  # a leftover helper table is dropped by the next apply

    def _count(self, conn: sa.Connection, qtable: str) -> int:
        return int(conn.exec_driver_sql(f"SELECT COUNT(*) FROM {qtable}").scalar() or 0)

    # --- reconciliation (the SQL and read-back live in _merge.py) ---------------------------------

    @translated
    def table_checksum(self, table: str, schema: Schema, schema_name: str | None = None) -> Checksum:
        with self.engine.connect() as conn:
            return self._checksum(conn, self.qname(table, schema_name), schema)

    # --- probe and errors ---------------------------------------------------------------------------

    version_sql = "SELECT version()"

    def probe(self, schema_name: str | None = None) -> list[ProbeItem]:
        """Connection, privileges (tried on a scratch table) and settings, each with a remedy."""
        from ._probe import run_probe
        return run_probe(self, schema_name)

    def _probe_settings(self, conn: sa.Connection, schema_name: str | None) -> list[ProbeItem]:
        return []

    def grant_hint(self, step: str, schema_name: str | None) -> str:
        """The statement a DBA runs to give the sync account what ``step`` needs (docs/grants/)."""
        return f"Give the sync account the {step} privilege in the target schema (docs/grants/)."

    def _rename(self, conn: sa.Connection, qold: str, new: str, schema_name: str | None) -> None:
        conn.exec_driver_sql(f"ALTER TABLE {qold} RENAME TO {self.q(self._names(new, schema_name)[1])}")

    def classify(self, exc: BaseException) -> AgentError:
        from ._errors import classify
        return classify(self, exc)

    def close(self) -> None:
        self.engine.dispose()

