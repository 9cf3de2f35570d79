"""The timed side of bench_e2e.py: one method applying one batch, run alone in a fresh process.

``run(method, db, kind, case)`` is called by ``bench_e2e.py --worker``; it imports only what that method
needs, marks the end of start-up (interpreter + imports + connecting), applies the batch, and returns
``{"wall": seconds applying, "startup": seconds before that, "rss_mb": peak RSS, ...}``. Peak RSS is the
process's own high-water mark (VmHWM, start-up included), read at its end: ``ru_maxrss`` of a child is
useless here, because Linux carries the parent's high-water mark over fork and exec into the child's
rusage. The native CLI runs under GNU ``time``, whose own tiny footprint is what the CLI inherits.

Methods:
* ``agent-e2e``: ``agent.pipeline.apply_file`` on the sealed batch in the spool: header and signature,
  sequence against the checkpoint, pass 1 (every chunk decrypted and authenticated), pass 2 (decrypt +
  decompress streamed into the connector's bulk path), merge/swap, reconciliation, lineage, checkpoint,
  COMMIT. Exactly what ``edx-agent sync`` runs for a spooled batch, minus the ack.
* ``agent-apply``: ``connector.apply`` on the decrypted payload file (bench_connectors.py's worker).
* ``native``: the database's CLI bulk load of the CSV (bench_connectors.py's native script).
* peers, each reading the same decrypted payload (no crypto: they start with an advantage):
  ``sqlalchemy``: SQLAlchemy Core upsert statement, executemany in chunks of 5000 (deletes likewise);
  ``per-row``: one upsert/delete statement per record on a DB-API cursor, one transaction;
  ``pandas``: ``read_csv`` + ``DataFrame.to_sql`` (snapshot: into the empty table; changes: into a staging
  table, then the same hand-written merge SQL as the native script);
  ``dlt``: a dlt pipeline, ``replace`` for snapshots and ``merge`` (primary key, hard deletes) for changes,
  destination ``postgres`` or ``sqlalchemy`` (MariaDB, SQLite).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

TABLE = "student"
CHUNK = 5000
LAUNCH = {"at": 0.0, "startup": 0.0}  # wall-clock time the parent started this process; start-up seconds


def _ready() -> float:
    """End of start-up (interpreter, imports, connecting): the timed part starts now."""
    LAUNCH["startup"] = time.time() - LAUNCH["at"]
    return time.perf_counter()


# --- edx-agent ------------------------------------------------------------------------------------------

def agent_e2e(db: str, kind: str, case: Path, *, read_back: bool = True) -> dict[str, Any]:
    import json

    from agent.config import AgentConfig
    from agent.pipeline import Context, apply_file
    from agent.runtime import open_connector
    from agent.spool import Spool
    from bench import _e2e_data
    from bench.bench_connectors import target_url

    signer, agent_keys = _e2e_data.keys(case.parent.parent)
    url = target_url(db, case)
    doc: dict[str, Any] = {"database": {"url": url}, "agent": {"state_dir": str(case / "state")}}
    if not read_back:  # sync.reconcile = "count": the database's row counts, no read-back
        doc["sync"] = {"reconcile": "count"}
    cfg = AgentConfig.model_validate(doc)
    conn = open_connector(cfg)   # as the service opens it, sync.reconcile included
    conn.ensure_meta_tables()
    ctx = Context(cfg=cfg, state=None, client=None, connector=conn,  # type: ignore[arg-type]
                  spool=Spool(case / "spool", 1 << 40), agent_id="bench-agent", keys=[agent_keys],
                  hub_keys=[signer.public()])
    path = case / f"{kind}.edx"
    t0 = _ready()
    out = apply_file(ctx, path, _e2e_data.DATASET)
    wall = time.perf_counter() - t0
    conn.close()
    if out.duplicate:
        raise SystemExit("agent-e2e: the batch was taken for a duplicate")
    return {"wall": wall, "phases": {k: round(v, 3) for k, v in out.phases.items()},
            "counts": [out.inserted, out.updated, out.deleted, out.quarantined],
            "checksum": json.loads(json.dumps(getattr(out, "checksum", {})))}


def agent_apply(db: str, kind: str, case: Path) -> dict[str, Any]:
    from bench import bench_connectors

    _ready()  # its worker connects inside; that part of start-up counts as apply time here
    out = bench_connectors.worker("agent", db, kind, case)
    return {k: v for k, v in out.items() if k != "rss_mb"}


def native(db: str, kind: str, case: Path) -> dict[str, Any]:
    import subprocess

    from bench import bench_connectors

    conn = bench_connectors.connect(db, case)
    cmd = bench_connectors.native_command(db, kind, case, conn)
    conn.close()
    t0 = _ready()
    rss = case / "native.rss"
    subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *cmd], check=True, stdout=subprocess.DEVNULL)
    return {"wall": time.perf_counter() - t0, "rss_mb": int(rss.read_text().split()[-1]) / 1024}


from bench._proc import vm_hwm_mb  # noqa: E402


# --- peers: shared pieces ---------------------------------------------------------------------------------

def _records(case: Path, kind: str) -> Any:
    from agent.payload import Manifest, iter_records

    f = open(case / f"{kind}.payload", "rb")  # noqa: SIM115 - read to the end by the caller
    Manifest.read_from(f)
    return iter_records(f)


def _typed(db: str) -> list[Any]:
    """Per column, text -> the Python value a loader would hand the driver (SQLite keeps canonical text)."""
    import datetime as dt
    from decimal import Decimal

    from bench.gen_student import SCHEMA

    out: list[Any] = []
    for c in SCHEMA.columns:
        b = c.type.base
        if b == "int32":
            out.append(int)
        elif db == "sqlite":
            out.append(None)
        elif b == "date":
            out.append(dt.date.fromisoformat)
        elif b == "decimal":
            out.append(Decimal)
        elif b == "timestamptz":
            out.append(dt.datetime.fromisoformat)
        else:
            out.append(None)
    return out


def _convert(fields: list[str | None], conv: list[Any]) -> tuple[Any, ...]:
    return tuple(v if v is None or f is None else f(v) for v, f in zip(fields, conv))


def _sa_table(db: str) -> Any:
    import sqlalchemy as sa

    from bench.gen_student import SCHEMA

    md = sa.MetaData()
    cols = []
    for c in SCHEMA.columns:
        b = c.type.base
        if db == "sqlite":
            t: Any = sa.Integer() if b == "int32" else sa.Text()
        else:
            t = {"int32": sa.Integer(), "date": sa.Date(), "decimal": sa.Numeric(6, 2), "text": sa.Text(),
                 "timestamptz": sa.DateTime(timezone=True)}.get(b, sa.String(c.type.length or 255))
        cols.append(sa.Column(c.name, t, primary_key=c.name in SCHEMA.primary_key))
    return sa.Table(TABLE, md, *cols)


def _create_target(db: str, conn: Any, sa_conn: Any) -> None:
    """The target table as the agent and the native script create it (same DDL, so checksums compare)."""
    from bench.gen_student import SCHEMA

    sa_conn.exec_driver_sql(f"DROP TABLE IF EXISTS {conn.q(TABLE)}")
    sa_conn.exec_driver_sql(conn.create_table_sql(conn.q(TABLE), SCHEMA))


def _engine(db: str, case: Path) -> tuple[Any, Any]:
    from bench import bench_connectors

    conn = bench_connectors.connect(db, case)  # for its engine settings (charset, strict mode, UTC) and DDL
    return conn, conn.engine


# --- peers ------------------------------------------------------------------------------------------------

def sqlalchemy_core(db: str, kind: str, case: Path) -> dict[str, Any]:
    import sqlalchemy as sa

    from bench.gen_student import SCHEMA

    conn, engine = _engine(db, case)
    t = _sa_table(db)
    names = SCHEMA.names
    key = SCHEMA.primary_key[0]
    if db == "mysql":
        from sqlalchemy.dialects.mysql import insert
        ins = insert(t)
        up = ins.on_duplicate_key_update({n: ins.inserted[n] for n in names if n != key})
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert
        from sqlalchemy.dialects.sqlite import insert as lite_insert
        ins = (pg_insert if db == "postgresql" else lite_insert)(t)
        up = ins.on_conflict_do_update(index_elements=[key],
                                       set_={n: ins.excluded[n] for n in names if n != key})
    delete = t.delete().where(t.c[key] == sa.bindparam("k"))
    conv = _typed(db)
    t0 = _ready()
    with engine.begin() as c:
        if kind == "snapshot":
            _create_target(db, conn, c)
        batch: list[dict[str, Any]] = []
        dels: list[dict[str, Any]] = []
        for op, fields in _records(case, kind):
            if op == "D":
                dels.append({"k": fields[0]})
            else:
                batch.append(dict(zip(names, _convert(fields, conv))))
            if len(batch) >= CHUNK:
                c.execute(up, batch)
                batch = []
            if len(dels) >= CHUNK:
                c.execute(delete, dels)
                dels = []
        if batch:
            c.execute(up, batch)
        if dels:
            c.execute(delete, dels)
    return {"wall": time.perf_counter() - t0}


def per_row(db: str, kind: str, case: Path) -> dict[str, Any]:
    from bench.gen_student import SCHEMA

    conn, engine = _engine(db, case)
    q, ph = conn.q, conn.ph
    names = SCHEMA.names
    key = SCHEMA.primary_key[0]
    cols = ", ".join(q(n) for n in names)
    vals = ", ".join([ph] * len(names))
    rest = [n for n in names if n != key]
    if db == "mysql":
        upsert = (f"INSERT INTO {q(TABLE)} ({cols}) VALUES ({vals}) ON DUPLICATE KEY UPDATE "
                  + ", ".join(f"{q(n)} = VALUES({q(n)})" for n in rest))
    else:
        upsert = (f"INSERT INTO {q(TABLE)} ({cols}) VALUES ({vals}) ON CONFLICT ({q(key)}) DO UPDATE SET "
                  + ", ".join(f"{q(n)} = excluded.{q(n)}" for n in rest))
    delete = f"DELETE FROM {q(TABLE)} WHERE {q(key)} = {ph}"
    conv = _typed(db)
    t0 = _ready()
    with engine.begin() as c:
        if kind == "snapshot":
            _create_target(db, conn, c)
        cur = c.connection.driver_connection.cursor()  # type: ignore[union-attr]
        for op, fields in _records(case, kind):
            if op == "D":
                cur.execute(delete, (fields[0],))
            else:
                cur.execute(upsert, _convert(fields, conv))
        cur.close()
    return {"wall": time.perf_counter() - t0}


def pandas_to_sql(db: str, kind: str, case: Path) -> dict[str, Any]:
    import pandas as pd

    from bench.gen_student import SCHEMA

    conn, engine = _engine(db, case)
    q = conn.q
    names = SCHEMA.names
    key = SCHEMA.primary_key[0]
    t0 = _ready()
    df = pd.read_csv(case / f"{kind}.csv", header=None, names=["_op", *names], dtype=str,
                     keep_default_na=False, na_values=["NULL"], encoding="utf-8")
    df["grade"] = df["grade"].astype("Int64")
    if db != "sqlite":
        for c in ("birth_date", "enrol_date"):
            df[c] = pd.to_datetime(df[c], format="%Y-%m-%d").dt.date
        df["score"] = df["score"].astype(float)
        ts = pd.to_datetime(df["updated_at"], format="ISO8601", utc=True)
        df["updated_at"] = ts.dt.tz_localize(None) if db == "mysql" else ts
    # microseconds: pandas would make DATETIME without them on MariaDB (and the checksum would differ)
    dtype = {"updated_at": __import__("sqlalchemy.dialects.mysql", fromlist=["DATETIME"]).DATETIME(fsp=6)} \
        if db == "mysql" else None
    with engine.begin() as c:
        if kind == "snapshot":
            _create_target(db, conn, c)
            df.drop(columns=["_op"]).to_sql(TABLE, c, if_exists="append", index=False)
        else:
            df.to_sql("edx_pd_stg", c, if_exists="replace", index=False, dtype=dtype)
            cols = ", ".join(q(n) for n in names)
            rest = [n for n in names if n != key]
            stg = q("edx_pd_stg")
            if db == "mysql":
                c.exec_driver_sql(f"DELETE t FROM {q(TABLE)} t JOIN {stg} s ON t.{q(key)} = s.{q(key)} "
                                  "WHERE s._op = 'D'")
                c.exec_driver_sql(f"INSERT INTO {q(TABLE)} ({cols}) SELECT {cols} FROM {stg} WHERE _op <> 'D' "
                                  "ON DUPLICATE KEY UPDATE " + ", ".join(f"{q(n)} = VALUES({q(n)})" for n in rest))
            else:
                c.exec_driver_sql(f"DELETE FROM {q(TABLE)} WHERE {q(key)} IN (SELECT {q(key)} FROM {stg} "
                                  "WHERE _op = 'D')")
                c.exec_driver_sql(f"INSERT INTO {q(TABLE)} ({cols}) SELECT {cols} FROM {stg} WHERE _op <> 'D' "
                                  f"ON CONFLICT ({q(key)}) DO UPDATE SET "
                                  + ", ".join(f"{q(n)} = excluded.{q(n)}" for n in rest))
            c.exec_driver_sql(f"DROP TABLE {stg}")
    return {"wall": time.perf_counter() - t0}


def agent_e2e_no_read_back(db: str, kind: str, case: Path) -> dict[str, Any]:
    """The same with ``sync.reconcile = "count"``: row counts instead of the read-back checksum.

    The setting a unit may choose when it trusts its database's storage; here to show what the default
    read-back costs, next to it.
    """
    return agent_e2e(db, kind, case, read_back=False)


METHODS = {"agent-e2e": agent_e2e, "agent-e2e-nock": agent_e2e_no_read_back, "agent-apply": agent_apply, "native": native,
           "sqlalchemy": sqlalchemy_core, "per-row": per_row, "pandas": pandas_to_sql}


def run(method: str, db: str, kind: str, case: Path, launched_at: float) -> dict[str, Any]:
    LAUNCH["at"] = launched_at
    if method == "dlt":
        from bench import _e2e_dlt
        out = _e2e_dlt.run(db, kind, case, _ready)
    else:
        out = METHODS[method](db, kind, case)
    return {"rss_mb": vm_hwm_mb(), **out, "startup": round(LAUNCH["startup"], 3)}
