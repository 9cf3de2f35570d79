"""Oracle connector (python-oracledb, thin by default): array DML into a global temporary table, then MERGE.

Rows are bound with ``executemany`` (array binding, one round trip per batch, batch errors on) into a
``GLOBAL TEMPORARY TABLE … ON COMMIT DELETE ROWS`` created once per table shape, deduplicated to the
last operation per key, deleted and merged by one ``MERGE`` whose ``WHEN MATCHED`` clause is left out
for tables whose every column is in the key. Text goes to NVARCHAR2/NCLOB bound as national character
data, so a ZHS16GBK database loses nothing. Oracle DDL commits by itself, so a snapshot is swapped
by two ``ALTER TABLE … RENAME TO`` after its rows commit and before its checkpoint does; a crash in
between re-applies the snapshot, idempotently (docs/connectors.md, "Oracle").

Oracle stores '' as NULL. The connector does not invent a sentinel: '' arrives as NULL, and each row's
checksum correction is kept so the reconciliation figure still equals the hub's (``_fold`` below).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import re
from decimal import Decimal
from typing import Any, Callable

import sqlalchemy as sa

from agent.errors import (DatabaseConfigError, DataError, SchemaConflict)
from agent.payload import Checksum, encode_value, iter_records
from agent.schema import Column, PortableType, Schema

from ._checksum import row_hash_fast
from ._errors import CodeTable
from ._load import Quarantine, finite_float, int_range, json_text, uuid_text
from ._mssql_oracle_load import Refusal, load_arrays, reorder
from .api import Capabilities, ProbeItem
from .base import BaseConnector

_MASK64 = (1 << 64) - 1
# ORA-/DPY- codes -> tree. DPY-4011/DPY-6005: thin mode's "connection closed" / "cannot connect".
_CODES = CodeTable(
    unavailable={"ORA-03113", "ORA-03114", "ORA-03135", "ORA-12541", "ORA-12170", "ORA-12537", "ORA-12547",
                 "ORA-12560", "ORA-01033", "ORA-01034", "ORA-01089", "ORA-01012", "ORA-00028", "ORA-12516",
                 "ORA-12519", "ORA-12520", "ORA-12528", "ORA-02396", "DPY-4011", "DPY-6005", "DPY-6000",
                 "DPY-4005", "DPI-1080"},
    busy={"ORA-00060", "ORA-30006", "ORA-00054", "ORA-08177", "ORA-04021", "ORA-01013", "ORA-00051"},
    permission={"ORA-01031", "ORA-01017", "ORA-01045", "ORA-28000", "ORA-01950", "ORA-01536", "ORA-28001",
                "ORA-01749", "ORA-01720"},
    config={"ORA-12514", "ORA-12505", "ORA-12154", "ORA-01435", "ORA-01918", "ORA-00972", "ORA-00910",
            "ORA-12704", "ORA-00439"},
    data={"ORA-12899", "ORA-01438", "ORA-01400", "ORA-01407", "ORA-02290", "ORA-00001", "ORA-02291",
          "ORA-02292", "ORA-01722", "ORA-01426", "ORA-01841", "ORA-01843", "ORA-01847", "ORA-01861",
          "ORA-01830", "ORA-01858", "ORA-01839", "ORA-01850", "ORA-01851", "ORA-01852", "ORA-01853",
          "ORA-01854", "ORA-01874", "ORA-01875", "ORA-01877", "ORA-40441", "ORA-22835", "ORA-29275",
          "ORA-01873", "ORA-01866", "ORA-01878"})
_CODE_RE = re.compile(r"\b((?:ORA|DPY|DPI)-\d{4,5})\b")
_COL_RE = re.compile(r'(?:column|into) \(?"[^"]*"\."[^"]*"\."([^"]+)"')
# base SQL names the staging bookkeeping columns bare (_ord, _op), which Oracle cannot parse: an
# unquoted identifier must start with a letter. See _adapt_sql and the report on base.py.
_BARE_RE = re.compile(r'(?<![\w"$#])_(ord|op|fold)\b')
_DROP_RE = re.compile(r"^\s*DROP TABLE IF EXISTS (\S+)\s*$", re.IGNORECASE)
_LOBS = {"text", "json", "binary"}


def _fold_types(ptype: PortableType) -> bool:
    """Types whose empty value Oracle stores as NULL (a zero-length VARCHAR2/NVARCHAR2/RAW is NULL)."""
    return ptype.base in ("string", "text", "binary")


class OracleConnector(BaseConnector):
    """Oracle Database 12.1+ through python-oracledb thin (11.2 needs thick mode; names then 30 bytes)."""

    name = "oracle"
    driver = "oracledb"
    install_hint = "pip install 'edx-agent[oracle]' (python-oracledb; thin mode needs no Oracle Client)"
    ph = ":1"      # positional binds: oracledb binds a sequence by position whatever the names
    capabilities = Capabilities(bulk_path="array-dml", transactional_ddl=False, atomic_swap=False,
                                max_identifier_length=128, schemas=True, timezone_type=True,
                                row_quarantine=True)

    def __init__(self, url: str, **options: Any) -> None:
        self._module = options.get("module")          # a DB-API module given to create_engine (tests)
        self.batch_bytes = int(options.pop("batch_bytes", 16 << 20))
        self.ddl_lock_timeout = int(options.pop("ddl_lock_timeout", 30))
        self._thick = options.pop("thick_mode", None)
        self._folds: dict[str, int] = {}
        super().__init__(url, **options)

    def _import_driver(self) -> None:
        if self._module is None:
            self.check_driver()

    # --- engine, session and names -----------------------------------------------------------

    def _create_engine(self, url: str, options: dict[str, Any]) -> sa.Engine:
        u = sa.engine.make_url(url)
        if u.drivername == "oracle":
            u = u.set(drivername="oracle+oracledb")
        if self._thick:
            # thick mode loads the Oracle Client libraries (needed only for features thin lacks, e.g.
            # native network encryption on old servers); a dict carries lib_dir/config_dir
            options["thick_mode"] = self._thick if isinstance(self._thick, dict) else {}
        engine = sa.create_engine(u, pool_pre_ping=True, **options)

        @sa.event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                # UTC so TIMESTAMP WITH TIME ZONE gets +00:00 from the UTC values bound; '.' decimal
                # separator whatever NLS_TERRITORY; renames wait for readers instead of ORA-00054
                cur.execute("ALTER SESSION SET TIME_ZONE = '+00:00' NLS_NUMERIC_CHARACTERS = '.,' "
                            f"DDL_LOCK_TIMEOUT = {self.ddl_lock_timeout}")
            finally:
                cur.close()
            previous = getattr(dbapi_conn, "outputtypehandler", None)
            dbapi_conn.outputtypehandler = _date_handler(self.engine.dialect.dbapi, previous)

        @sa.event.listens_for(engine, "before_cursor_execute", retval=True)
        def _adapt(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool) -> Any:
            return adapt_sql(statement), params

        return engine

    def q(self, name: str) -> str:
        # Oracle folds unquoted names to upper case; SQLAlchemy (has_table, reflection) reads an
        # all-lower-case name as that upper-case one. Quoting the upper-cased name keeps both agreeing,
        # lets readers write the name unquoted, and still protects reserved words (DATE, LEVEL...).
        return '"' + (name.upper() if name == name.lower() else name) + '"'

    def _ident_limit(self) -> int:
        """Identifier length in bytes: 128 from COMPATIBLE 12.2, else 30 (SQLAlchemy reads it on connect)."""
        dialect = self.engine.dialect
        if getattr(dialect, "server_version_info", None) is None:
            with self.engine.connect():
                pass
        return min(self.capabilities.max_identifier_length, int(dialect.max_identifier_length or 128))

    def aux_name(self, kind: str, table: str) -> str:
        limit = self._ident_limit()
        if limit != self.capabilities.max_identifier_length:
            self.capabilities = dataclasses.replace(self.capabilities, max_identifier_length=limit)
        return super().aux_name(kind, table)

    # --- DDL -------------------------------------------------------------------------------------

    def type_sql(self, ptype: PortableType) -> str:
        b = ptype.base
        if b == "string":
            # NVARCHAR2 counts UTF-16 code units: an emoji or CJK extension B character takes two, so
            # string(n) needs 2n of them; the length in characters is checked by the agent
            n = ptype.length or 1
            return f"NVARCHAR2({2 * n})" if 2 * n <= 2000 else "NCLOB"
        if b == "decimal":
            return f"NUMBER({ptype.precision},{ptype.scale})"
        return {"int32": "NUMBER(10)", "int64": "NUMBER(19)", "float64": "BINARY_DOUBLE", "bool": "NUMBER(1)",
                "text": "NCLOB", "date": "DATE", "time": "INTERVAL DAY(0) TO SECOND(6)",
                "timestamp": "TIMESTAMP(6)", "timestamptz": "TIMESTAMP(6) WITH TIME ZONE",
                "uuid": "VARCHAR2(36)", "binary": "BLOB", "json": "NCLOB"}[b]

    def column_sql(self, col: Column, *, staging: bool = False) -> str:
        sql = super().column_sql(col, staging=staging)
        if col.type.base == "bool" and not staging:
            sql += f" CHECK ({self.q(col.name)} IN (0, 1))"
        return sql

    def create_table_sql(self, qname: str, schema: Schema, *, pk_name: str | None = None) -> str:
        limit = self._ident_limit()
        too_long = [n for n in [qname.rsplit(".", 1)[-1].strip('"'), *schema.names] if len(n.encode()) > limit]
        if too_long:
            raise SchemaConflict(f"identifier {too_long[0]!r} is longer than this Oracle's {limit} bytes",
                                 remedy="Raise COMPATIBLE to 12.2 or later (128-byte names), or map the dataset "
                                        "to a shorter table name in the agent's config.")
        # constraint names are unique per schema in Oracle: the shadow and the live table cannot both
        # carry one, so the key keeps its system-generated name (SYS_C…) through the swap
        return super().create_table_sql(qname, schema)

    def add_column_sql(self, qname: str, col: Column) -> list[str]:
        return [f"ALTER TABLE {qname} ADD ({self.column_sql(col)})"]

    def widen_column_sql(self, qname: str, old: Column, new: Column) -> list[str]:
        before, after = self.type_sql(old.type), self.type_sql(new.type)
        if before == after:
            return []
        if "LOB" in after and "LOB" not in before:
            raise SchemaConflict(f"column {new.name!r}: Oracle cannot turn {before} into {after} in place "
                                 f"({old.type} -> {new.type})")
        return [f"ALTER TABLE {qname} MODIFY ({self.q(new.name)} {after})"]

    def _staging_sig(self, schema: Schema) -> str:
        cols = "|".join(f"{c.name}:{self.type_sql(c.type)}" for c in schema.columns)
        return hashlib.sha256(cols.encode()).hexdigest()[:16]

    def staging_ddl(self, name: str, schema: Schema) -> list[str]:
        """The global temporary table for ``schema`` and the comment that records its shape."""
        cols = ", ".join(self.column_sql(c, staging=True) for c in schema.columns)
        return [f"CREATE GLOBAL TEMPORARY TABLE {name} ({self.q('_ord')} NUMBER(19) NOT NULL, "
                f"{self.q('_op')} CHAR(1) NOT NULL, {self.q('_fold')} NUMBER(20), {cols}) ON COMMIT DELETE ROWS",
                f"COMMENT ON TABLE {name} IS 'edx-agent staging {self._staging_sig(schema)}'"]

    def _create_staging(self, conn: sa.Connection, stg: str, schema: Schema, schema_name: str | None) -> str:
        # created once and kept: a GTT holds no rows after COMMIT, and re-creating it per batch would be
        # DDL (an implicit commit) on every batch; the comment says which table shape it was made for
        name = self.qname(stg, schema_name)
        owner, table = self._owner_table(stg, schema_name)
        comment = conn.exec_driver_sql(
            "SELECT comments FROM all_tab_comments WHERE owner = COALESCE(:1, SYS_CONTEXT('USERENV', "
            "'CURRENT_SCHEMA')) AND table_name = :2", (owner, table)).scalar()
        if comment != f"edx-agent staging {self._staging_sig(schema)}":
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
            for stmt in self.staging_ddl(name, schema):
                conn.exec_driver_sql(stmt)
        return name

    def _owner_table(self, table: str, schema_name: str | None) -> tuple[str | None, str]:
        unq = lambda n: self.q(n)[1:-1]  # noqa: E731 - the stored spelling of a name
        return (unq(schema_name) if schema_name else None), unq(table)

    def _drop_quietly(self, conn: sa.Connection, qtable: str) -> None:
        if qtable.rsplit(".", 1)[-1].startswith('"EDX_STG_'):
            if conn.in_transaction():   # the staging GTT stays; its rows went with the COMMIT/ROLLBACK
                conn.rollback()
            return
        super()._drop_quietly(conn, qtable)

    def _swap(self, conn: sa.Connection, table: str, schema_name: str | None, shadow: str, old: str,
              live_exists: bool) -> None:
        # each RENAME commits; between the two a reader gets ORA-00942 (docs: "Oracle", swap)
        for stmt in self.swap_sql(table, schema_name, shadow, old, live_exists):
            conn.exec_driver_sql(stmt)

    def swap_sql(self, table: str, schema_name: str | None, shadow: str, old: str, live_exists: bool) -> list[str]:
        live = self.qname(table, schema_name)
        out = [f"ALTER TABLE {live} RENAME TO {old.rsplit('.', 1)[-1]}"] if live_exists else []
        return out + [f"ALTER TABLE {shadow} RENAME TO {self.q(table)}"]

    def _rename(self, conn: sa.Connection, qold: str, new: str, schema_name: str | None) -> None:
        conn.exec_driver_sql(f"ALTER TABLE {qold} RENAME TO {self.q(new)}")

    # --- loading: array DML ------------------------------------------------------------------

    def _bind_types(self, schema: Schema) -> list[Any]:
        m = self.engine.dialect.dbapi
        by_base = {"int32": m.DB_TYPE_NUMBER, "int64": m.DB_TYPE_NUMBER, "decimal": m.DB_TYPE_NUMBER,
                   "bool": m.DB_TYPE_NUMBER, "float64": m.DB_TYPE_BINARY_DOUBLE,
                   # national character binds: a VARCHAR bind would pass through the database character
                   # set (ZHS16GBK in many Chinese installs) and lose what it cannot hold
                   "string": m.DB_TYPE_NVARCHAR, "text": m.DB_TYPE_LONG_NVARCHAR, "json": m.DB_TYPE_LONG_NVARCHAR,
                   "date": m.DB_TYPE_DATE, "time": m.DB_TYPE_INTERVAL_DS, "timestamp": m.DB_TYPE_TIMESTAMP,
                   "timestamptz": m.DB_TYPE_TIMESTAMP, "uuid": m.DB_TYPE_VARCHAR, "binary": m.DB_TYPE_LONG_RAW}
        out = []
        for c in schema.columns:
            t = by_base[c.type.base]
            if c.type.base == "string" and self.type_sql(c.type) == "NCLOB":
                t = m.DB_TYPE_LONG_NVARCHAR
            out.append(t)
        return out

    def _long_columns(self, schema: Schema) -> set[str]:
        return {c.name for c in schema.columns if c.type.base in _LOBS or self.type_sql(c.type) == "NCLOB"}

    def insert_sql(self, qtable: str, schema: Schema, *, shadow: bool) -> tuple[str, list[int]]:
        """The array INSERT and the order of the schema's columns in it (long binds last: ORA-24816)."""
        order = reorder(schema.names, self._long_columns(schema))
        cols = ([] if shadow else ["_ord", "_op", "_fold"]) + [schema.names[i] for i in order]
        binds = ", ".join(f":{i}" for i in range(1, len(cols) + 1))
        return f"INSERT INTO {qtable} ({', '.join(self.q(c) for c in cols)}) VALUES ({binds})", order

    def _load_python(self, conn: sa.Connection, qtable: str, schema: Schema, stream: Any,
                     quar: Quarantine, *, shadow: bool) -> int:
        sql, order = self.insert_sql(qtable, schema, shadow=shadow)
        m = self.engine.dialect.dbapi
        types = self._bind_types(schema)
        sizes = ([] if shadow else [m.DB_TYPE_NUMBER, m.DB_TYPE_CHAR, m.DB_TYPE_NUMBER]) + [types[i] for i in order]
        conv = _converters(schema)
        foldable = [i for i, c in enumerate(schema.columns) if _fold_types(c.type)]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]

        def build(n: int, op: str, fields: list[str | None]) -> tuple[tuple[Any, ...], int]:
            values = list(fields)
            for i, f in enumerate(conv):
                if values[i] is not None and f is not None:
                    try:
                        values[i] = f(values[i])
                    except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
                        raise Refusal(schema.names[i], str(e)) from None
            fold = _fold(fields, foldable)
            head = () if shadow else (n, op, fold or None)
            return head + tuple(values[i] for i in order), fold

        def send(rows: list[tuple[Any, ...]]) -> list[tuple[int, str | None, str]]:
            cursor.setinputsizes(*sizes)       # every call: the sizes apply to the next execute only
            cursor.executemany(sql, rows, batcherrors=True)
            refused = []
            for err in cursor.getbatcherrors():
                code = getattr(err, "full_code", "") or _code_of(str(err))
                if _CODES.get(code) is not DataError:
                    raise m.DatabaseError(err)
                text = " ".join(str(getattr(err, "message", err)).split())
                refused.append((int(err.offset), self._column_of(text), text))
            return refused

        try:
            stats = load_arrays(iter_records(stream), build, send, quar, max_rows=self.chunk_rows,
                                max_bytes=self.batch_bytes)
        finally:
            cursor.close()
        if shadow:
            self._folds[qtable] = stats.fold & _MASK64
        return stats.records

    # --- merge ---------------------------------------------------------------------------------

    def _dedup_sql(self, stg: str, schema: Schema) -> str:
        keys = self._key_list(schema)
        return (f"DELETE FROM {stg} WHERE ROWID IN (SELECT rid FROM (SELECT ROWID AS rid, ROW_NUMBER() OVER "
                f"(PARTITION BY {keys} ORDER BY {self.q('_ord')} DESC) AS rn FROM {stg}) WHERE rn > 1)")

    def _upsert_sql(self, target: str, stg: str, schema: Schema, where: str) -> str:
        cols = [self.q(c) for c in schema.names]
        rest = [self.q(c) for c in schema.names if c not in schema.primary_key]
        on = self._pk_join(schema)
        # target columns unqualified in SET and INSERT (23ai refuses qualified ones: ORA-00929, see
        # kafka-connect-jdbc#1588); no WHEN MATCHED for an all-key table (seatunnel#11729)
        matched = ("WHEN MATCHED THEN UPDATE SET " + ", ".join(f"{c} = s.{c}" for c in rest) + "\n") if rest else ""
        return (f"MERGE INTO {target} t\n"
                f"USING (SELECT {', '.join(cols)} FROM {stg} WHERE {self.q('_op')} <> 'D'{where}) s\n"
                f"ON ({on})\n{matched}"
                f"WHEN NOT MATCHED THEN INSERT ({', '.join(cols)}) VALUES ({', '.join('s.' + c for c in cols)})")

    # --- reconciliation --------------------------------------------------------------------------

    def _checksum(self, conn: sa.Connection, qtable: str, schema: Schema, *, join_stg: str | None = None) -> Checksum:
        ck = super()._checksum(conn, qtable, schema, join_stg=join_stg)
        if join_stg is not None:
            fold = conn.exec_driver_sql(
                f"SELECT SUM({self.q('_fold')}) FROM {join_stg} WHERE {self.q('_op')} <> 'D'").scalar()
        else:
            fold = self._folds.pop(qtable, 0)   # set by this snapshot's load; a live table has none
        return Checksum(ck.count, (ck.total + int(fold or 0)) & _MASK64)

    # --- probe -----------------------------------------------------------------------------------

    version_sql = "SELECT banner FROM v$version WHERE ROWNUM = 1"

    def grant_hint(self, step: str, schema_name: str | None) -> str:
        user = (self.engine.url.username or "EDX_SYNC").upper()
        if schema_name and schema_name.upper() != user:
            return (f"Connect as the owner of schema {schema_name.upper()} (the agent writes only its own schema); "
                    "see docs/grants/oracle.sql")
        if step in ("create", "staging", "rename", "drop"):
            return (f"GRANT CREATE SESSION, CREATE TABLE TO {user}; ALTER USER {user} QUOTA UNLIMITED ON USERS; "
                    "(use the account's default tablespace; docs/grants/oracle.sql)")
        return f"{user} owns its tables and needs nothing more for {step}; see docs/grants/oracle.sql"

    def _probe_settings(self, conn: sa.Connection, schema_name: str | None) -> list[ProbeItem]:
        nls = dict(conn.exec_driver_sql(
            "SELECT parameter, value FROM nls_database_parameters WHERE parameter IN "
            "('NLS_CHARACTERSET', 'NLS_NCHAR_CHARACTERSET')").all())
        privs = {r[0] for r in conn.exec_driver_sql("SELECT privilege FROM session_privs").all()}
        tz = conn.exec_driver_sql("SELECT SESSIONTIMEZONE FROM dual").scalar()
        ncs, cs = nls.get("NLS_NCHAR_CHARACTERSET", "?"), nls.get("NLS_CHARACTERSET", "?")
        thin = bool(getattr(conn.connection.driver_connection, "thin", True))
        limit = self._ident_limit()
        items = [
            ProbeItem("oracle:nchar_characterset", ncs == "AL16UTF16", ncs,
                      "" if ncs == "AL16UTF16" else "Synced text is NVARCHAR2/NCLOB: with NLS_NCHAR_CHARACTERSET "
                      "UTF8 a string(n) above 666 characters cannot be created; AL16UTF16 is the default."),
            ProbeItem("oracle:characterset", True, f"{cs} (synced text does not depend on it: it is national "
                      "character data)" + ("" if cs == "AL32UTF8" else "; the agent's own tables keep dataset "
                                           "names and reasons in it")),
            ProbeItem("oracle:create_table", "CREATE TABLE" in privs or "CREATE ANY TABLE" in privs,
                      ", ".join(sorted(privs & {"CREATE TABLE", "CREATE ANY TABLE", "UNLIMITED TABLESPACE"})),
                      "" if "CREATE TABLE" in privs else self.grant_hint("create", schema_name)),
            ProbeItem("oracle:time_zone", str(tz).strip() in ("+00:00", "UTC"), f"agent sessions use {tz}",
                      "" if str(tz).strip() in ("+00:00", "UTC") else "Do not override TIME_ZONE for the agent."),
            ProbeItem("oracle:identifiers", True, f"names up to {limit} bytes"
                      + ("" if limit >= 128 else " (COMPATIBLE below 12.2; long dataset names are refused)")),
            ProbeItem("oracle:driver_mode", True, "thin (no Oracle Client needed)" if thin else "thick (Oracle Client)"),
        ]
        if schema_name:
            owner = self._owner_table("x", schema_name)[0]
            exists = conn.exec_driver_sql("SELECT 1 FROM all_users WHERE username = :1", (owner,)).first()
            items.append(ProbeItem("oracle:schema", exists is not None, str(owner),
                                   "" if exists else f"CREATE USER {owner} ...; (docs/grants/oracle.sql)"))
        return items

    def _session_checks(self, conn: sa.Connection, table: str, schema_name: str | None) -> None:
        if "session" in self._checked:
            return
        ncs = conn.exec_driver_sql("SELECT value FROM nls_database_parameters WHERE parameter = "
                                   "'NLS_NCHAR_CHARACTERSET'").scalar()
        if ncs not in ("AL16UTF16", "UTF8"):
            raise DatabaseConfigError(f"NLS_NCHAR_CHARACTERSET is {ncs}: national character data cannot hold "
                                      "every character the platform sends",
                                      remedy="Use a database whose national character set is AL16UTF16.")
        self._checked.add("session")

    # --- errors ----------------------------------------------------------------------------------

    def _error_class(self, orig: BaseException) -> type | None:
        code = ""
        for a in getattr(orig, "args", ())[:1]:
            code = getattr(a, "full_code", "") or ""
        return _CODES.get(code or _code_of(str(orig)))

    def _error_column(self, exc: BaseException) -> str | None:
        return self._column_of(str(getattr(exc, "orig", exc)))

    @staticmethod
    def _column_of(text: str) -> str | None:
        m = _COL_RE.search(text)
        if not m:
            return None
        name = m.group(1)
        return name.lower() if name == name.upper() else name   # stored upper case for a lower-case name


def adapt_sql(statement: str) -> str:
    """Oracle spelling of the base's portable SQL: quoted bookkeeping columns, DROP TABLE IF EXISTS.

    ``DROP TABLE IF EXISTS`` exists only from 23ai; the block below does the same on every version,
    and PURGE keeps dropped shadow and staging tables out of the recycle bin.
    """
    m = _DROP_RE.match(statement)
    if m:
        return ("BEGIN EXECUTE IMMEDIATE 'DROP TABLE " + m.group(1) + " PURGE'; EXCEPTION WHEN OTHERS THEN "
                "IF SQLCODE != -942 THEN RAISE; END IF; END;")
    if "_o" not in statement and "_fold" not in statement:
        return statement
    return _BARE_RE.sub(lambda x: f'"_{x.group(1).upper()}"', statement)


def _code_of(text: str) -> str:
    m = _CODE_RE.search(text)
    return m.group(1) if m else ""


def _fold(fields: list[str | None], foldable: list[int]) -> int:
    """Checksum correction of a row whose '' values Oracle keeps as NULL: hub's hash minus the stored one."""
    if not foldable or "" not in fields:
        return 0
    stored = list(fields)
    hit = False
    for i in foldable:
        if stored[i] == "":
            stored[i] = None
            hit = True
    return (row_hash_fast(fields) - row_hash_fast(stored)) & _MASK64 if hit else 0


def _date_handler(dbapi: Any, previous: Callable[..., Any] | None) -> Callable[..., Any]:
    """Output type handler: a DATE at midnight is a portable date (Oracle DATE always has a time part).

    Six parameters, like SQLAlchemy's own handler that it wraps: oracledb tells the old calling
    convention from the new ``(cursor, metadata)`` one by the handler's argument count.
    """
    def handler(cursor: Any, name: Any, default_type: Any, size: Any, precision: Any, scale: Any) -> Any:
        if default_type is getattr(dbapi, "DB_TYPE_DATE", None):
            return cursor.var(dbapi.DB_TYPE_DATE, arraysize=cursor.arraysize, outconverter=_midnight_to_date)
        return previous(cursor, name, default_type, size, precision, scale) if previous is not None else None
    return handler


def _midnight_to_date(value: Any) -> Any:
    if isinstance(value, dt.datetime) and value.time() == dt.time(0):
        return value.date()
    return value


# --- converters: canonical text -> the Python value bound ----------------------------------------


def _decimal(ptype: PortableType) -> Callable[[str], Decimal]:
    def conv(text: str) -> Decimal:
        if encode_value(ptype, text) != text:   # NUMBER(p,s) would round extra digits silently
            raise ValueError(f"{text} is not in canonical {ptype} form")
        return Decimal(text)
    return conv


def _string(n: int) -> Callable[[str], str | None]:
    def conv(text: str) -> str | None:
        if len(text) > n:
            raise ValueError(f"{len(text)} characters exceed string({n})")
        return text or None
    return conv


def _bool(text: str) -> int:
    if text not in ("0", "1"):
        raise ValueError(f"{text!r} is not a boolean (0 or 1)")
    return int(text)


def _time(text: str) -> dt.timedelta:
    t = dt.time.fromisoformat(text)
    return dt.timedelta(hours=t.hour, minutes=t.minute, seconds=t.second, microseconds=t.microsecond)


def _timestamp(text: str) -> dt.datetime:
    ts = dt.datetime.fromisoformat(text)
    if ts.tzinfo is not None:
        raise ValueError("timestamp carries a time zone")
    return ts


def _timestamptz(text: str) -> dt.datetime:
    ts = dt.datetime.fromisoformat(text)
    if ts.tzinfo is None:
        raise ValueError("timestamptz without an offset")
    # bound as a plain TIMESTAMP in UTC: the session's +00:00 zone makes it the same instant
    return ts.astimezone(dt.timezone.utc).replace(tzinfo=None)


def _binary(text: str) -> bytes | None:
    return base64.b64decode(text, validate=True) or None


def _converters(schema: Schema) -> list[Callable[[str], Any] | None]:
    out: list[Callable[[str], Any] | None] = []
    for c in schema.columns:
        b = c.type.base
        out.append({"int32": int_range(32), "int64": int_range(64), "float64": finite_float, "bool": _bool,
                    "date": dt.date.fromisoformat, "time": _time, "timestamp": _timestamp,
                    "timestamptz": _timestamptz, "uuid": uuid_text, "binary": _binary, "json": json_text,
                    "text": lambda s: s or None}.get(b)
                   or (_decimal(c.type) if b == "decimal" else _string(c.type.length or 0)))
    return out
