"""A recording PEP 249 driver for tests: plays Oracle or SQL Server for SQLAlchemy and records every call.

No Oracle or SQL Server runs here, so the connectors run end to end against this module instead:
``create_engine(url, module=oracle_module(server))``. SQLAlchemy's real dialects compile and send
their statements to it, the connectors' real code runs on top, and the ``Server`` keeps the ordered
log of what reached the "driver": execute/executemany with SQL text and parameter batches,
setinputsizes, cursor attributes set (fast_executemany), commit and rollback. It answers only what
SQLAlchemy's dialects ask on connect and what a test scripts; it remembers which tables exist (from
CREATE/DROP/RENAME) so ``has_table`` and the staging reuse behave as on a server. It does not execute
SQL: what the statements do to data is asserted on real servers (EDX_TEST_ORACLE_URL/EDX_TEST_MSSQL_URL).
"""

from __future__ import annotations

import re
import types
from dataclasses import dataclass, field
from typing import Any, Callable

Rows = list[tuple[Any, ...]]


@dataclass
class Call:
    """One call that reached the driver."""

    kind: str                     # connect, execute, executemany, setinputsizes, setattr, commit, rollback, close
    sql: str = ""
    params: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        n = f" x{len(self.params)}" if self.kind == "executemany" else ""
        return f"<{self.kind}{n} {self.sql[:70]!r}>" if self.sql else f"<{self.kind} {self.extra or ''}>"


class Server:
    """State shared by every connection of one fake database: the call log, tables and scripted answers."""

    def __init__(self, dialect: str, *, version: str = "", owner: str = "EDX") -> None:
        self.dialect = dialect
        self.calls: list[Call] = []
        self.tables: set[str] = set()
        self.comments: dict[str, str] = {}
        self.owner = owner
        self.version = version or ("19.0.0.0.0" if dialect == "oracle" else "16.0.1000.6")
        self.compatible = ".".join(self.version.split(".")[:3])
        # oracledb 2.5+ reads it from the server's handshake; an 11g server does not send it
        self.max_identifier_length = 128 if tuple(map(int, self.version.split(".")[:2])) >= (12, 2) else None
        self.nls = {"NLS_CHARACTERSET": "ZHS16GBK", "NLS_NCHAR_CHARACTERSET": "AL16UTF16"}
        self.rules: list[tuple[re.Pattern[str], Callable[[str, Any], Any]]] = []
        self.batch_errors: Callable[[str, list[Any]], list[Any]] | None = None
        self.fail: Callable[[str, Any], BaseException | None] | None = None

    # --- scripting -----------------------------------------------------------------------------

    def script(self, pattern: str, answer: Rows | Callable[[str, Any], Rows]) -> None:
        """Answer statements matching ``pattern`` (regex, searched) with rows; later rules win."""
        fn = answer if callable(answer) else (lambda sql, params, rows=answer: rows)
        self.rules.insert(0, (re.compile(pattern, re.IGNORECASE | re.DOTALL), fn))

    # --- what tests read -------------------------------------------------------------------------

    def log(self, *kinds: str) -> list[Call]:
        return [c for c in self.calls if not kinds or c.kind in kinds]

    def statements(self) -> list[str]:
        return [c.sql for c in self.calls if c.kind in ("execute", "executemany")]

    def since(self, marker: int) -> list[Call]:
        return self.calls[marker:]

    # --- the "database" --------------------------------------------------------------------------

    def _name(self, raw: str) -> str:
        name = raw.rsplit(".", 1)[-1].strip('"[]`')
        return name

    def run(self, sql: str, params: Any) -> tuple[Rows | None, int]:
        """(rows or None for a statement without a result, rowcount)."""
        if self.fail is not None:
            err = self.fail(sql, params)
            if err is not None:
                raise err
        for pattern, fn in self.rules:
            if pattern.search(sql):
                return fn(sql, params), -1
        s = " ".join(sql.split())
        self._ddl(s)
        answer = self._dialect_answer(s, params)
        if answer is not None:
            return answer, -1
        if re.match(r"(WITH\b.*?\)\s*)?SELECT\b", s, re.IGNORECASE):
            if re.match(r"SELECT (COUNT\(\*\)|COALESCE\(SUM|SUM\()", s, re.IGNORECASE):
                n = s.upper().split(" FROM ", 1)[0].count("COALESCE(") or s.upper().split(" FROM ", 1)[0].count("(")
                return [tuple(0 for _ in range(max(n, 1)))], -1
            return [], -1
        return None, 0

    def _ddl(self, s: str) -> None:
        m = re.match(r"CREATE (?:GLOBAL TEMPORARY )?TABLE (\S+)", s, re.IGNORECASE)
        if m:
            self.tables.add(self._name(m.group(1)))
        m = re.search(r"DROP TABLE (?:IF EXISTS )?([^\s']+)", s, re.IGNORECASE)
        if m:
            self.tables.discard(self._name(m.group(1)))
        m = re.match(r"ALTER TABLE (\S+) RENAME TO (\S+)", s, re.IGNORECASE)
        if m:
            self.tables.discard(self._name(m.group(1)))
            self.tables.add(self._name(m.group(2)))
        m = re.match(r"EXEC sp_rename N'([^']+)', N'([^']+)'", s, re.IGNORECASE)
        if m:
            self.tables.discard(self._name(m.group(1)))
            self.tables.add(m.group(2))
        m = re.match(r"COMMENT ON TABLE (\S+) IS '(.*)'$", s, re.IGNORECASE)
        if m:
            self.comments[self._name(m.group(1))] = m.group(2)

    def _dialect_answer(self, s: str, params: Any) -> Rows | None:
        low = s.lower()
        if self.dialect == "oracle":
            if low.startswith("select 1.1 from dual"):
                return [("1.1",)]
            if "sys_context( 'userenv', 'current_schema' )" in low:
                return [(self.owner,)]
            if "from v$parameter" in low:
                return [(self.compatible,)]
            if "from v$version" in low:
                return [(f"Oracle Database {self.version} (fake)",)]
            if "dbms_transaction" in low:
                raise DatabaseError("ORA-00000: the fake does not run PL/SQL")
            if "from nls_database_parameters" in low:
                if low.startswith("select parameter, value"):
                    return list(self.nls.items())
                return [(v,) for k, v in self.nls.items() if k.lower() in low]
            if "from all_tab_comments" in low:
                name = params[1] if isinstance(params, (list, tuple)) else None
                return [(self.comments[name],)] if name in self.comments else []
            if "all_tables" in low or "all_views" in low:
                return [(n,) for n in _strings(params) if n in self.tables]
            if low.startswith("select 1 from dual"):
                return [(1,)]
        else:
            if "serverproperty('productversion')" in low:
                return [(self.version,)]
            if low.startswith("select schema_name()"):
                return [("dbo",)]
            if low.startswith("select db_name()"):
                return [("edx",)]
            if "nvarchar(max)" in low and "test max support" in low:
                return [("test max support",)]
            if "fn_listextendedproperty" in low:
                return [(1,)]
            if "dm_exec_sessions" in low or "transaction_isolation_level" in low:
                return [("READ COMMITTED",)]
            if "information_schema" in low or "sys.tables" in low or "sys.objects" in low:
                return [(n,) for n in _strings(params) if n in self.tables]
            if low == "select 1":
                return [(1,)]
        return None


def _strings(params: Any) -> list[str]:
    out: list[str] = []
    values = params.values() if isinstance(params, dict) else (params or ())
    for v in values:
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            out.extend(x for x in v if isinstance(x, str))
    return out


# --- PEP 249 ---------------------------------------------------------------------------------------

class Warning(Exception):  # noqa: A001 - PEP 249 names
    pass


class Error(Exception):
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


class Cursor:
    """A cursor whose every call is logged on the server."""

    def __init__(self, conn: "Connection") -> None:
        self.connection = conn
        self._server = conn.server
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self.arraysize = 100
        self._rows: Rows = []
        self._errors: list[Any] = []
        self.outputtypehandler = None
        self.inputtypehandler = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "fast_executemany":
            self._server.calls.append(Call("setattr", extra={name: value}))
        object.__setattr__(self, name, value)

    def __enter__(self) -> "Cursor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def setinputsizes(self, *sizes: Any, **named: Any) -> None:
        self._server.calls.append(Call("setinputsizes", params=list(sizes[0]) if len(sizes) == 1 and
                                       isinstance(sizes[0], list) else list(sizes), extra=named))

    def setoutputsize(self, size: int, column: int | None = None) -> None:
        pass

    def execute(self, sql: str, params: Any = None, **kw: Any) -> "Cursor":
        self._server.calls.append(Call("execute", sql, params))
        self._result(*self._server.run(sql, params))
        return self

    def executemany(self, sql: str, seq: Any, **kw: Any) -> None:
        rows = list(seq)
        self._server.calls.append(Call("executemany", sql, rows, extra={k: v for k, v in kw.items()}))
        self._errors = []
        if kw.get("batcherrors") and self._server.batch_errors is not None:
            self._errors = self._server.batch_errors(sql, rows)
        self._server.run(sql, rows)
        self.rowcount = len(rows) - len(self._errors)
        self.description = None

    def getbatcherrors(self) -> list[Any]:
        return list(self._errors)

    def _result(self, rows: Rows | None, rowcount: int) -> None:
        if rows is None:
            self.description, self._rows, self.rowcount = None, [], rowcount
        else:
            width = len(rows[0]) if rows else 1
            self.description = [(f"c{i}", None, None, None, None, None, True) for i in range(width)]
            self._rows, self.rowcount = list(rows), len(rows)

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows.pop(0) if self._rows else None

    def fetchmany(self, size: int | None = None) -> Rows:
        n = size or self.arraysize
        out, self._rows = self._rows[:n], self._rows[n:]
        return out

    def fetchall(self) -> Rows:
        out, self._rows = self._rows, []
        return out

    def nextset(self) -> bool:
        return False

    def var(self, *a: Any, **k: Any) -> Any:
        raise NotSupportedError("the fake has no bind variables")

    def close(self) -> None:
        pass


class Connection:
    """A connection that logs commit and rollback; Oracle and pyodbc attributes SQLAlchemy reads."""

    def __init__(self, server: Server, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.server = server
        self.autocommit = False
        self.thin = True
        self.version = server.version
        self.max_identifier_length = server.max_identifier_length
        self.outputtypehandler = None
        self.converters: dict[int, Any] = {}
        server.calls.append(Call("connect", extra={"args": args, "kwargs": sorted(kwargs)}))

    def cursor(self) -> Cursor:
        return Cursor(self)

    def commit(self) -> None:
        self.server.calls.append(Call("commit"))

    def rollback(self) -> None:
        self.server.calls.append(Call("rollback"))

    def close(self) -> None:
        pass

    def ping(self) -> None:
        pass

    def add_output_converter(self, sqltype: int, fn: Any) -> None:
        self.converters[sqltype] = fn

    def getinfo(self, what: int) -> str:
        return self.server.version


def _module(name: str, server: Server, **attrs: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    for cls in (Warning, Error, InterfaceError, DatabaseError, DataError, OperationalError, IntegrityError,
                InternalError, ProgrammingError, NotSupportedError):
        setattr(mod, cls.__name__, cls)
    mod.apilevel, mod.threadsafety = "2.0", 1
    mod.Cursor = Cursor
    mod.Connection = Connection
    mod.Binary = bytes
    mod.connect = lambda *a, **k: Connection(server, a, k)
    mod.server = server
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def oracle_module(server: Server) -> types.ModuleType:
    """python-oracledb's types and constants (the real module's) with a recording ``connect``."""
    import oracledb

    consts = {k: getattr(oracledb, k) for k in dir(oracledb)
              if k.isupper() or k.startswith("DB_TYPE_") or k in ("makedsn", "Date", "Timestamp")}
    inits: list[Any] = []

    def init_oracle_client(**kw: Any) -> None:
        server.calls.append(Call("init_oracle_client", extra=kw))
        inits.append(kw)

    return _module("fake_oracledb", server, paramstyle="named", version=oracledb.version,
                   init_oracle_client=init_oracle_client, **consts)


# pyodbc's ODBC type codes (sql.h / sqlext.h / msodbcsql.h): the values pyodbc exposes
PYODBC_CONSTANTS = {
    "SQL_CHAR": 1, "SQL_NUMERIC": 2, "SQL_DECIMAL": 3, "SQL_INTEGER": 4, "SQL_SMALLINT": 5, "SQL_FLOAT": 6,
    "SQL_REAL": 7, "SQL_DOUBLE": 8, "SQL_VARCHAR": 12, "SQL_TYPE_DATE": 91, "SQL_TYPE_TIME": 92,
    "SQL_TYPE_TIMESTAMP": 93, "SQL_LONGVARCHAR": -1, "SQL_BINARY": -2, "SQL_VARBINARY": -3,
    "SQL_LONGVARBINARY": -4, "SQL_BIGINT": -5, "SQL_TINYINT": -6, "SQL_BIT": -7, "SQL_WCHAR": -8,
    "SQL_WVARCHAR": -9, "SQL_WLONGVARCHAR": -10, "SQL_GUID": -11, "SQL_SS_TIME2": -154,
    "SQL_SS_TIMESTAMPOFFSET": -155, "SQL_DBMS_VER": 18,
    # PEP 249 type objects, as pyodbc defines them
    "STRING": str, "NUMBER": float, "DATETIME": __import__("datetime").datetime, "BINARY": bytearray, "ROWID": int,
}


def pyodbc_module(server: Server, drivers: tuple[str, ...] = ("ODBC Driver 18 for SQL Server",)) -> types.ModuleType:
    """A pyodbc look-alike (qmark, ODBC type codes, ``drivers()``) with a recording ``connect``."""
    return _module("fake_pyodbc", server, paramstyle="qmark", version="5.2.0", BinaryNull=object(),
                   drivers=lambda: list(drivers), native_uuid=False, **PYODBC_CONSTANTS)
