"""``edx-agent demo``: a local hub, a sample dataset, an enrolled agent, two syncs into SQLite.

Everything is real: the hub runs as its own process on loopback, batches are sealed for this agent,
verified, decrypted and applied into a SQLite file, exactly as on a front-end machine.
"""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from .. import sample
from ..localhub import LocalHub


def register(sub: Any) -> None:
    p = sub.add_parser("demo", help="run a self-contained demo: local hub → agent → SQLite")
    p.add_argument("--rows", type=int, default=3000, help="students in the first snapshot")
    p.add_argument("--changes", type=int, default=500, help="rows in the change batch")
    p.add_argument("--dir", default=None, help="work directory (default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the files (database, config, hub) afterwards")
    p.add_argument("--suite", choices=["intl", "gm"], default="intl")
    p.set_defaults(func=run)


def _agent(*argv: str) -> None:
    from .main import main

    rc = main(list(argv))
    if rc != 0:
        raise SystemExit(rc)


def run(args: Any) -> int:
    try:
        import fastapi  # noqa: F401 - the demo runs the reference hub, an optional part
        import uvicorn  # noqa: F401
    except ImportError:
        from ..errors import DriverMissing

        raise DriverMissing("the demo runs the reference hub (edx-hub), which is not installed",
                            remedy="pip install 'edx-agent[hub]'") from None
    work = Path(args.dir or tempfile.mkdtemp(prefix="edx-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    keep = args.keep or bool(args.dir)
    t_all = time.monotonic()
    try:
        hub_dir, agent_dir = work / "hub", work / "agent"
        agent_dir.mkdir(exist_ok=True)
        sample.write_schema(work / "student.schema.json")
        n = sample.write_jsonl(work / "student-snapshot.jsonl", sample.snapshot(args.rows))
        m = sample.write_jsonl(work / "student-changes.jsonl", sample.changes(args.rows, args.changes))
        print(f"1. sample data: {n} students (snapshot), {m} changes (70% updates, 20% inserts, 10% deletes)")
        with LocalHub(hub_dir) as hub:
            print(f"2. hub running at {hub.url} (data in {hub_dir})")
            hub.admin("publish", "student", str(work / "student-snapshot.jsonl"), "--kind", "snapshot",
                      "--schema", str(work / "student.schema.json"))
            token = hub.admin("token", "create", "--unit", "demo-school", "--datasets", "student").stdout.strip()
            print("3. published the snapshot; created a one-time enrolment token for unit demo-school")
            cfg = str(agent_dir / "agent.toml")
            db = agent_dir / "edu.db"
            _agent("init", "--config", cfg, "--database", f"sqlite:///{db}", "--suite", args.suite,
                   "--hub", hub.url)
            _agent("--config", cfg, "enrol", "--token", token)
            print("4. first sync:")
            t0 = time.monotonic()
            _agent("--config", cfg, "sync", "--once")
            t1 = time.monotonic() - t0
            hub.admin("publish", "student", str(work / "student-changes.jsonl"), "--kind", "changes")
            print("5. published a change batch; second sync:")
            t0 = time.monotonic()
            _agent("--config", cfg, "sync", "--once")
            t2 = time.monotonic() - t0
            print("6. a third sync applies nothing twice:")
            _agent("--config", cfg, "sync", "--once")
        with sqlite3.connect(db) as con:
            count = con.execute("select count(*) from student").fetchone()[0]
            rows = con.execute("select student_id, name, school_name, grade, score from student "
                               "order by student_id limit 3").fetchall()
            cps = con.execute("select dataset, seq, applied_at from edx_checkpoint").fetchall()
        print(f"\nresult: {count} rows in table student of {db}")
        for r in rows:
            print("   ", " | ".join("NULL" if v is None else str(v) for v in r))
        for d, s, at in cps:
            print(f"checkpoint: dataset {d} at batch #{s} (applied {at})")
        print(f"timings: first sync {t1:.2f}s, second sync {t2:.2f}s, whole demo {time.monotonic() - t_all:.2f}s")
        if keep:
            print(f"files kept in {work}\n  inspect: sqlite3 {db} 'select count(*) from student'\n"
                  f"  status:  edx-agent --config {cfg} status")
        return 0
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
