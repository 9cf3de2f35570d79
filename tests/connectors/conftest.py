"""Fixtures of the connector compliance suite: one throw-away database per module and connector.

The server URLs come from tests/conftest.py (EDX_TEST_MYSQL_URL, EDX_TEST_PG_URL: one place for the
whole repository). An unreachable server skips on a developer's machine and fails with CI=true.
Oracle and SQL Server join the suite only when EDX_TEST_ORACLE_URL / EDX_TEST_MSSQL_URL name a server
(none can run here); they use the account's own schema, with a table of its own per test.
"""

from __future__ import annotations

import io
import os
import uuid
from typing import Any, Iterable, Sequence

import pytest

import connectors
from agent.errors import IntegrityError
from agent.payload import Manifest, canonical_from_db, write_payload
from agent.schema import Schema
from connectors.api import ApplyResult, BatchMeta
from tests.conftest import fresh_mysql_database, fresh_pg_database, unavailable

ORACLE_URL = os.environ.get("EDX_TEST_ORACLE_URL", "")
MSSQL_URL = os.environ.get("EDX_TEST_MSSQL_URL", "")
CONNECTORS = ["sqlite", "mysql", "postgresql"] + (["oracle"] if ORACLE_URL else []) + (["sqlserver"] if MSSQL_URL else [])


class MemorySource:
    """A BatchSource over payload bytes held in memory (test helper, not product code).

    ``finish()`` raises IntegrityError unless every byte was read, like the real decrypting source;
    ``fail_finish`` makes it raise anyway (a chunk that failed verification at the very end).
    """

    def __init__(self, data: bytes, *, fail_finish: bool = False, reopenable: bool = True) -> None:
        self._data = data
        self._buf = io.BytesIO(data)
        self.manifest = Manifest.read_from(self._buf)
        self._start = self._buf.tell()
        self.rows = self._buf
        self.fail_finish = fail_finish
        if not reopenable:
            self.reopen = None  # type: ignore[assignment]

    @classmethod
    def build(cls, schema: Schema, kind: str, records: Sequence[tuple[str, Sequence[str | None]]],
              dataset: str = "ds", **kw: Any) -> "MemorySource":
        out = io.BytesIO()
        write_payload(out, dataset, kind, schema, records, len(records))
        return cls(out.getvalue(), **kw)

    def reopen(self) -> io.BytesIO:  # type: ignore[no-redef]
        return io.BytesIO(self._data[self._start:])

    def finish(self) -> None:
        if self._buf.read(1):
            raise IntegrityError("the connector stopped before the end of the payload")
        if self.fail_finish:
            raise IntegrityError("last chunk failed verification (test)")


def fresh_url(kind: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Any]:
    if kind == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "target.db"
        return f"sqlite:///{path}", lambda: None
    if kind == "mysql":
        return fresh_mysql_database()
    if kind in ("oracle", "sqlserver"):
        url = ORACLE_URL if kind == "oracle" else MSSQL_URL
        try:   # a missing driver or ODBC library counts as unreachable: skipped here, a failure in CI
            probe = connectors.connect(url)
            with probe.engine.connect():
                pass
            probe.close()
        except Exception as e:  # noqa: BLE001 - unreachable or refused: same outcome here
            unavailable(kind, e)
        return url, lambda: None
    return fresh_pg_database()


@pytest.fixture(scope="module", params=CONNECTORS)
def db(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """(connector, url) on a database created for this module and dropped after it."""
    url, drop = fresh_url(request.param, tmp_path_factory)
    conn = connectors.connect(url)
    yield conn
    conn.close()
    drop()


@pytest.fixture
def table(request: pytest.FixtureRequest) -> str:
    """A table name of its own for each test (the database is shared by the module)."""
    return "t_" + uuid.uuid4().hex[:8]


def apply(conn: Any, table: str, schema: Schema, kind: str, seq: int,
          records: Sequence[tuple[str, Sequence[str | None]]], **meta: Any) -> ApplyResult:
    src_kw = {k: meta.pop(k) for k in ("fail_finish", "reopenable") if k in meta}
    source = MemorySource.build(schema, kind, records, dataset=meta.pop("dataset", table), **src_kw)
    return conn.apply(BatchMeta(dataset=source.manifest.dataset, table=table, seq=seq, kind=kind,
                                batch_digest=f"{seq:064x}", **meta), source)


def read_rows(conn: Any, table: str, schema: Schema, schema_name: str | None = None) -> dict[Any, list[str | None]]:
    """The table's rows as canonical texts, keyed by the primary key's canonical texts."""
    cols = ", ".join(conn.q(c) for c in schema.names)
    with conn.engine.connect() as c:
        rows = c.exec_driver_sql(f"SELECT {cols} FROM {conn.qname(table, schema_name)}").all()
    out = {}
    pk = [schema.names.index(k) for k in schema.primary_key]
    for r in rows:
        fields = [canonical_from_db(col.type, v) for col, v in zip(schema.columns, r)]
        out[tuple(fields[i] for i in pk)] = fields
    return out


def records_of(rows: Iterable[Sequence[str | None]], op: str = "I") -> list[tuple[str, list[str | None]]]:
    return [(op, list(r)) for r in rows]
