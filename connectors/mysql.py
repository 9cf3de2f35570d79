"""MySQL/MariaDB connector: LOAD DATA LOCAL INFILE streamed through a FIFO, strict mode, utf8mb4 only.

The decrypted CSV goes from ``source.rows`` into a FIFO written by a thread and read by PyMySQL's
``LOAD DATA LOCAL INFILE`` (PyMySQL only reads a file path), so the server parses every row and Python
never touches one. With LOCAL, MySQL turns data errors into warnings (it cannot stop the client's upload),
so any warning counts as a refusal: the load is rolled back to its savepoint and redone on the slow path,
which isolates and quarantines the bad rows. When the server has ``local_infile`` off, records are sent as
multi-row INSERTs (PyMySQL's executemany rewrite) instead, and ``probe`` says so.

DDL commits by itself in MySQL, so a snapshot's shadow table is loaded and committed first and swapped by
``RENAME TABLE`` (atomic for readers) before the checkpoint commits; docs/connectors.md explains why a
crash in between is harmless (the snapshot is applied again, idempotently).
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import threading
from typing import Any

import sqlalchemy as sa

from agent.errors import DatabaseConfigError
from agent.payload import Checksum
from agent.schema import Column, PortableType, Schema

from ._errors import CodeTable
from ._load import Converter, finite_float
from .api import Capabilities, ProbeItem
from .base import BaseConnector, Refused

SQL_MODE = "STRICT_ALL_TABLES,NO_ZERO_DATE,NO_ZERO_IN_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
_COL_RE = re.compile(r"column '([^']+)'", re.IGNORECASE)
# error numbers -> tree (server errors 1xxx/4xxx, client errors 2xxx)
_CODES = CodeTable(
    unavailable={2002, 2003, 2005, 2006, 2013, 2055, 1040, 1053, 1077, 1081, 1152, 1158, 1159, 1160, 1161,
                 1927},
    busy={1205, 1213, 1637, 3572},
    permission={1044, 1045, 1142, 1143, 1227, 1370, 1698, 3118, 1148, 2068, 3948},
    config={1049, 1115, 1273, 1286, 1289, 1461},
    data={1048, 1062, 1263, 1264, 1265, 1292, 1366, 1367, 1406, 1416, 1451, 1452, 1690, 3140, 3819, 4025,
          1300, 1582, 1586, 3101})


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _utc26(text: str) -> str:
    if not text.endswith("+00:00"):
        raise ValueError(f"timestamptz {text!r} is not in UTC canonical form")
    return text[:26]


class MySQLConnector(BaseConnector):
    """MySQL 5.7+/8.x and MariaDB 10.3+ (also TiDB and OceanBase's MySQL mode; see docs/connectors.md)."""

    name = "mysql"
    driver = "pymysql"
    install_hint = "pip install pymysql (a dependency of edx-agent)"
    capabilities = Capabilities(bulk_path="load-data-local", transactional_ddl=False, atomic_swap=True,
                                max_identifier_length=64, schemas=True, timezone_type=False,
                                row_quarantine=True)

    def _create_engine(self, url: str, options: dict[str, Any]) -> sa.Engine:
        u = sa.engine.make_url(url)
        if u.drivername in ("mysql", "mariadb"):
            u = u.set(drivername=u.drivername + "+pymysql")
        if "charset" not in u.query:
            u = u.update_query_dict({"charset": "utf8mb4"})
        args = dict(options.pop("connect_args", {}))
        args.setdefault("local_infile", True)
        # every session: strict (bad values are errors, not silent truncation) and UTC
        args.setdefault("init_command", f"SET SESSION sql_mode='{SQL_MODE}', time_zone='+00:00'")
        engine = sa.create_engine(u, pool_pre_ping=True, connect_args=args, **options)
        self._local_infile: bool | None = None
        return engine

    @property
    def is_mariadb(self) -> bool:
        if not hasattr(self.engine.dialect, "server_version_info") or \
                self.engine.dialect.server_version_info is None:
            with self.engine.connect():
                pass
        return bool(getattr(self.engine.dialect, "is_mariadb", False))

    @property
    def collation(self) -> str:
        # binary and NO PAD: 'a' <> 'A' and 'a' <> 'a ' as in the platform (and in PostgreSQL)
        return "utf8mb4_nopad_bin" if self.is_mariadb else "utf8mb4_0900_bin"

    # --- DDL -------------------------------------------------------------------------------------

    def type_sql(self, ptype: PortableType) -> str:
        b = ptype.base
        if b == "string":
            return f"VARCHAR({ptype.length})" if (ptype.length or 0) <= 1024 else "LONGTEXT"
        if b == "decimal":
            return f"DECIMAL({ptype.precision},{ptype.scale})"
        return {"int32": "INT", "int64": "BIGINT", "float64": "DOUBLE", "bool": "TINYINT(1)",
                "text": "LONGTEXT", "date": "DATE", "time": "TIME(6)", "timestamp": "DATETIME(6)",
                "timestamptz": "DATETIME(6)", "uuid": "CHAR(36) CHARACTER SET ascii COLLATE ascii_bin",
                "binary": "LONGBLOB", "json": "LONGTEXT"}[b]

    def column_sql(self, col: Column, *, staging: bool = False) -> str:
        sql = super().column_sql(col, staging=staging)
        if col.type.base == "json":
            sql += f" CHECK (JSON_VALID({self.q(col.name)}))"
        return sql

    def table_options(self) -> str:
        return f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collation}"

    def widen_column_sql(self, qname: str, old: Column, new: Column) -> list[str]:
        return [f"ALTER TABLE {qname} MODIFY COLUMN {self.column_sql(new)}"]

    def _create_staging(self, conn: sa.Connection, stg: str, schema: Schema, schema_name: str | None) -> str:
        # a real table, not TEMPORARY: MySQL cannot refer to a temporary table twice in one statement
        name = self.qname(stg, schema_name)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {name}")
        cols = ", ".join(self.column_sql(c, staging=True) for c in schema.columns)
        conn.exec_driver_sql(f"CREATE TABLE {name} (_ord BIGINT AUTO_INCREMENT PRIMARY KEY, "
                             f"_op CHAR(1) NOT NULL, {cols}){self.table_options()}")
        return name

    def _swap(self, conn: sa.Connection, table: str, schema_name: str | None, shadow: str, old: str,
              live_exists: bool) -> None:
        live = self.qname(table, schema_name)
        # one RENAME TABLE statement is atomic: readers see the old table or the new one
        conn.exec_driver_sql(f"RENAME TABLE {live} TO {old}, {shadow} TO {live}" if live_exists
                             else f"RENAME TABLE {shadow} TO {live}")

    def _rename(self, conn: sa.Connection, qold: str, new: str, schema_name: str | None) -> None:
        conn.exec_driver_sql(f"RENAME TABLE {qold} TO {self.qname(new, schema_name)}")

    # --- probe ---------------------------------------------------------------------------------

    version_sql = "SELECT VERSION()"
    _GRANTS = {"create": "CREATE", "insert": "INSERT", "update": "UPDATE", "delete": "DELETE",
               "staging": "CREATE, DROP", "rename": "ALTER, CREATE, DROP, INSERT", "drop": "DROP"}

    def grant_hint(self, step: str, schema_name: str | None) -> str:
        db = schema_name or self.engine.url.database or "DATABASE"
        user = self.engine.url.username or "edx_sync"
        return (f"GRANT {self._GRANTS.get(step, 'ALL')} ON `{db}`.* TO '{user}'@'%'; "
                "(the full least-privilege set is in docs/grants/mysql.sql)")

    def _probe_settings(self, conn: sa.Connection, schema_name: str | None) -> list[ProbeItem]:
        v = dict(conn.exec_driver_sql(
            "SHOW GLOBAL VARIABLES WHERE Variable_name IN ('local_infile', 'innodb_buffer_pool_size', "
            "'character_set_server', 'time_zone', 'system_time_zone', 'max_allowed_packet')").all())
        s = conn.exec_driver_sql("SELECT @@session.sql_mode, @@session.time_zone, @@character_set_client, "
                                 "@@character_set_connection, @@character_set_results").one()
        items = []
        on = str(v.get("local_infile", "OFF")).upper() in ("ON", "1")
        items.append(ProbeItem(
            "mysql:local_infile", on,
            "ON: batches load with LOAD DATA LOCAL INFILE" if on else
            "OFF: batches fall back to multi-row INSERT, several times slower",
            "" if on else "SET GLOBAL local_infile = 1; and local_infile = 1 under [mysqld] in my.cnf"))
        items.append(self._buffer_pool_item(conn, int(v.get("innodb_buffer_pool_size", 0) or 0), schema_name))
        cs = v.get("character_set_server", "")
        items.append(ProbeItem(
            "mysql:character_set_server", cs == "utf8mb4", cs,
            "" if cs == "utf8mb4" else "character-set-server = utf8mb4 in my.cnf: the agent's own tables are "
            "utf8mb4 anyway, but tables others create for it would lose 4-byte characters."))
        conn_cs = {s[2], s[3], s[4]}
        items.append(ProbeItem(
            "mysql:connection_charset", conn_cs == {"utf8mb4"}, ", ".join(sorted(conn_cs)),
            "" if conn_cs == {"utf8mb4"} else "Remove charset= from database.url (the agent uses utf8mb4)."))
        items.append(ProbeItem(
            "mysql:time_zone", s[1] == "+00:00",
            f"server {v.get('time_zone')} (system {v.get('system_time_zone')}); agent sessions use {s[1]}",
            "" if s[1] == "+00:00" else "Do not override time_zone for the agent's sessions."))
        strict = "STRICT_ALL_TABLES" in (s[0] or "")
        items.append(ProbeItem("mysql:sql_mode", strict, f"session {s[0]}",
                               "" if strict else "Do not override sql_mode for the agent's sessions."))
        return items

    def _buffer_pool_item(self, conn: sa.Connection, pool: int, schema_name: str | None) -> ProbeItem:
        # A bulk load whose table and keys outgrow the buffer pool flushes and re-reads pages for every row:
        # with the stock 128 MiB, a 1M-row student snapshot loaded 4.5x slower per row than a 200k one
        # (issue 9; bench/bench_e2e.py --full). A snapshot needs room for its shadow table next to the live one.
        total, largest = conn.exec_driver_sql(
            "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0), COALESCE(MAX(DATA_LENGTH + INDEX_LENGTH), 0) "
            "FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE())", (schema_name,)).one()
        need = max(256 << 20, int(total) + int(largest))
        advice = ((need >> 20) + 127) // 128 * 128
        detail = (f"{pool >> 20} MiB for {int(total) >> 20} MiB of tables in the target schema "
                  f"(largest {int(largest) >> 20} MiB; a snapshot also needs room for its shadow copy)")
        return ProbeItem(
            "mysql:innodb_buffer_pool_size", pool >= need, detail,
            "" if pool >= need else f"Raise innodb_buffer_pool_size to at least {advice} MiB "
            "(SET GLOBAL innodb_buffer_pool_size = ...; and under [mysqld] in my.cnf; 50-70% of RAM on a "
            "dedicated server): below the synced tables' size, bulk loads and merges slow down several times "
            "per row as pages are flushed and read back.")

    # --- session checks ---------------------------------------------------------------------------

    def _session_checks(self, conn: sa.Connection, table: str, schema_name: str | None) -> None:
        if "session" not in self._checked:
            row = conn.exec_driver_sql("SELECT @@character_set_client, @@character_set_connection, "
                                       "@@character_set_results, @@sql_mode, @@time_zone").one()
            bad = [v for v in row[:3] if (v or "") != "utf8mb4"]
            if bad:
                raise DatabaseConfigError(
                    f"the connection uses character set {bad[0]}, not utf8mb4: 4-byte characters "
                    "(emoji, CJK extension B) would be lost",
                    remedy="Remove charset= from database.url or set charset=utf8mb4.")
            if "STRICT_ALL_TABLES" not in (row[3] or ""):
                raise DatabaseConfigError(f"sql_mode {row[3]!r} is not strict; bad values would be truncated",
                                          remedy="Do not override sql_mode in init_command.")
            self._checked.add("session")
        schema, name = self._names(table, schema_name)
        cols = conn.exec_driver_sql(
            "SELECT COLUMN_NAME, CHARACTER_SET_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND CHARACTER_SET_NAME IS NOT NULL "
            "AND CHARACTER_SET_NAME NOT IN ('utf8mb4', 'ascii', 'binary')", (schema, name)).all()
        if cols:
            raise DatabaseConfigError(
                f"table {name}: column {cols[0][0]} uses character set {cols[0][1]}, not utf8mb4; "
                "4-byte and GB18030-only characters would be lost",
                remedy=f"ALTER TABLE {name} CONVERT TO CHARACTER SET utf8mb4 COLLATE {self.collation}; "
                       "or let a snapshot recreate it (`edx-agent resync DATASET`).")

    # --- loading -----------------------------------------------------------------------------------

    def _bulk_available(self, conn: sa.Connection) -> bool:
        if self._local_infile is None:
            self._local_infile = bool(int(conn.exec_driver_sql("SELECT @@local_infile").scalar() or 0))
        return self._local_infile

    def load_data_sql(self, path: str, qtable: str, schema: Schema, *, shadow: bool) -> str:
        fields, sets = ["@op" if shadow else "_op"], []
        for i, c in enumerate(schema.columns):
            col = self.q(c.name)
            if c.type.base == "binary":
                fields.append(f"@v{i}")
                sets.append(f"{col} = FROM_BASE64(@v{i})")
            elif c.type.base == "timestamptz":
                # canonical text is UTC with +00:00; anything else is refused (truncation warning)
                fields.append(f"@v{i}")
                sets.append(f"{col} = IF(@v{i} IS NULL, NULL, IF(RIGHT(@v{i}, 6) = '+00:00', "
                            f"LEFT(@v{i}, 26), 'not UTC'))")
            else:
                fields.append(col)
        return (f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {qtable} CHARACTER SET utf8mb4 "
                "FIELDS TERMINATED BY ',' ENCLOSED BY '\"' ESCAPED BY '' LINES TERMINATED BY '\\n' "
                f"({', '.join(fields)})" + (f" SET {', '.join(sets)}" if sets else ""))

    def _bulk_load(self, conn: sa.Connection, qtable: str, schema: Schema, stream: Any, *,
                   shadow: bool) -> int:
        tmp = tempfile.mkdtemp(prefix="edx-load-")
        path = os.path.join(tmp, "rows.csv")
        os.mkfifo(path, 0o600)
        errors: list[BaseException] = []

        def feed() -> None:
            try:
                with open(path, "wb") as fifo:  # blocks until the driver opens the other end
                    while chunk := stream.read(1 << 20):
                        fifo.write(chunk)
            except BaseException as e:  # noqa: BLE001 - handed to the caller below
                errors.append(e)

        writer = threading.Thread(target=feed, name="edx-load-data", daemon=True)
        writer.start()
        try:
            res = conn.exec_driver_sql(self.load_data_sql(path, qtable, schema, shadow=shadow))
        except BaseException:
            while writer.is_alive():
                _unblock(path)
                writer.join(0.05)
            if errors and not isinstance(errors[0], BrokenPipeError):
                raise errors[0]
            raise
        finally:
            writer.join()
            shutil.rmtree(tmp, ignore_errors=True)
        if errors:
            raise errors[0]  # the source failed mid-stream (e.g. a chunk failed verification)
        warnings = getattr(res.context.cursor, "warning_count", 0)
        if warnings:
            raise Refused(f"{warnings} warnings from LOAD DATA")
        return int(res.rowcount)

    def _converters(self, schema: Schema, *, shadow: bool) -> list[Converter]:
        conv = {"binary": _b64, "timestamptz": _utc26, "float64": finite_float}
        return [conv.get(c.type.base) for c in schema.columns]

    # --- merge ---------------------------------------------------------------------------------------

    def _repeated_key_sql(self, stg: str, schema: Schema) -> str | None:
        # COUNT(DISTINCT) over the whole staging table: several times cheaper than the delete below
        return f"SELECT 1 FROM {stg} HAVING COUNT(DISTINCT {self._key_list(schema)}) <> COUNT(*)"

    def _delete_repeats(self, conn: sa.Connection, stg: str, schema: Schema) -> None:
        # MariaDB runs "NOT IN (subquery over the same table)" as a nested loop (quadratic): materialise
        # the last ordinal per key once
        keys = self._key_list(schema)
        conn.exec_driver_sql("DROP TEMPORARY TABLE IF EXISTS edx_last")
        conn.exec_driver_sql(f"CREATE TEMPORARY TABLE edx_last (_ord BIGINT PRIMARY KEY) "
                             f"SELECT MAX(_ord) AS _ord FROM {stg} GROUP BY {keys}")
        conn.exec_driver_sql(f"DELETE s FROM {stg} s LEFT JOIN edx_last l ON l._ord = s._ord WHERE l._ord IS NULL")
        conn.exec_driver_sql("DROP TEMPORARY TABLE edx_last")

    # STRAIGHT_JOIN: the staging table has no statistics yet (ANALYZE would commit), and MariaDB was seen
    # putting it on the inner side of a block nested loop: a 200k-row DELETE ran for minutes instead of 0.2 s
    def _delete_sql(self, target: str, stg: str, schema: Schema, where: str) -> str:
        return (f"DELETE t FROM {stg} s STRAIGHT_JOIN {target} t ON {self._pk_join(schema)} "
                f"WHERE s._op = 'D'{where}")

    def _stamp_sql(self, target: str, stg: str | None, schema: Schema) -> str:
        if stg is None:
            return super()._stamp_sql(target, stg, schema)
        return (f"UPDATE {stg} s STRAIGHT_JOIN {target} t ON {self._pk_join(schema)} "
                f"SET {self._lineage_sets('t')} WHERE s._op <> 'D'")

    def _touched_rows_sql(self, qtable: str, stg: str, schema: Schema) -> str:
        # the clustered index walked once: 0.95 -> 0.79 s for 180k rows here
        return self._touched_rows_in_key_order_sql(qtable, stg, schema, "STRAIGHT_JOIN",
                                                   " LIMIT 18446744073709551615")

    def _upsert_sql(self, target: str, stg: str, schema: Schema, where: str, *, count: bool = False) -> str:
        """INSERT … ON DUPLICATE KEY UPDATE; ``count``: also add 1 to @edx_updated for every row that
        existed (the first assignment's IF runs once per updated row, whether its values change or not)."""
        rest = [c for c in schema.names if c not in schema.primary_key] or [schema.primary_key[0]]
        cols = ", ".join(self.q(c) for c in schema.names)
        sets = [f"{self.q(c)} = VALUES({self.q(c)})" for c in rest]
        if count:
            c0 = self.q(rest[0])
            sets[0] = f"{c0} = IF((@edx_updated := @edx_updated + 1) > 0, VALUES({c0}), {target}.{c0})"
        # in key order, as SQLite does: InnoDB's clustered index is walked once (upsert of 180k staged rows
        # into 200k: 2.14 -> 1.98 s here, three runs each, interleaved)
        return (f"INSERT INTO {target} ({cols}) SELECT {self._select_cols(schema)} FROM {stg} s "
                f"WHERE s._op <> 'D'{where} ORDER BY {self._key_list(schema, 's')} "
                f"ON DUPLICATE KEY UPDATE {', '.join(sets)}")

    def _merge_sets(self, conn: sa.Connection, target: str, stg: str, schema: Schema, where: str = "",
                    *, checksum: bool = False) -> tuple[int, int, int, int, Checksum | None]:
        """MariaDB counts the rows that existed inside the upsert (a user variable), not by a join of
        the staging table with the target before it (a third pass over both, 0.44 s of a 3 s merge of
        100k staged rows here). MySQL 8 deprecates assignments inside expressions: it keeps the join."""
        if not self.is_mariadb:
            return super()._merge_sets(conn, target, stg, schema, where, checksum=checksum)
        upserts, dkeys = (int(x) for x in conn.exec_driver_sql(
            f"SELECT COALESCE(SUM(s._op <> 'D'), 0), COALESCE(SUM(s._op = 'D'), 0) FROM {stg} s "
            f"WHERE 1 = 1{where}").one())
        deleted = conn.exec_driver_sql(self._delete_sql(target, stg, schema, where)).rowcount
        existing = 0
        if upserts:
            conn.exec_driver_sql("SET @edx_updated = 0")
            conn.exec_driver_sql(self._upsert_sql(target, stg, schema, where, count=True))
            existing = int(conn.exec_driver_sql("SELECT @edx_updated").scalar() or 0)
        return upserts - existing, existing, max(deleted, 0), dkeys, None

    # --- reconciliation --------------------------------------------------------------------------------

    def _canonical_sql(self, col: str, ptype: PortableType) -> str | None:
        b = ptype.base
        if b in ("int32", "int64", "decimal"):
            return f"CAST({col} AS CHAR)"
        if b in ("string", "text", "json", "uuid"):
            return col
        if b == "bool":
            return f"IF({col}, '1', '0')"
        if b == "date":
            return f"DATE_FORMAT({col}, '%%Y-%%m-%%d')"
        if b == "time":
            return f"TIME_FORMAT({col}, '%%H:%%i:%%s.%%f')"
        if b == "timestamp":
            return f"DATE_FORMAT({col}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')"
        if b == "timestamptz":
            return f"CONCAT(DATE_FORMAT({col}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f'), '+00:00')"
        if b == "binary":
            return f"REPLACE(TO_BASE64({col}), '\\n', '')"
        return None  # float64: the shortest repr is Python's; computed on the Python path

    def _hash_sql(self, schema: Schema, alias: str) -> str | None:
        pieces = []
        for c in schema.columns:
            col = f"{alias}.{self.q(c.name)}"
            text = self._canonical_sql(col, c.type)
            if text is None:
                return None
            # tested on the column: some spellings (IF for bool) turn NULL into a value
            pieces.append(f"IF({col} IS NULL, X'FF', CAST({text} AS BINARY))")
        # payload.row_hash: fields joined by NUL (no argument is NULL, so CONCAT_WS keeps them all)
        return f"CAST(CONV(LEFT(SHA2(CONCAT_WS(X'00', {', '.join(pieces)}), 256), 16), 16, 10) AS DECIMAL(20, 0))"

    # --- errors -------------------------------------------------------------------------------------

    def _error_class(self, orig: BaseException) -> type | None:
        args = getattr(orig, "args", ())
        return _CODES.get(args[0] if args and isinstance(args[0], int) else None)

    def _error_column(self, exc: BaseException) -> str | None:
        m = _COL_RE.search(str(getattr(exc, "orig", exc)))
        return m.group(1) if m else None


def _unblock(path: str) -> None:
    """Open the FIFO's read end once so a writer still waiting in open() wakes up (and then fails)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.close(fd)
    except OSError:
        pass
