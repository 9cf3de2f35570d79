"""Set-based merge of a staged change batch, quarantine of staged rows, and the read-back checksum.

Mixed into ``BaseConnector``. The merge keeps the last staged record per key, counts net effects with one
join, deletes and upserts set-based; when a constraint of the target refuses the set, it is redone key by
key in savepoints and the refused keys are quarantined. The checksum is computed by the server where a
connector can spell every column's canonical text in SQL (``_hash_sql``), otherwise read back in Python.
"""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator, Sequence

import sqlalchemy as sa

from agent.payload import Checksum
from agent.schema import Column, Schema

from ._checksum import canonicalizers, checksum_from_sql, checksum_rows
from ._load import Quarantine


class MergeMixin:
    """Merge, staged-row quarantine and checksum; needs ``q``, ``ph``, ``_converters``, ``_is_refusal``."""

    checksum_in_sql: bool
    split_checksum_rows = 50_000   # below this one query is as quick as two
    engine: sa.Engine
    ph: str

    # --- merge ------------------------------------------------------------------------------------

    def _pk_join(self, schema: Schema, a: str = "t", b: str = "s") -> str:
        return " AND ".join(f"{a}.{self.q(k)} = {b}.{self.q(k)}" for k in schema.primary_key)

    def _key_list(self, schema: Schema, alias: str = "") -> str:
        """The key columns, quoted, comma-separated, each prefixed with ``alias.`` when given."""
        prefix = f"{alias}." if alias else ""
        return ", ".join(f"{prefix}{self.q(k)}" for k in schema.primary_key)

    def _dedup(self, conn: sa.Connection, stg: str, schema: Schema) -> None:
        """Keep only the last staged record of each key (the merge then needs no ordering)."""
        check = self._repeated_key_sql(stg, schema)
        if check is None or conn.exec_driver_sql(check).first() is not None:
            self._delete_repeats(conn, stg, schema)

    def _delete_repeats(self, conn: sa.Connection, stg: str, schema: Schema) -> None:
        conn.exec_driver_sql(self._dedup_sql(stg, schema))

    def _repeated_key_sql(self, stg: str, schema: Schema) -> str | None:
        """A query with a row when some key occurs twice in ``stg``, or None to deduplicate every time.

        Almost every batch has one record per key, so where looking for one repeated key (an aggregate
        that stops at the first) is cheaper than the deleting self-join, the connector says how.
        """
        return None

    def _first_repeated_key_sql(self, stg: str, schema: Schema) -> str:
        return f"SELECT 1 FROM {stg} GROUP BY {self._key_list(schema)} HAVING count(*) > 1 LIMIT 1"

    def _dedup_sql(self, stg: str, schema: Schema) -> str:
        keys = self._key_list(schema)
        return (f"DELETE FROM {stg} WHERE _ord NOT IN "
                f"(SELECT m FROM (SELECT MAX(_ord) AS m FROM {stg} GROUP BY {keys}) d)")

    def _delete_sql(self, target: str, stg: str, schema: Schema, where: str) -> str:
        keys = self._key_list(schema)
        return (f"DELETE FROM {target} WHERE ({keys}) IN "
                f"(SELECT {keys} FROM {stg} s WHERE s._op = 'D'{where})")

    def _upsert_sql(self, target: str, stg: str, schema: Schema, where: str) -> str:
        raise NotImplementedError

    def _select_cols(self, schema: Schema, alias: str = "s") -> str:
        return ", ".join(f"{alias}.{self.q(c)}" for c in schema.names)

    def _merge_sets(self, conn: sa.Connection, target: str, stg: str, schema: Schema, where: str = "",
                    *, checksum: bool = False) -> tuple[int, int, int, int, Checksum | None]:
        """Set-based merge of the (deduplicated) staging rows: (inserted, updated, deleted, deleted keys,
        checksum of the upserted rows as stored, or None when the caller must read them back)."""
        k0 = self.q(schema.primary_key[0])
        row = conn.exec_driver_sql(
            f"SELECT COALESCE(SUM(CASE WHEN s._op <> 'D' THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN s._op <> 'D' AND t.{k0} IS NOT NULL THEN 1 ELSE 0 END), 0), "
            f"COALESCE(SUM(CASE WHEN s._op = 'D' THEN 1 ELSE 0 END), 0) "
            f"FROM {stg} s LEFT JOIN {target} t ON {self._pk_join(schema)} WHERE 1 = 1{where}").one()
        upserts, existing, dkeys = (int(x) for x in row)
        deleted = conn.exec_driver_sql(self._delete_sql(target, stg, schema, where)).rowcount
        if upserts:
            conn.exec_driver_sql(self._upsert_sql(target, stg, schema, where))
        return upserts - existing, existing, max(deleted, 0), dkeys, None

    def _merge(self, conn: sa.Connection, target: str, stg: str, schema: Schema,
               quar: Quarantine, *, checksum: bool = False) -> tuple[int, int, int, int, Checksum | None]:
        self._dedup(conn, stg, schema)
        try:
            with conn.begin_nested():
                return self._merge_sets(conn, target, stg, schema, checksum=checksum)
        except sa.exc.DBAPIError as e:
            if not self._is_refusal(e):
                raise
        # a constraint of the target refused some rows: merge key by key to find them
        totals = [0, 0, 0, 0]
        ck: Checksum | None = Checksum() if checksum else None
        ords = [r[0] for r in conn.exec_driver_sql(f"SELECT _ord FROM {stg} ORDER BY _ord")]
        for o in ords:
            try:
                with conn.begin_nested():
                    *counts, part = self._merge_sets(conn, target, stg, schema, f" AND s._ord = {int(o)}",
                                                     checksum=checksum)
                for i, v in enumerate(counts):
                    totals[i] += v
                ck = None if ck is None or part is None else ck + part
            except sa.exc.DBAPIError as e:
                if not self._is_refusal(e):
                    raise
                self._quarantine_staged(conn, stg, schema, quar, [int(o)], None, _reason(e))
        return totals[0], totals[1], totals[2], totals[3], ck

    def _drop_quarantined_keys(self, conn: sa.Connection, stg: str, schema: Schema, quar: Quarantine) -> None:
        """A key with a refused record is left as it was: its other records of the batch are dropped too."""
        if not quar.entries:
            return
        conv = self._converters(schema, shadow=False)
        idx = [schema.names.index(k) for k in schema.primary_key]
        cond = " AND ".join(f"{self.q(k)} = {self.ph}" for k in schema.primary_key)
        params = []
        for e in quar.entries:
            key = json.loads(e["key_json"])
            if any(key[k] is None for k in schema.primary_key):
                continue
            params.append(tuple(conv[i](key[k]) if conv[i] else key[k] for i, k in zip(idx, schema.primary_key)))
        if params:
            conn.exec_driver_sql(f"DELETE FROM {stg} WHERE {cond}", params)

    def _quarantine_nulls(self, conn: sa.Connection, stg: str, schema: Schema, quar: Quarantine) -> None:
        """Staging columns are nullable (D records carry keys only); NOT NULL is checked here, set-based."""
        required = [c.name for c in schema.columns if not c.nullable and c.name not in schema.primary_key]
        if not required:
            return
        conds = " OR ".join(f"s.{self.q(c)} IS NULL" for c in required)
        picks = ", ".join(f"CASE WHEN s.{self.q(c)} IS NULL THEN 1 ELSE 0 END" for c in required)
        bad = conn.exec_driver_sql(f"SELECT s._ord, {picks} FROM {stg} s WHERE s._op <> 'D' AND ({conds})").all()
        for row in bad:
            col = next(c for c, flag in zip(required, row[1:]) if flag)
            self._quarantine_staged(conn, stg, schema, quar, [int(row[0])], col, f"NULL in NOT NULL column {col}")

    def _quarantine_staged(self, conn: sa.Connection, stg: str, schema: Schema, quar: Quarantine,
                           ords: Sequence[int], column: str | None, reason: str) -> None:
        canon = canonicalizers(schema)
        for o in ords:
            row = conn.exec_driver_sql(
                f"SELECT _op, {', '.join(self.q(c) for c in schema.names)} FROM {stg} WHERE _ord = {int(o)}").one()
            fields = [None if v is None else f(self._staged_value(c, v))
                      for f, c, v in zip(canon, schema.columns, row[1:])]
            conn.exec_driver_sql(f"DELETE FROM {stg} WHERE _ord = {int(o)}")
            quar.add(row[0], fields, column, reason)

    def _staged_value(self, col: Column, value: Any) -> Any:
        return value

    # --- reconciliation -----------------------------------------------------------------------------

    def _hash_sql(self, schema: Schema, alias: str) -> str | None:
        """SQL of one row's 64-bit hash as a number the server can SUM, or None (Python path)."""
        return None

    def _checksum(self, conn: sa.Connection, qtable: str, schema: Schema, *, join_stg: str | None = None) -> Checksum:
        src = self._checksum_source(qtable, schema, join_stg)
        h = self._hash_sql(schema, "t") if self.checksum_in_sql else None
        if h is not None:
            count, total = conn.exec_driver_sql(f"SELECT COUNT(*), SUM({h}) FROM {src}").one()
            return checksum_from_sql(count, total)
        cols = ", ".join(f"t.{self.q(c)}" for c in schema.names)
        return checksum_rows(schema, self._stream_rows(conn, f"SELECT {cols} FROM {src}"),
                             self._canonicalizers(schema))

    def _checksum_source(self, qtable: str, schema: Schema, join_stg: str | None) -> str:
        """FROM clause (alias t) of the rows a figure covers: the whole table, or a change batch's upserts."""
        return f"{qtable} t" if join_stg is None else self._touched_rows_sql(qtable, join_stg, schema)

    def _checksum_committed(self, conn: sa.Connection, qtable: str, schema: Schema, rows: int) -> Checksum:
        """Checksum of a committed table (a MySQL snapshot's shadow), split at the median key over two
        connections so that two server threads hash at once; one query for small tables or the Python path."""
        h = self._hash_sql(schema, "t") if self.checksum_in_sql else None
        if h is None or rows < self.split_checksum_rows:
            return self._checksum(conn, qtable, schema)
        k0 = f"t.{self.q(schema.primary_key[0])}"
        mid = conn.exec_driver_sql(f"SELECT {k0} FROM {qtable} t ORDER BY {k0} LIMIT 1 OFFSET {rows // 2}").scalar()
        if mid is None:
            return self._checksum(conn, qtable, schema)
        sql = f"SELECT COUNT(*), SUM({h}) FROM {qtable} t WHERE {k0} {{}} {self.ph}"
        upper: list[Any] = []

        def other_half() -> None:
            try:
                with self.engine.connect() as c2:
                    upper.append(c2.exec_driver_sql(sql.format(">="), (mid,)).one())
            except BaseException as e:  # noqa: BLE001 - raised on the caller's thread below
                upper.append(e)

        worker = threading.Thread(target=other_half, name="edx-checksum", daemon=True)
        worker.start()
        lower = conn.exec_driver_sql(sql.format("<"), (mid,)).one()
        worker.join()
        if isinstance(upper[0], BaseException):
            raise upper[0]
        return checksum_from_sql(*lower) + checksum_from_sql(*upper[0])

    def _canonicalizers(self, schema: Schema) -> list[Any]:
        """Per column: database value -> canonical text (payload.canonical_from_db, with fast paths)."""
        return canonicalizers(schema)

    def _touched_rows_sql(self, qtable: str, stg: str, schema: Schema) -> str:
        """FROM clause of the rows a change batch left in the table (keys whose last record is I or U)."""
        return f"{stg} s JOIN {qtable} t ON {self._pk_join(schema)} WHERE s._op <> 'D'"

    def _touched_rows_in_key_order_sql(self, qtable: str, stg: str, schema: Schema, join: str,
                                       limit: str = "") -> str:
        """The same rows, driven by the staged keys in key order so the table's key index is walked once.

        ``join`` must keep the staged keys the outer loop (SQLite ``CROSS JOIN``, MySQL ``STRAIGHT_JOIN``);
        ``limit`` is for databases that drop an ORDER BY in a derived table without one (MariaDB).
        """
        keys = self._key_list(schema, "s0")
        return (f"(SELECT {keys} FROM {stg} s0 WHERE s0._op <> 'D' ORDER BY {keys}{limit}) s "
                f"{join} {qtable} t ON {self._pk_join(schema)}")

    def _stream_rows(self, conn: sa.Connection, sql: str) -> Iterator[Sequence[Any]]:
        # per statement: Connection.execution_options() would make every later statement a server cursor
        res = conn.exec_driver_sql(sql, execution_options={"stream_results": True, "max_row_buffer": 10000})
        for part in res.partitions(10000):
            yield from part


def _reason(exc: BaseException) -> str:
    return " ".join(str(getattr(exc, "orig", exc)).split())
