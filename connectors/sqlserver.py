"""SQL Server connector (pyodbc + Microsoft ODBC driver): fast_executemany into a #temp table, then UPDATE+INSERT.

Rows are sent as ODBC parameter arrays (``fast_executemany``) with explicit input sizes, so a NULL is
always typed (no "nvarchar is incompatible with image" on a NULL binary) and long text is streamed only
when a batch really holds long values. The #temp table is deduplicated to one row per key and merged
by an UPDATE … FROM join and an INSERT … WHERE NOT EXISTS under UPDLOCK, HOLDLOCK, instead of MERGE
(docs/connectors.md, "SQL Server", says why). DDL is transactional in SQL Server: a snapshot's shadow
table is swapped by ``sp_rename`` in the same transaction as the checkpoint, so readers see the old or
the new table and a crash leaves the old one.
"""

from __future__ import annotations

import base64
import re
from importlib import import_module
from typing import Any, Callable

import sqlalchemy as sa

from agent.errors import (DatabaseBusy, DatabasePermission, DatabaseUnavailable,
                          DataError, DriverMissing)
from agent.payload import encode_value, iter_records
from agent.schema import Column, PortableType, Schema

from . import _meta
from ._errors import CodeTable
from ._load import Quarantine, finite_float, int_range, json_text, uuid_text
from ._mssql_oracle_load import Refusal, load_arrays, reorder
from .api import BatchMeta, Capabilities, Checkpoint, ProbeItem
from .base import BaseConnector

ODBC_DRIVER = "ODBC Driver 18 for SQL Server"
ODBC_INSTALL = ("install Microsoft's ODBC driver: msodbcsql18 with unixODBC (Debian/Ubuntu: add "
                "packages.microsoft.com, then `ACCEPT_EULA=Y apt-get install msodbcsql18 unixodbc`; RHEL/Kylin: "
                "`ACCEPT_EULA=Y yum install msodbcsql18 unixODBC`)")
PIP_INSTALL = "pip install 'edx-agent[sqlserver]'"
# binary collation: 'a' <> 'A' as on the platform; the same explicit collation on the #temp table
# avoids "Cannot resolve the collation conflict" when tempdb's default differs from the database's
COLLATION = "Latin1_General_100_BIN2"
_NATIVE_RE = re.compile(r"\((\d+)\) \(SQL\w+\)")
_COL_RE = re.compile(r"column '([^']+)'")
_STATES = {"40001": DatabaseBusy, "28000": DatabasePermission, "HYT00": DatabaseUnavailable,
           **{s: DataError for s in ("22001", "22003", "22007", "22008", "22018", "23000")}}
_CODES = CodeTable(
    unavailable={2, 53, 233, 10053, 10054, 10060, 10061, 11001, 40613, 40197},
    busy={1205, 1222, 40501, 3960, 701},
    permission={229, 230, 262, 297, 300, 916, 18456, 18452, 15247, 1088, 2760},
    config={4060, 911},
    # 8152/2628 truncation, 8115/220/232/248 overflow, 241/242/517 dates, 245/8114/8169 conversions,
    # 515 NULL, 547 CHECK/FK, 2627/2601 duplicate key
    data={8152, 2628, 8115, 220, 232, 248, 241, 242, 517, 245, 8114, 8169, 515, 547, 2627, 2601, 9455, 13609})


class SQLServerConnector(BaseConnector):
    """SQL Server 2016+ (and Azure SQL) through pyodbc and Microsoft's ODBC Driver 17 or 18."""

    name = "sqlserver"
    driver = "pyodbc"
    install_hint = PIP_INSTALL
    ph = "?"
    capabilities = Capabilities(bulk_path="fast-executemany", transactional_ddl=True, atomic_swap=True,
                                max_identifier_length=128, schemas=True, timezone_type=True,
                                row_quarantine=True)

    def __init__(self, url: str, **options: Any) -> None:
        self._module = options.get("module")
        self.batch_bytes = int(options.pop("batch_bytes", 16 << 20))
        self.lock_timeout_ms = int(options.pop("lock_timeout_ms", 60000))
        super().__init__(url, **options)

    @classmethod
    def check_driver(cls) -> None:
        """pyodbc and the unixODBC library it links to; each missing piece names its install line."""
        try:
            import_module(cls.driver)
        except ImportError as e:
            if getattr(e, "name", None) == "pyodbc" or "No module named" in str(e):
                raise DriverMissing(f"pyodbc ({e})", remedy=f"Install it: {PIP_INSTALL}; then {ODBC_INSTALL}.") from None
            # pyodbc is there but libodbc.so.2 is not: the ODBC driver manager (and driver) are missing
            raise DriverMissing(f"pyodbc cannot load the ODBC driver manager ({e})",
                                remedy=f"{ODBC_INSTALL[0].upper()}{ODBC_INSTALL[1:]}.") from None

    def _import_driver(self) -> None:
        if self._module is None:
            self.check_driver()

    def _create_engine(self, url: str, options: dict[str, Any]) -> sa.Engine:
        u = sa.engine.make_url(url)
        if u.drivername in ("mssql", "sqlserver"):
            u = u.set(drivername="mssql+pyodbc")
        if "driver" not in u.query and "odbc_connect" not in u.query:
            u = u.update_query_dict({"driver": ODBC_DRIVER})
        options.setdefault("fast_executemany", True)
        engine = sa.create_engine(u, pool_pre_ping=True, **options)

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                # statement-level rollback (savepoints isolate refused rows), ANSI semantics the
                # DDL below relies on, and a bounded wait so a blocked apply reports busy (1222)
                cur.execute(f"SET XACT_ABORT OFF; SET ANSI_NULLS ON; SET QUOTED_IDENTIFIER ON; "
                            f"SET ANSI_PADDING ON; SET LOCK_TIMEOUT {self.lock_timeout_ms}")
            finally:
                cur.close()

        return engine

    # --- DDL -------------------------------------------------------------------------------------

    def type_sql(self, ptype: PortableType) -> str:
        b = ptype.base
        if b == "string":
            # NVARCHAR(n) counts UTF-16 code units: a character outside the BMP takes two, so string(n)
            # needs 2n; the length in characters is checked by the agent
            n = ptype.length or 1
            return f"NVARCHAR({2 * n}) COLLATE {COLLATION}" if 2 * n <= 4000 else f"NVARCHAR(MAX) COLLATE {COLLATION}"
        if b == "decimal":
            return f"DECIMAL({ptype.precision},{ptype.scale})"
        return {"int32": "INT", "int64": "BIGINT", "float64": "FLOAT(53)", "bool": "BIT",
                "text": f"NVARCHAR(MAX) COLLATE {COLLATION}", "date": "DATE", "time": "TIME(6)",
                "timestamp": "DATETIME2(6)", "timestamptz": "DATETIMEOFFSET(6)", "uuid": "UNIQUEIDENTIFIER",
                "binary": "VARBINARY(MAX)", "json": f"NVARCHAR(MAX) COLLATE {COLLATION}"}[b]

    def column_sql(self, col: Column, *, staging: bool = False) -> str:
        sql = super().column_sql(col, staging=staging)
        if col.type.base == "json" and not staging:
            sql += f" CHECK (ISJSON({self.q(col.name)}) = 1)"
        return sql

    def create_table_sql(self, qname: str, schema: Schema, *, pk_name: str | None = None) -> str:
        # constraint names are unique per schema: the shadow's key keeps its system name through sp_rename
        return super().create_table_sql(qname, schema)

    def add_column_sql(self, qname: str, col: Column) -> list[str]:
        return [f"ALTER TABLE {qname} ADD {self.column_sql(col)}"]

    def widen_column_sql(self, qname: str, old: Column, new: Column) -> list[str]:
        if self.type_sql(old.type) == self.type_sql(new.type):
            return []
        col = self.q(new.name)
        null = "NULL" if new.nullable else "NOT NULL"
        # ALTER COLUMN is refused on a key column (error 5074): drop the key, alter, put it back; in
        # SQL Server this runs in the batch's transaction, so a failure leaves the key as it was
        return [
            "DECLARE @pk sysname, @keys nvarchar(max); "
            "SELECT @pk = kc.name, @keys = STUFF((SELECT N', ' + QUOTENAME(c.name) FROM sys.index_columns ic "
            "JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id "
            "WHERE ic.object_id = kc.parent_object_id AND ic.index_id = kc.unique_index_id "
            "ORDER BY ic.key_ordinal FOR XML PATH('')), 1, 2, N'') "
            f"FROM sys.key_constraints kc WHERE kc.type = 'PK' AND kc.parent_object_id = OBJECT_ID(N'{qname}') "
            "AND EXISTS (SELECT 1 FROM sys.index_columns ic JOIN sys.columns c ON c.object_id = ic.object_id "
            "AND c.column_id = ic.column_id WHERE ic.object_id = kc.parent_object_id "
            f"AND ic.index_id = kc.unique_index_id AND c.name = N'{new.name}'); "
            f"IF @pk IS NOT NULL EXEC(N'ALTER TABLE {qname} DROP CONSTRAINT ' + QUOTENAME(@pk)); "
            f"ALTER TABLE {qname} ALTER COLUMN {col} {self.type_sql(new.type)} {null}; "
            f"IF @pk IS NOT NULL EXEC(N'ALTER TABLE {qname} ADD CONSTRAINT ' + QUOTENAME(@pk) + "
            "N' PRIMARY KEY (' + @keys + N')');"]

    def _create_staging(self, conn: sa.Connection, stg: str, schema: Schema, schema_name: str | None) -> str:
        name = self.q("#" + stg)     # session-local, dropped with the connection if we cannot drop it
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        conn.exec_driver_sql(self.staging_sql(name, schema))
        return name

    def staging_sql(self, name: str, schema: Schema) -> str:
        cols = ", ".join(self.column_sql(c, staging=True) for c in schema.columns)
        return f"CREATE TABLE {name} (_ord BIGINT NOT NULL, _op NCHAR(1) NOT NULL, {cols})"

    def _swap(self, conn: sa.Connection, table: str, schema_name: str | None, shadow: str, old: str,
              live_exists: bool) -> None:
        for stmt in self.swap_sql(table, schema_name, shadow, old, live_exists):
            conn.exec_driver_sql(stmt)

    def swap_sql(self, table: str, schema_name: str | None, shadow: str, old: str, live_exists: bool) -> list[str]:
        # sp_rename is transactional: until COMMIT readers wait on the Sch-M lock, then see the new table
        live = self.qname(table, schema_name)
        out = []
        if live_exists:
            out.append(f"EXEC sp_rename N'{live}', N'{self.aux_name('old', table)}'")
        out.append(f"EXEC sp_rename N'{shadow}', N'{table}'")
        if live_exists:
            out.append(f"DROP TABLE {old}")
        return out

    def _rename(self, conn: sa.Connection, qold: str, new: str, schema_name: str | None) -> None:
        conn.exec_driver_sql(f"EXEC sp_rename N'{qold}', N'{new}'")

    # --- checkpoint ------------------------------------------------------------------------------

    def checkpoint_select(self, dataset: str, *, lock: bool) -> sa.Select[Any]:
        """The checkpoint read; locked, it holds the row (or, before the first batch, its key range).

        SQLAlchemy renders nothing for ``with_for_update()`` on SQL Server, so the lock is a table hint:
        UPDLOCK makes a second apply of the dataset wait here, HOLDLOCK covers a row not yet written.
        """
        t = self._meta()[_meta.CHECKPOINT]
        q = sa.select(t).where(t.c.dataset == dataset)
        return q.with_hint(t, "WITH (UPDLOCK, HOLDLOCK)", "mssql") if lock else q

    def _read_cp(self, conn: sa.Connection, meta: BatchMeta, *, lock: bool) -> Checkpoint | None:
        row = conn.execute(self.checkpoint_select(meta.dataset, lock=lock)).first()
        if row is None:
            return None
        return Checkpoint(row.dataset, int(row.seq), row.batch_digest, _meta.as_utc(row.applied_at))  # type: ignore[arg-type]

    # --- loading: fast_executemany ---------------------------------------------------------------

    def _input_sizes(self, schema: Schema) -> list[Callable[[list[tuple[Any, ...]], int], tuple[int, int, int]]]:
        """Per column, a function of (batch, position) giving pyodbc's (SQL type, size, decimal digits)."""
        m = self.engine.dialect.dbapi

        def fixed(t: int, size: int = 0, digits: int = 0) -> Callable[..., tuple[int, int, int]]:
            return lambda rows, i: (t, size, digits)

        def longest(t: int, limit: int, per_char: int) -> Callable[..., tuple[int, int, int]]:
            # a size of 0 means (MAX) and makes the ODBC driver stream every value of the column row by
            # row; a batch whose values all fit is sent as a plain array instead
            def size(rows: list[tuple[Any, ...]], i: int) -> tuple[int, int, int]:
                n = max((len(r[i]) * per_char for r in rows if r[i] is not None), default=1)
                return (t, max(n, 1) if n <= limit else 0, 0)
            return size

        out = []
        for c in schema.columns:
            b = c.type.base
            if b == "string" and 2 * (c.type.length or 1) <= 4000:
                out.append(fixed(m.SQL_WVARCHAR, 2 * (c.type.length or 1)))
            elif b in ("string", "text", "json"):
                out.append(longest(m.SQL_WVARCHAR, 4000, 2))
            elif b == "binary":
                out.append(longest(m.SQL_VARBINARY, 8000, 1))
            elif b == "int32":
                out.append(fixed(m.SQL_INTEGER))
            elif b == "int64":
                out.append(fixed(m.SQL_BIGINT))
            elif b == "float64":
                out.append(fixed(m.SQL_DOUBLE))
            elif b == "bool":
                out.append(fixed(m.SQL_BIT))
            else:   # decimal, date, time, timestamp(tz), uuid: their canonical text, converted by the server
                out.append(fixed(m.SQL_WVARCHAR, 48 if b != "decimal" else (c.type.precision or 38) + 2))
        return out

    def insert_sql(self, qtable: str, schema: Schema, *, shadow: bool) -> tuple[str, list[int]]:
        """The INSERT for parameter arrays and the order of the schema's columns in it ((MAX) ones last)."""
        longs = {c.name for c in schema.columns if "(MAX)" in self.type_sql(c.type)}
        order = reorder(schema.names, longs)
        cols = ([] if shadow else ["_ord", "_op"]) + [schema.names[i] for i in order]
        return (f"INSERT INTO {qtable} ({', '.join(self.q(c) for c in cols)}) "
                f"VALUES ({', '.join('?' * len(cols))})"), order

    def _load_python(self, conn: sa.Connection, qtable: str, schema: Schema, stream: Any,
                     quar: Quarantine, *, shadow: bool) -> int:
        sql, order = self.insert_sql(qtable, schema, shadow=shadow)
        m = self.engine.dialect.dbapi
        head = [] if shadow else [lambda rows, i: (m.SQL_BIGINT, 0, 0), lambda rows, i: (m.SQL_WVARCHAR, 1, 0)]
        per_col = self._input_sizes(schema)
        sizers = head + [per_col[i] for i in order]
        conv = _converters(schema)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.fast_executemany = True

        def build(n: int, op: str, fields: list[str | None]) -> tuple[tuple[Any, ...], int]:
            values = list(fields)
            for i, f in enumerate(conv):
                if values[i] is not None and f is not None:
                    try:
                        values[i] = f(values[i])
                    except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
                        raise Refusal(schema.names[i], str(e)) from None
            return (() if shadow else (n, op)) + tuple(values[i] for i in order), 0

        def run(rows: list[tuple[Any, ...]]) -> None:
            with conn.begin_nested():
                cursor.setinputsizes([s(rows, i) for i, s in enumerate(sizers)])
                cursor.executemany(sql, rows)

        def send(rows: list[tuple[Any, ...]]) -> list[tuple[int, str | None, str]]:
            try:
                run(rows)
                return []
            except m.Error as e:
                if not self._is_refusal(e):
                    raise
            # the savepoint undid the whole array; find the refused rows one by one (refusals are rare)
            refused = []
            for i, row in enumerate(rows):
                try:
                    run([row])
                except m.Error as e:
                    if not self._is_refusal(e):
                        raise
                    refused.append((i, self._error_column(e), _text(e)))
            return refused

        try:
            return load_arrays(iter_records(stream), build, send, quar, max_rows=self.chunk_rows,
                               max_bytes=self.batch_bytes).records
        finally:
            cursor.close()

    # --- merge ---------------------------------------------------------------------------------

    def _dedup_sql(self, stg: str, schema: Schema) -> str:
        keys = self._key_list(schema)
        return (f"WITH d AS (SELECT ROW_NUMBER() OVER (PARTITION BY {keys} ORDER BY _ord DESC) AS rn "
                f"FROM {stg}) DELETE FROM d WHERE rn > 1")

    def _delete_sql(self, target: str, stg: str, schema: Schema, where: str) -> str:
        return f"DELETE t FROM {target} t JOIN {stg} s ON {self._pk_join(schema)} WHERE s._op = 'D'{where}"

    def _stamp_sql(self, target: str, stg: str | None, schema: Schema) -> str:
        if stg is None:
            return super()._stamp_sql(target, stg, schema)
        return (f"UPDATE t SET {self._lineage_sets('t')} FROM {target} t JOIN {stg} s "
                f"ON {self._pk_join(schema)} WHERE s._op <> 'D'")

    def _upsert_sql(self, target: str, stg: str, schema: Schema, where: str) -> str:
        cols = ", ".join(self.q(c) for c in schema.names)
        rest = [c for c in schema.names if c not in schema.primary_key]
        # UPDATE first, then INSERT of the keys still missing; the probe of the INSERT holds its key
        # range (UPDLOCK, HOLDLOCK = serializable) so a concurrent writer cannot slip the same key in
        update = (f"UPDATE t SET {', '.join(f'{self.q(c)} = s.{self.q(c)}' for c in rest)}\n"
                  f"FROM {target} t JOIN {stg} s ON {self._pk_join(schema)} WHERE s._op <> 'D'{where};\n"
                  if rest else "")
        return (f"{update}INSERT INTO {target} ({cols})\n"
                f"SELECT {self._select_cols(schema)} FROM {stg} s WHERE s._op <> 'D'{where}\n"
                f"AND NOT EXISTS (SELECT 1 FROM {target} t WITH (UPDLOCK, HOLDLOCK) WHERE {self._pk_join(schema)})")

    # --- probe -----------------------------------------------------------------------------------

    version_sql = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS NVARCHAR(128))"

    def grant_hint(self, step: str, schema_name: str | None) -> str:
        user = self.engine.url.username or "edx_sync"
        schema = schema_name or "dbo"
        if step == "staging":
            return "Every login may create #temp tables; check that tempdb is online and has space."
        return (f"GRANT CREATE TABLE TO [{user}]; GRANT ALTER, SELECT, INSERT, UPDATE, DELETE ON SCHEMA::[{schema}] "
                f"TO [{user}]; (docs/grants/sqlserver.sql)")

    def _probe_settings(self, conn: sa.Connection, schema_name: str | None) -> list[ProbeItem]:
        version = str(conn.exec_driver_sql(self.version_sql).scalar() or "0")
        major = int(version.split(".")[0] or 0)
        coll, level = conn.exec_driver_sql(
            "SELECT CAST(DATABASEPROPERTYEX(DB_NAME(), 'Collation') AS NVARCHAR(128)), compatibility_level "
            "FROM sys.databases WHERE name = DB_NAME()").one()
        db_perms = {r[0] for r in conn.exec_driver_sql(
            "SELECT permission_name FROM fn_my_permissions(NULL, 'DATABASE')").all()}
        schema = schema_name or conn.exec_driver_sql("SELECT SCHEMA_NAME()").scalar() or "dbo"
        sc_perms = {r[0] for r in conn.exec_driver_sql(
            "SELECT permission_name FROM fn_my_permissions(?, 'SCHEMA')", (schema,)).all()}
        need = {"ALTER", "SELECT", "INSERT", "UPDATE", "DELETE"}
        drivers = self._odbc_drivers()
        want = self.engine.url.query.get("driver", ODBC_DRIVER)
        items = [
            ProbeItem("sqlserver:version", major >= 13, version,
                      "" if major >= 13 else "SQL Server 2016 (13.x) or later is needed (DROP TABLE IF EXISTS, ISJSON)."),
            ProbeItem("sqlserver:compatibility_level", int(level or 0) >= 130, str(level),
                      "" if int(level or 0) >= 130 else "ALTER DATABASE CURRENT SET COMPATIBILITY_LEVEL = 130;"),
            ProbeItem("sqlserver:collation", True, f"{coll}; synced text is NVARCHAR with {COLLATION} (exact "
                      "comparisons, UTF-16 storage: every character survives whatever the database collation)"),
            ProbeItem("sqlserver:create_table", "CREATE TABLE" in db_perms, ", ".join(sorted(db_perms & {"CREATE TABLE"})),
                      "" if "CREATE TABLE" in db_perms else self.grant_hint("create", schema_name)),
            ProbeItem("sqlserver:schema_permissions", need <= sc_perms, f"{schema}: {', '.join(sorted(sc_perms & need))}",
                      "" if need <= sc_perms else self.grant_hint("create", schema_name)),
            ProbeItem("sqlserver:odbc_driver", drivers is None or want in drivers,
                      f"using {want!r}; installed: {', '.join(drivers) if drivers else 'unknown'}",
                      "" if drivers is None or want in drivers else f"{ODBC_INSTALL[0].upper()}{ODBC_INSTALL[1:]}."),
            ProbeItem("sqlserver:fast_executemany", bool(getattr(self.engine.dialect, "fast_executemany", False)),
                      "parameter arrays", ""),
        ]
        return items

    def _odbc_drivers(self) -> list[str] | None:
        drivers = getattr(self.engine.dialect.dbapi, "drivers", None)
        try:
            return list(drivers()) if drivers else None
        except Exception:  # noqa: BLE001 - informational only
            return None

    # --- errors ----------------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> Any:
        orig = getattr(exc, "orig", None) or exc
        text = str(orig)
        state = _sqlstate(orig)
        if state == "IM002" or "Can't open lib" in text or "Data source name not found" in text:
            err = DriverMissing(f"{self.name}: {' '.join(text.split())[:400]}",
                                remedy=f"{ODBC_INSTALL[0].upper()}{ODBC_INSTALL[1:]}; or name an installed driver "
                                       "in database.url (?driver=ODBC+Driver+17+for+SQL+Server).")
            err.__cause__ = exc
            return err
        return super().classify(exc)

    def _error_class(self, orig: BaseException) -> type | None:
        state = _sqlstate(orig)
        m = _NATIVE_RE.search(str(orig))
        found = _CODES.get(int(m.group(1)) if m else None)
        if found is None:   # no native number the table knows: the ODBC SQLSTATE's class
            found = _STATES.get(state) or (DatabaseUnavailable if state.startswith("08") else None)
        return found

    def _error_column(self, exc: BaseException) -> str | None:
        m = _COL_RE.search(str(getattr(exc, "orig", exc)))
        return m.group(1) if m else None


def _sqlstate(orig: BaseException) -> str:
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], str) and len(args[0]) == 5 else ""


def _text(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "orig", exc)).split())


# --- converters: canonical text -> the value bound (temporal and decimal texts are bound as they are) --


def _checked(ptype: PortableType) -> Callable[[str], str]:
    # the server converts the text; a non-canonical one (extra decimals are rounded by SQL Server,
    # a 7th fractional digit truncated) is refused here instead
    def conv(text: str) -> str:
        if encode_value(ptype, text) != text:
            raise ValueError(f"{text!r} is not in canonical {ptype} form")
        return text
    return conv


def _string(n: int) -> Callable[[str], str]:
    def conv(text: str) -> str:
        if len(text) > n:
            raise ValueError(f"{len(text)} characters exceed string({n})")
        return text
    return conv


def _bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(f"{text!r} is not a boolean (0 or 1)")
    return text == "1"


def _converters(schema: Schema) -> list[Callable[[str], Any] | None]:
    out: list[Callable[[str], Any] | None] = []
    for c in schema.columns:
        b = c.type.base
        if b == "int32":
            out.append(int_range(32))
        elif b == "int64":
            out.append(int_range(64))
        elif b == "float64":
            out.append(finite_float)
        elif b == "bool":
            out.append(_bool)
        elif b == "string":
            out.append(_string(c.type.length or 0))
        elif b == "binary":
            out.append(lambda s: base64.b64decode(s, validate=True))
        elif b == "json":
            out.append(json_text)
        elif b == "uuid":
            out.append(uuid_text)
        elif b == "text":
            out.append(None)
        else:   # decimal, date, time, timestamp, timestamptz
            out.append(_checked(c.type))
    return out
