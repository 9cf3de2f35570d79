"""The dlt peer of bench_e2e.py: a dlt pipeline loading the same rows, ``replace`` or ``merge``.

Destinations: ``postgres`` for PostgreSQL, ``sqlalchemy`` for MariaDB and SQLite (dlt has no MySQL-specific
destination). The resource declares the student columns with their types (text lengths, decimal(6,2), a
timestamp with zone and microseconds, the primary key) so the table can be checked against the same
checksum as every other method; deletes of the change batch are dlt hard deletes (a ``deleted`` column
flagged ``hard_delete``). dlt writes into its own dataset (a PostgreSQL schema, a MariaDB database, the
main SQLite database) with its ``_dlt_*`` columns and tables next to the data; the base table of a change
batch is therefore loaded by dlt itself (untimed) before the timed ``merge``.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

DATASET = "dlt_student"
TABLE = "student"


def _columns() -> dict[str, dict[str, Any]]:
    from bench.gen_student import SCHEMA

    cols: dict[str, dict[str, Any]] = {}
    for c in SCHEMA.columns:
        b = c.type.base
        if b == "string":
            h: dict[str, Any] = {"data_type": "text", "precision": c.type.length}
        elif b == "text":
            h = {"data_type": "text"}
        elif b == "int32":
            h = {"data_type": "bigint", "precision": 32}
        elif b == "date":
            h = {"data_type": "date"}
        elif b == "decimal":
            h = {"data_type": "decimal", "precision": c.type.precision, "scale": c.type.scale}
        elif b == "timestamptz":
            h = {"data_type": "timestamp", "timezone": True, "precision": 6}
        else:
            raise ValueError(b)
        h["nullable"] = c.name not in SCHEMA.primary_key
        if c.name in SCHEMA.primary_key:
            h["primary_key"] = True
        cols[c.name] = h
    cols["deleted"] = {"data_type": "bool", "nullable": True, "hard_delete": True}
    return cols


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    from agent.payload import Manifest, iter_records
    from bench.gen_student import SCHEMA

    conv: dict[str, Callable[[str], Any]] = {"grade": int, "birth_date": dt.date.fromisoformat,
                                             "enrol_date": dt.date.fromisoformat, "score": Decimal,
                                             "updated_at": dt.datetime.fromisoformat}
    names = SCHEMA.names
    with open(path, "rb") as f:
        Manifest.read_from(f)
        for op, fields in iter_records(f):
            if op == "D":
                yield {"student_id": fields[0], "deleted": True}
                continue
            yield {n: (conv[n](v) if v is not None and n in conv else v) for n, v in zip(names, fields)}


def _url(db: str, case: Path) -> str:
    from bench import bench_connectors

    return bench_connectors.target_url(db, case)


def _pipeline(db: str, case: Path) -> Any:
    os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")
    import dlt
    import sqlalchemy as sa

    url = sa.engine.make_url(_url(db, case))
    if db == "postgresql":
        # trust authentication here; dlt insists on a password in the credentials (never sent under trust)
        dest = dlt.destinations.postgres(credentials=url.set(drivername="postgresql", password=url.password or "unused")
                                         .render_as_string(False))
        dataset = DATASET
    else:
        dest = dlt.destinations.sqlalchemy(credentials=url.render_as_string(False))
        dataset = DATASET if db == "mysql" else "main"
    return dlt.pipeline(pipeline_name=f"edx_bench_{db}", destination=dest, dataset_name=dataset,
                        pipelines_dir=str(case / "dlt"))


def fresh(db: str, case: Path) -> None:
    """Untimed: no dlt state on disk, no dlt dataset in the database (bench_connectors drops the rest)."""
    shutil.rmtree(case / "dlt", ignore_errors=True)
    if db == "mysql":
        import sqlalchemy as sa
        eng = sa.create_engine(_url(db, case))
        with eng.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {DATASET}")
        eng.dispose()


def _run(db: str, case: Path, kind: str, disposition: str) -> Any:
    import dlt

    p = _pipeline(db, case)
    res = dlt.resource(_rows(case / f"{kind}.payload"), name=TABLE, write_disposition=disposition,
                       primary_key="student_id", columns=_columns())
    return p.run(res)


def load_base(db: str, case: Path) -> None:
    _run(db, case, "snapshot", "replace")


def run(db: str, kind: str, case: Path, ready: Callable[[], float]) -> dict[str, Any]:
    import dlt  # noqa: F401 - imported before the clock starts, as for every other method

    t0 = ready()
    info = _run(db, case, kind, "replace" if kind == "snapshot" else "merge")
    wall = time.perf_counter() - t0
    if info.has_failed_jobs:
        raise SystemExit(f"dlt: failed jobs: {info}")
    return {"wall": wall, "schema_name": None if db == "sqlite" else DATASET}
