"""End-to-end benchmark: edx-agent from a sealed batch in the spool vs the databases' own bulk loads and the
loaders a unit would use instead, side by side in one run, every result verified.

    python bench/bench_e2e.py                  # quick (≈ 15 min here): 100k snapshot, 100k changes into 100k
    python bench/bench_e2e.py --all-peers      # + per-row upsert and dlt (≈ 2-4 min per run each: +40 min)
    python bench/bench_e2e.py --full           # + 1M comparison, snapshots 100k→5M, changes into 1M and 5M
    python bench/bench_e2e.py --full --scale-only --profile    # only the scaling runs, plus py-spy profiles
    python bench/bench_e2e.py --rows 200000 --dbs postgresql --methods agent-e2e,native --repeat 5
    pip install -r bench/requirements.txt      # the peers (pandas, dlt), charts and py-spy

For MariaDB, PostgreSQL and SQLite, for a snapshot of the 13-column ``student`` dataset (bench/gen_student.py)
and a change batch (70% updates, 20% inserts, 10% deletes) over a loaded table, it runs every method in its
own process (bench/_e2e_workers.py says what each does), records the wall time of the apply (interpreter
start-up, imports and connecting excluded and reported separately) and the process's peak RSS (rusage of
the child), and verifies the target table by row count and checksum (the connectors' ``table_checksum``)
against the checksum of the expected rows (``agent.payload.Checksum``). A figure that fails verification is
reported as failed, not as a speed. Repeated runs are interleaved (ABAB) and the median is reported.

Results go to docs/perf/e2e-results.json, charts to docs/perf/*.png, and the table to the e2e section of
docs/performance.md (with machine, versions, load average, date); ``--profile`` adds a py-spy profile of one
edx-agent run per database and batch kind (bench/_e2e_profile.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import _e2e_data, bench_connectors

# not the connectors benchmark's database, so both may run at once (and two runs of this one, with another name)
bench_connectors.BENCH_DB = os.environ.get("EDX_BENCH_E2E_DB", "edx_bench_e2e")
TABLE = "student"
PERF = ROOT / "docs" / "perf"
BEGIN, END = "<!-- e2e:begin -->", "<!-- e2e:end -->"
ALL_METHODS = ["agent-e2e", "agent-e2e-nock", "agent-apply", "native", "sqlalchemy", "per-row", "pandas", "dlt"]
SLOW_PEERS = ("per-row", "dlt")
PEER_TIMEOUT = [900.0]  # seconds; a peer still running then is stopped and reported as slower than that  # hundreds of rows/s: minutes per 100k-row run, so only with --all-peers
AGENT_SIDE = ("agent-e2e", "agent-e2e-nock", "agent-apply", "native")


# --- one run ---------------------------------------------------------------------------------------------

def _kill_queries(db: str) -> None:
    """End the statements a stopped worker left running in the benchmark's databases (MariaDB)."""
    if db != "mysql":
        return  # PostgreSQL: DROP DATABASE ... WITH (FORCE) ends them; SQLite: in-process
    import sqlalchemy as sa
    eng = sa.create_engine(bench_connectors.MYSQL_URL, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        ids = [r[0] for r in c.exec_driver_sql(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND DB IN (%s, %s)",
            (bench_connectors.BENCH_DB, "dlt_student"))]
        for i in ids:
            c.exec_driver_sql(f"KILL {int(i)}")
    eng.dispose()


def _spawn(method: str, db: str, kind: str, case: Path, *, profile: Path | None = None,
           timeout: float | None = None) -> dict[str, Any]:
    """Run one method in a fresh process; its JSON result (with its own peak RSS, see _e2e_workers)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", method, db, kind, str(case)]
    if profile is not None:
        from bench._e2e_profile import py_spy
        cmd = [py_spy() or "py-spy", "record", "--idle", "--threads", "--rate", "200", "--format", "raw",
               "--output", str(profile), "--", *cmd]
    launched = time.time()
    out_path = case / "worker.json"
    out_path.unlink(missing_ok=True)
    try:
        proc = subprocess.run([*cmd, str(launched)], check=False, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout)
    except subprocess.TimeoutExpired:  # run() has killed the worker; the server may still run its statement
        _kill_queries(db)
        return {"error": f"stopped after {timeout:.0f} s", "timeout": timeout}
    err = proc.stderr.decode(errors="replace")
    if proc.returncode != 0 or not out_path.exists():
        return {"error": (err.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:300]}
    return json.loads(out_path.read_text())


def _prepare(method: str, db: str, kind: str, case: Path, base_meta: dict[str, Any]) -> None:
    """Untimed: an empty database; for a change batch, the base table (dlt loads its own)."""
    bench_connectors.fresh_database(db, case)
    if method == "dlt":
        from bench import _e2e_dlt
        _e2e_dlt.fresh(db, case)
        if kind == "changes":
            _e2e_dlt.load_base(db, case)
        return
    if kind == "changes":
        from connectors.api import BatchMeta
        conn = bench_connectors.connect(db, case)
        conn.apply(BatchMeta(_e2e_data.DATASET, TABLE, 1, "snapshot", base_meta["hh"]),
                   bench_connectors.FileSource(case / "snapshot.payload"))
        conn.close()


def _settle(db: str, case: Path) -> None:
    """Untimed, before every timed change batch: bring the base to the state of a table synced for a while.

    Right after a multi-million-row load, PostgreSQL's autovacuum starts on the new table and the first
    statement to visit each page sets its hint bits: one-off costs of the load that would land on
    whichever timed run comes next (the agent's chained run or the native one). The database's own
    maintenance runs first, the same for every method. It does not change what P5 measures (the pages a
    batch of random keys dirties; "Reading the figures" in docs/performance.md): with it, 2026-11-26,
    PostgreSQL read 1.39x for the agent and 1.41x for the native merge. SQLite has neither; its
    statistics are left as a unit's would be, absent.
    """
    if db == "sqlite":
        return
    conn = bench_connectors.connect(db, case)
    try:
        with conn.engine.connect() as c:
            if db == "postgresql":
                c = c.execution_options(isolation_level="AUTOCOMMIT")
                c.exec_driver_sql("VACUUM (ANALYZE)")
                c.exec_driver_sql("CHECKPOINT")
            elif db == "mysql":
                for (t,) in c.exec_driver_sql("SELECT TABLE_NAME FROM information_schema.TABLES "
                                              "WHERE TABLE_SCHEMA = DATABASE()").all():
                    c.exec_driver_sql(f"ANALYZE TABLE {conn.q(t)}").all()
    finally:
        conn.close()


def _verify(method: str, db: str, case: Path, expected: dict[str, Any], res: dict[str, Any]) -> None:
    conn = bench_connectors.connect(db, case)
    try:
        from bench.gen_student import SCHEMA
        if db == "sqlite":
            # the generic read-back (agent.payload.canonical_from_db rules): the SQLite connector may take
            # short cuts that hold only for its own STRICT tables, and peers create theirs differently
            from connectors._checksum import checksum_rows
            with conn.engine.connect() as c:
                rows = c.exec_driver_sql(f"SELECT {', '.join(conn.q(n) for n in SCHEMA.names)} FROM "
                                         f"{conn.q(res.get('table', TABLE))}")
                got = checksum_rows(SCHEMA, rows).to_dict()
        else:
            got = conn.table_checksum(res.get("table", TABLE), SCHEMA, res.get("schema_name")).to_dict()
    except Exception as e:  # noqa: BLE001 - a table that cannot be read back is a failed run
        got = {"error": str(e).splitlines()[0][:200]}
    finally:
        conn.close()
    res["got"] = got
    res["verified"] = got == expected


def run_once(method: str, db: str, kind: str, case: Path, meta: dict[str, Any], base_meta: dict[str, Any],
             *, profile: Path | None = None, chained: bool = False) -> dict[str, Any]:
    try:
        if not chained:  # chained: the table the previous (verified) run left is the base
            _prepare(method, db, kind, case, base_meta)
        if kind == "changes":
            _settle(db, case)
    except Exception as e:  # noqa: BLE001 - reported in the table (e.g. a peer that cannot target a database)
        return {"error": f"setup: {str(e).splitlines()[0][:250]}", "verified": False}
    res = _spawn(method, db, kind, case, profile=profile, timeout=None if method in AGENT_SIDE else PEER_TIMEOUT[0])
    if "error" in res:
        res["verified"] = False
        return res
    _verify(method, db, case, meta["expected"], res)
    return res


# --- plan ------------------------------------------------------------------------------------------------

def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The cases: (db, kind, rows, base, methods, repeat)."""
    dbs = args.dbs.split(",")
    methods = [m for m in args.methods.split(",") if m]
    cases = []
    for db in dbs if not args.scale_only else []:
        for kind in args.kinds.split(","):
            size = args.rows
            base = args.rows if kind == "changes" else None
            rows = args.changes if kind == "changes" else size
            cases.append({"group": "compare", "db": db, "kind": kind, "rows": rows, "base": base,
                          "methods": [m for m in methods if m in AGENT_SIDE or rows <= args.peer_max],
                          "repeat": args.repeat})
    if args.full:
        # one fresh database per size: the timed snapshot is also the base of the timed change batch after it,
        # so a 5M-row target costs one load, not two
        for db in dbs:
            for n in args.scale_rows:
                cases.append({"group": "scale-snapshot", "db": db, "kind": "snapshot", "rows": n, "base": None,
                              "methods": ["agent-e2e"], "repeat": 1})
                if n in args.scale_bases:
                    # beside it, the database's own staging + merge of the same batch into the same base: how
                    # much of P5's growth is the database's and not the agent's. Where the base can be cloned
                    # (PostgreSQL from a template database, SQLite through its backup API), both run
                    # --scale-repeat times, alternating, each on a fresh copy; elsewhere (MariaDB) once, the
                    # native run on a base loaded again (untimed)
                    clone = db in CLONABLE
                    cases.append({"group": "scale-changes", "db": db, "kind": "changes", "rows": args.changes,
                                  "base": n, "methods": ["agent-e2e", "native"] if clone else ["agent-e2e"],
                                  "repeat": args.scale_repeat if clone else 1, "chained": True, "clone": clone})
                    if not clone:
                        cases.append({"group": "scale-changes", "db": db, "kind": "changes", "rows": args.changes,
                                      "base": n, "methods": ["native"], "repeat": 1})
    return cases


def execute(case_spec: dict[str, Any], data: Path, work: Path, log: Any) -> list[dict[str, Any]]:
    db, kind, rows, base = case_spec["db"], case_spec["kind"], case_spec["rows"], case_spec["base"]
    snap = _e2e_data.snapshot(data, base if kind == "changes" else rows)
    chg = _e2e_data.changes(data, base, rows) if kind == "changes" else None
    meta = json.loads(((chg or snap) / "meta.json").read_text())
    base_meta = json.loads((snap / "meta.json").read_text())
    case = _e2e_data.case_dir(work, db, snap, chg)
    results = []
    methods = case_spec["methods"]
    clone = case_spec.get("clone", False)
    if clone:   # the base the scaling snapshot left, settled once, kept aside for every run
        _settle(db, case)
        _base_copy(db, case, "save")
    try:
        for i in range(case_spec["repeat"]):
            order = methods if i % 2 == 0 else list(reversed(methods))
            for m in order:
                if i > 0 and m not in AGENT_SIDE and i >= case_spec.get("peer_repeat", 1):
                    continue
                if clone:
                    _base_copy(db, case, "restore")
                results.append(_run_logged(case_spec, m, i, case, meta, base_meta, log))
    finally:
        if clone:
            _base_copy(db, case, "drop")
    return results


def _run_logged(case_spec: dict[str, Any], m: str, i: int, case: Path, meta: dict[str, Any],
                base_meta: dict[str, Any], log: Any) -> dict[str, Any]:
    db, kind, rows, base = case_spec["db"], case_spec["kind"], case_spec["rows"], case_spec["base"]
    res = run_once(m, db, kind, case, meta, base_meta, chained=case_spec.get("chained", False))
    line = (f"{case_spec['group']:15} {db:10} {kind:8} {rows:>8} base {base or '-':>8} {m:12} "
            + (f"{res['wall']:8.2f}s {rows / res['wall']:9,.0f} rows/s rss {res['rss_mb']:6.0f} MiB "
               f"start {res.get('startup', 0):.2f}s {'ok' if res['verified'] else 'CHECKSUM ' + str(res.get('got'))} "
               f"{res.get('phases', '')}"
               if "wall" in res else f"FAILED {res.get('error')}"))
    log(line)
    return {"group": case_spec["group"], "db": db, "kind": kind, "rows": rows, "base": base, "method": m,
            "run": i, **res}


CLONABLE = ("postgresql", "sqlite")


def _base_copy(db: str, case: Path, action: str) -> None:
    """Untimed. "save": keep the database as it is now aside; "restore": replace it with that copy;
    "drop": drop the copy. PostgreSQL clones through a template database (a file copy), SQLite through
    its backup API."""
    if db == "sqlite":
        import sqlite3
        live, kept = case / "bench.db", case / "bench.db.base"
        if action == "drop":
            kept.unlink(missing_ok=True)
            return
        src, dst = (live, kept) if action == "save" else (kept, live)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{dst}{suffix}").unlink(missing_ok=True)
        with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:   # the backup API: WAL included
            a.backup(b)
        a.close()
        b.close()
        return
    import sqlalchemy as sa
    eng = sa.create_engine(bench_connectors.PG_URL, isolation_level="AUTOCOMMIT")
    live = bench_connectors.BENCH_DB
    kept = f"{live}_base"
    try:
        with eng.connect() as c:
            # FILE_COPY (PostgreSQL 15+) copies the files instead of WAL-logging every block
            how = " STRATEGY FILE_COPY" if int(c.exec_driver_sql("SHOW server_version_num").scalar()) >= 150000 else ""
            gone, source = (live, kept) if action == "restore" else (kept, live)
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {gone} WITH (FORCE)")
            if action != "drop":
                c.exec_driver_sql(f"CREATE DATABASE {gone} TEMPLATE {source}{how}")
    finally:
        eng.dispose()


# --- summary ---------------------------------------------------------------------------------------------

def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (group, db, kind, rows, base, method): median of the verified runs."""
    keys: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in results:
        keys.setdefault((r["group"], r["db"], r["kind"], r["rows"], r["base"], r["method"]), []).append(r)
    out = []
    for (group, db, kind, rows, base, method), rs in keys.items():
        ok = [r for r in rs if r.get("verified")]
        row: dict[str, Any] = {"group": group, "db": db, "kind": kind, "rows": rows, "base": base, "method": method,
                               "runs": len(rs), "verified_runs": len(ok)}
        if ok:
            walls = sorted(r["wall"] for r in ok)
            row.update(wall=statistics.median(walls), walls=walls, rows_s=rows / statistics.median(walls),
                       rss_mb=max(r["rss_mb"] for r in ok), startup=statistics.median(r.get("startup", 0) for r in ok))
            ph = [r["phases"] for r in ok if r.get("phases")]
            if ph:
                row["phases"] = {k: statistics.median(p.get(k, 0) for p in ph) for k in ph[0]}
        else:
            bad = rs[0]
            row["failure"] = bad.get("error") or f"checksum differs: table holds {bad.get('got')}"
            if bad.get("timeout"):
                row["timeout"] = bad["timeout"]
            if "wall" in bad:
                row["unverified_wall"] = bad["wall"]
        out.append(row)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000, help="snapshot rows and base table of the change batch")
    ap.add_argument("--changes", type=int, default=100_000, help="records in the change batch")
    ap.add_argument("--dbs", default="mysql,postgresql,sqlite")
    ap.add_argument("--kinds", default="snapshot,changes")
    ap.add_argument("--methods", default=",".join(m for m in ALL_METHODS if m not in SLOW_PEERS))
    ap.add_argument("--all-peers", action="store_true", help="also per-row upsert and dlt")
    ap.add_argument("--peer-timeout", type=float, default=PEER_TIMEOUT[0], help="stop a peer's run after this")
    ap.add_argument("--repeat", type=int, default=3, help="runs of edx-agent and native per case (peers: 1)")
    ap.add_argument("--peer-max", type=int, default=200_000, help="peers run on batches up to this many rows")
    ap.add_argument("--full", action="store_true", help="also the 1M comparison and the scaling runs (≈ 1 h)")
    ap.add_argument("--scale-only", action="store_true", help="with --full: only the scaling runs")
    ap.add_argument("--scale-rows", type=lambda s: [int(x) for x in s.split(",")], default=[100_000, 1_000_000, 5_000_000])
    ap.add_argument("--scale-repeat", type=int, default=3,
                    help="runs of the scaling change batches, agent and native, where the base can be cloned")
    ap.add_argument("--scale-bases", type=lambda s: [int(x) for x in s.split(",")], default=[1_000_000, 5_000_000])
    ap.add_argument("--profile", action="store_true", help="py-spy one edx-agent run per database and kind")
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "edx-bench-e2e")
    ap.add_argument("--no-docs", action="store_true", help="print only; do not write docs/ and docs/perf/")
    ap.add_argument("--tag", default="", help="results go to docs/perf/e2e-results-TAG.json (kept beside the others)")
    ap.add_argument("--report-only", action="store_true",
                    help="rebuild the docs section and charts from docs/perf/e2e-results*.json, run nothing")
    ap.add_argument("--profile-only", action="store_true",
                    help="py-spy profiles only, added to docs/perf/e2e-results.json (same cases as its run)")
    ap.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report_only:
        from bench import _e2e_report
        _e2e_report.write_docs(ROOT / "docs" / "performance.md", PERF)
        return
    if args.worker:
        method, db, kind, case, launched = args.worker
        from bench import _e2e_workers
        res = _e2e_workers.run(method, db, kind, Path(case), float(launched))
        (Path(case) / "worker.json").write_text(json.dumps(res))
        return
    PEER_TIMEOUT[0] = args.peer_timeout
    if args.all_peers:
        args.methods += "," + ",".join(SLOW_PEERS)
    if args.full and args.rows == 100_000:
        args.rows = 1_000_000
    from bench import _e2e_report
    started = dt.datetime.now()
    env = _e2e_report.environment(started)
    print(f"machine: {env['machine']}; load average before: {env['load_before']}", flush=True)
    work = args.data / ("work" if bench_connectors.BENCH_DB == "edx_bench_e2e" else f"work-{bench_connectors.BENCH_DB}")
    results: list[dict[str, Any]] = []
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    name = "e2e-results" + (f"-{args.tag}" if args.tag else "") + ("-full" if args.full else "")
    if args.profile_only:   # e.g. when py-spy was missing during the measured run
        from bench import _e2e_profile
        doc = json.loads((PERF / f"{name}.json").read_text())
        doc["profiles"] = _e2e_profile.profile_all(args, work, log)
        (PERF / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        _e2e_report.write_docs(ROOT / "docs" / "performance.md", PERF)
        return
    partial = PERF / f"{name}.partial.json"
    for spec in plan(args):
        results += execute(spec, args.data, work, log)
        if not args.no_docs:  # a long run that is stopped still leaves what it measured
            PERF.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"env": env, "results": results}, indent=1, ensure_ascii=False))
    profiles = {}
    if args.profile:
        from bench import _e2e_profile
        profiles = _e2e_profile.profile_all(args, work, log)
    env["load_after"] = _e2e_report.loadavg()
    env["finished"] = dt.datetime.now().isoformat(timespec="minutes")
    summary = summarise(results)
    doc = {"env": env, "command": "python bench/bench_e2e.py " + " ".join(sys.argv[1:]), "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "results": results, "summary": summary, "profiles": profiles}
    text = _e2e_report.render(doc)
    print("\n" + text)
    if not args.no_docs:
        PERF.mkdir(parents=True, exist_ok=True)
        (PERF / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
        partial.unlink(missing_ok=True)
        _e2e_report.write_docs(ROOT / "docs" / "performance.md", PERF)


if __name__ == "__main__":
    main()
