"""Apply-only benchmark of the connectors against each database's own CLI bulk load of the same rows.

For MariaDB, PostgreSQL and SQLite, and for a snapshot and a 70/20/10 change batch of the ``student``
dataset (bench/gen_student.py), it times ``connector.apply()`` reading the decrypted payload file
(no crypto) and the native path in the same run: ``mariadb --local-infile=1 -e "LOAD DATA LOCAL…"``,
``psql`` with ``\\copy``, ``sqlite3 .import`` (snapshot = shadow table + key + rename; changes = staging +
hand-written DELETE/upsert). Every run is its own process (wall time, peak RSS) and every result is
verified by row count and table checksum against the generator's expectation. Prints a table with
ratios (native time / agent time: 1.0 = as fast as native) and writes a section of docs/performance.md.

    python bench/bench_connectors.py --rows 200000 [--dbs mysql,postgresql,sqlite] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.payload import Manifest  # noqa: E402
from bench._proc import vm_hwm_mb  # noqa: E402
from bench.gen_student import SCHEMA, write_payloads  # noqa: E402

MYSQL_URL = os.environ.get("EDX_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PG_URL = os.environ.get("EDX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
BENCH_DB = "edx_bench"
TABLE = "student"
SIDES = ("agent", "native", "agent-nock")
BEGIN, END = "<!-- connectors:begin -->", "<!-- connectors:end -->"


class FileSource:
    """BatchSource over a decrypted payload file (what the pipeline hands a connector, minus crypto)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self.rows = io.BufferedReader(open(path, "rb"), 1 << 20)  # noqa: SIM115 - closed in finish
        self.manifest = Manifest.read_from(self.rows)
        self._start = self.rows.tell()

    def reopen(self) -> Any:
        f = open(self._path, "rb")  # noqa: SIM115
        f.seek(self._start)
        return f

    def finish(self) -> None:
        rest = self.rows.read(1)
        self.rows.close()
        if rest:
            raise RuntimeError("connector stopped before the end of the payload")


# --- databases ------------------------------------------------------------------------------------

def target_url(db: str, data: Path) -> str:
    if db == "sqlite":
        return f"sqlite:///{data / 'bench.db'}"
    base = MYSQL_URL if db == "mysql" else PG_URL
    return sa.engine.make_url(base).set(database=BENCH_DB).render_as_string(hide_password=False)


def fresh_database(db: str, data: Path) -> None:
    if db == "sqlite":
        for suffix in ("", "-wal", "-shm"):
            Path(f"{data / 'bench.db'}{suffix}").unlink(missing_ok=True)
        return
    base = MYSQL_URL if db == "mysql" else PG_URL
    eng = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        if db == "mysql":
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DB}")
            c.exec_driver_sql(f"CREATE DATABASE {BENCH_DB} CHARACTER SET utf8mb4")
        else:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {BENCH_DB} WITH (FORCE)")
            c.exec_driver_sql(f"CREATE DATABASE {BENCH_DB} ENCODING 'UTF8' TEMPLATE template0")
    eng.dispose()


def connect(db: str, data: Path, **options: Any) -> Any:
    import connectors
    return connectors.connect(target_url(db, data), **options)


# --- native scripts -----------------------------------------------------------------------------------

def native_command(db: str, kind: str, data: Path, conn: Any) -> list[str]:
    csv = data / f"{kind}.csv"
    cols = [conn.q(c) for c in SCHEMA.names]
    key = conn.q(SCHEMA.primary_key[0])
    rest = [conn.q(c) for c in SCHEMA.names if c not in SCHEMA.primary_key]
    u = sa.engine.make_url(target_url(db, data))
    if db == "mysql":
        from connectors.mysql import SQL_MODE
        stg = conn.q("edx_stg_native")
        head = f"SET SESSION sql_mode='{SQL_MODE}', time_zone='+00:00'; SET NAMES utf8mb4;"
        if kind == "snapshot":
            new = conn.q("edx_new_native")
            sql = (f"{head} {conn.create_table_sql(new, SCHEMA)}; "
                   f"{conn.load_data_sql(str(csv), new, SCHEMA, shadow=True)}; RENAME TABLE {new} TO {conn.q(TABLE)};")
        else:
            ddl = ", ".join(conn.column_sql(c, staging=True) for c in SCHEMA.columns)
            sql = (f"{head} CREATE TABLE {stg} (_ord BIGINT AUTO_INCREMENT PRIMARY KEY, _op CHAR(1) NOT NULL, "
                   f"{ddl}){conn.table_options()}; START TRANSACTION; "
                   f"{conn.load_data_sql(str(csv), stg, SCHEMA, shadow=False)}; "
                   f"DELETE t FROM {stg} s STRAIGHT_JOIN {conn.q(TABLE)} t ON t.{key} = s.{key} WHERE s._op = 'D'; "
                   f"INSERT INTO {conn.q(TABLE)} ({', '.join(cols)}) SELECT {', '.join('s.' + c for c in cols)} "
                   f"FROM {stg} s WHERE s._op <> 'D' ON DUPLICATE KEY UPDATE "
                   f"{', '.join(f'{c} = VALUES({c})' for c in rest)}; COMMIT; DROP TABLE {stg};")
        return ["mariadb", "--local-infile=1", "-h", u.host or "127.0.0.1", "-P", str(u.port or 3306),
                "-u", u.username or "root", *([f"-p{u.password}"] if u.password else []), u.database, "-e", sql]
    if db == "postgresql":
        typed = ", ".join(f"{conn.q(c.name)} {conn.staging_type_sql(c.type)}{'' if c.nullable else ' NOT NULL'}"
                          for c in SCHEMA.columns)
        copy_cols = ", ".join(["_op", *cols])
        if kind == "snapshot":
            script = (f"SET TimeZone = 'UTC';\nBEGIN;\nCREATE TABLE edx_new_native (_op text, {typed});\n"
                      f"\\copy edx_new_native ({copy_cols}) FROM '{csv}' (FORMAT csv, NULL 'NULL')\n"
                      f"ALTER TABLE edx_new_native DROP COLUMN _op, ADD PRIMARY KEY ({key});\n"
                      f"ALTER TABLE edx_new_native RENAME TO {TABLE};\nCOMMIT;\n")
        else:
            loose = ", ".join(f"{conn.q(c.name)} {conn.staging_type_sql(c.type)}" for c in SCHEMA.columns)
            script = (f"SET TimeZone = 'UTC';\nBEGIN;\nCREATE TEMP TABLE stg (_op text, {loose}) ON COMMIT DROP;\n"
                      f"\\copy stg ({copy_cols}) FROM '{csv}' (FORMAT csv, NULL 'NULL')\n"
                      f"DELETE FROM {TABLE} t USING stg s WHERE t.{key} = s.{key} AND s._op = 'D';\n"
                      f"INSERT INTO {TABLE} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM stg WHERE _op <> 'D' "
                      f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(f'{c} = EXCLUDED.{c}' for c in rest)};\nCOMMIT;\n")
        path = data / f"native-{kind}.sql"
        path.write_text(script)
        return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
                "-U", u.username or "postgres", "-d", u.database, "-f", str(path)]
    # sqlite3 .import reads every field as text and has no NULL marker: NULLIF restores the NULLs
    raw = ", ".join(f"c{i}" for i in range(len(cols)))
    conv = ", ".join(f"NULLIF(c{i}, 'NULL')" for i in range(len(cols)))
    if kind == "snapshot":
        body = (f"BEGIN;\n{conn.create_table_sql('edx_new_native', SCHEMA)};\n"
                f"INSERT INTO edx_new_native SELECT {conv} FROM stg;\nALTER TABLE edx_new_native RENAME TO {TABLE};\n")
    else:
        body = (f"BEGIN;\nDELETE FROM {TABLE} WHERE {key} IN (SELECT c0 FROM stg WHERE op = 'D');\n"
                f"INSERT INTO {TABLE} ({', '.join(cols)}) SELECT {conv} FROM stg WHERE op <> 'D' "
                f"ON CONFLICT ({key}) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in rest)};\n")
    script = (f"PRAGMA journal_mode=WAL;\nPRAGMA synchronous=FULL;\nCREATE TABLE stg (op, {raw});\n"
              f".import --csv {csv} stg\n{body}DROP TABLE stg;\nCOMMIT;\n")
    path = data / f"native-{kind}.sql"
    path.write_text(script)
    return ["sh", "-c", f"sqlite3 {data / 'bench.db'} < {path} > /dev/null"]


# --- one timed run, in its own process --------------------------------------------------------------

def worker(side: str, db: str, kind: str, data: Path) -> dict[str, Any]:
    # "agent": defaults (sync.reconcile = "checksum": read-back checksum of the applied rows);
    # "agent-nock": sync.reconcile = "count" (row counts from the database, no pass over the rows)
    conn = connect(db, data, **({"reconcile": "count"} if side == "agent-nock" else {}))
    out: dict[str, Any] = {}
    if side == "native":
        cmd = native_command(db, kind, data, conn)
        conn.close()
        rss = data / "native.rss"
        t0 = time.perf_counter()
        # /usr/bin/time's wait4: the CLI's own peak (getrusage here would carry this worker's, inherited at fork)
        subprocess.run(["/usr/bin/time", "-f", "%M", "-o", str(rss), *cmd], check=True, stdout=subprocess.DEVNULL)
        out["wall"] = time.perf_counter() - t0
        out["rss_mb"] = int(rss.read_text().split()[-1]) / 1024
        return out
    from connectors.api import BatchMeta
    src = FileSource(data / f"{kind}.payload")
    meta = BatchMeta(dataset=TABLE, table=TABLE, seq=1 if kind == "snapshot" else 2, kind=kind,
                     batch_digest="ab" * 32)
    t0 = time.perf_counter()
    r = conn.apply(meta, src)
    out["wall"] = time.perf_counter() - t0
    out["rss_mb"] = vm_hwm_mb()   # bench/_proc.py says why not getrusage
    out["phases"] = {k: round(v, 3) for k, v in r.phases.items()}
    out["counts"] = [r.inserted, r.updated, r.deleted, r.quarantined]
    conn.close()
    return out


def run(side: str, db: str, kind: str, data: Path, expected: dict[str, Any]) -> dict[str, Any]:
    fresh_database(db, data)
    if kind == "changes":   # untimed: the table the change batch applies to
        conn = connect(db, data)
        from connectors.api import BatchMeta
        conn.apply(BatchMeta(TABLE, TABLE, 1, "snapshot", "ab" * 32), FileSource(data / "snapshot.payload"))
        conn.close()
    proc = subprocess.run([sys.executable, __file__, "--worker", side, db, kind, str(data)],
                          check=True, capture_output=True, text=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    conn = connect(db, data)
    ck = conn.table_checksum(TABLE, SCHEMA)
    conn.close()
    want = expected["snapshot" if kind == "snapshot" else "after_changes"]
    res["verified"] = ck.to_dict() == want
    if not res["verified"]:
        raise SystemExit(f"{side} {db} {kind}: table holds {ck.to_dict()}, expected {want}")
    return res


# --- report ------------------------------------------------------------------------------------------

def report(results: dict[tuple[str, str, str], list[dict[str, Any]]], rows: int, repeat: int) -> str:
    target = {("mysql", "snapshot"): 0.95, ("postgresql", "snapshot"): 0.95, ("mysql", "changes"): 0.9,
              ("postgresql", "changes"): 0.9, ("sqlite", "snapshot"): 0.8, ("sqlite", "changes"): 0.8}
    import platform
    load = os.getloadavg()
    lines = [f"Measured {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {os.cpu_count()} vCPU, "
             f"Python {platform.python_version()}, load average {load[0]:.1f} at the end (a shared VM: other "
             "benchmarks ran at the same time, so absolute figures vary by ±50 % between runs; agent and "
             "native runs alternate so the ratios are less affected).", "",
             f"Apply-only, {rows} rows of `student` (13 columns, varchar key, Chinese text), best of {repeat} "
             f"runs each, every run in its own process and verified by row count + table checksum.",
             "Ratio = native time / agent time (1.00 = as fast as the database's own CLI load).", "",
             "`agent` = the default, `sync.reconcile = \"checksum\"` (every applied row read back and hashed "
             "before the commit); `agent, reconcile = count` = `sync.reconcile = \"count\"` (the database's "
             "row counts only: load, merge, count, lineage, checkpoint).", "",
             "| database | batch | agent mode | agent s | native s | agent rows/s | native rows/s | ratio | target | "
             "agent peak RSS MB | native peak RSS MB | agent phases (s) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (db, kind) in sorted({(d, k) for d, k, _ in results}):
        n = min(results[(db, kind, "native")], key=lambda r: r["wall"])
        for side, label in (("agent", "agent"), ("agent-nock", "agent, reconcile = count")):
            if (db, kind, side) not in results:
                continue
            a = min(results[(db, kind, side)], key=lambda r: r["wall"])
            ratio = n["wall"] / a["wall"]
            t = target.get((db, kind), 0)
            lines.append(f"| {db} | {kind} | {label} | {a['wall']:.2f} | {n['wall']:.2f} | {rows / a['wall']:,.0f} | "
                         f"{rows / n['wall']:,.0f} | {ratio:.2f} | ≥ {t:.2f} {'✓' if ratio >= t else '✗'} | "
                         f"{a['rss_mb']:.0f} | {n['rss_mb']:.0f} | "
                         f"{', '.join(f'{k} {v:.2f}' for k, v in a['phases'].items())} |")
    spread = [f"{db}/{kind}/{side}: " + ", ".join(f"{r['wall']:.2f}" for r in rs)
              for (db, kind, side), rs in sorted(results.items())]
    lines += ["", "All runs (s): " + "; ".join(spread)]
    return "\n".join(lines)


def write_docs(section: str) -> None:
    path = ROOT / "docs" / "performance.md"
    text = path.read_text() if path.exists() else "# Performance\n"
    block = f"{BEGIN}\n## Connectors: apply-only vs native bulk load\n\n{section}\n{END}"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dbs", default="mysql,postgresql,sqlite")
    ap.add_argument("--kinds", default="snapshot,changes")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "edx-bench-student")
    ap.add_argument("--no-docs", action="store_true", help="do not write docs/performance.md")
    ap.add_argument("--sides", default=",".join(SIDES), help="which of agent, native, agent-nock to run")
    ap.add_argument("--worker", nargs=4, metavar=("SIDE", "DB", "KIND", "DATA"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        side, db, kind, data = args.worker
        print(json.dumps(worker(side, db, kind, Path(data))))
        return
    data = args.data / str(args.rows)
    exp_path = data / "expected.json"
    expected = json.loads(exp_path.read_text()) if exp_path.exists() else write_payloads(data, args.rows)
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for db in args.dbs.split(","):
        for kind in args.kinds.split(","):
            for i in range(args.repeat):
                sides = [x for x in SIDES if x in args.sides.split(",")]
                for side in (sides if i % 2 == 0 else sides[::-1]):
                    r = run(side, db, kind, data, expected)
                    results.setdefault((db, kind, side), []).append(r)
                    print(f"{db:10} {kind:8} {side:6} {r['wall']:7.2f}s rss {r['rss_mb']:5.0f} MB "
                          f"{r.get('phases', '')}", flush=True)
    text = report(results, args.rows, args.repeat)
    print("\n" + text)
    print("medians: " + ", ".join(f"{k}: {statistics.median(r['wall'] for r in v):.2f}" for k, v in results.items()))
    if not args.no_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
