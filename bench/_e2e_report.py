"""Report of bench_e2e.py: machine and versions, the results table with ratios against the targets, charts.

``write_docs`` rebuilds the ``<!-- e2e:begin -->`` section of docs/performance.md (and the PNG charts in
docs/perf/) from the result files in docs/perf/ (the quick run's and, when there is one, the full run's),
so the section always shows the figures of the last runs and the charts match the table.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- e2e:begin -->", "<!-- e2e:end -->"
NAMES = {"mysql": "MariaDB", "postgresql": "PostgreSQL", "sqlite": "SQLite"}
LABEL = {"agent-e2e": "edx-agent end to end", "agent-e2e-nock": "edx-agent end to end, reconcile = count",
         "agent-apply": "edx-agent apply only", "native": "native CLI",
         "sqlalchemy": "SQLAlchemy Core executemany", "per-row": "per-row upsert", "pandas": "pandas to_sql",
         "dlt": "dlt"}


def loadavg() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def _cmd(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout.strip().splitlines()[0]
    except Exception:  # noqa: BLE001 - a missing tool is reported as such
        return "n/a"


def environment(started: dt.datetime) -> dict[str, Any]:
    from bench._proc import cpu_model
    cpu = cpu_model()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 30
    versions = {}
    for pkg in ("sqlalchemy", "pymysql", "psycopg", "pandas", "dlt", "cryptography", "zstandard"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return {
        "date": started.isoformat(timespec="minutes"),
        "machine": f"{platform.node()}: {cpu}, {os.cpu_count()} vCPU, {mem} GiB RAM, {platform.system()} "
                   f"{platform.release()}",
        "python": platform.python_version(),
        "mariadb": _cmd(["mariadb", "--version"]),
        "mariadb_server": _cmd(["mariadb", "-h", "127.0.0.1", "-u", "root", "-N", "-e",
                                ("SELECT CONCAT(VERSION(), ', innodb_buffer_pool_size ', "
                                 "@@innodb_buffer_pool_size DIV 1048576, ' MiB')")]),
        "postgresql": _cmd(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc",
                            ("SELECT current_setting('server_version') || ', shared_buffers ' || "
                             "current_setting('shared_buffers')")]),
        "sqlite": _cmd(["sqlite3", "--version"]).split(" ")[0],
        "versions": versions,
        "load_before": loadavg(),
    }


# --- the table ------------------------------------------------------------------------------------------

def _get(summary: list[dict[str, Any]], **kw: Any) -> dict[str, Any] | None:
    for r in summary:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def _ratio(a: dict[str, Any] | None, b: dict[str, Any] | None) -> float | None:
    """Speed of a relative to b (b's time / a's time), None unless both verified."""
    if not a or not b or "wall" not in a or "wall" not in b:
        return None
    return b["wall"] / a["wall"]


def _fmt_ratio(x: float | None, target: float) -> str:
    if x is None:
        return "n/a ✗"
    return f"**{x:.2f}×** {'✓' if x >= target else '✗ MISSING'}"


def targets(summary: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(target, figure, verdict) rows, from the comparison group of one run."""
    out = []
    for db in ("mysql", "postgresql", "sqlite"):
        g = {"group": "compare", "db": db}
        snap_a, snap_n = _get(summary, **g, kind="snapshot", method="agent-e2e"), _get(summary, **g, kind="snapshot", method="native")
        chg_a, chg_n = _get(summary, **g, kind="changes", method="agent-e2e"), _get(summary, **g, kind="changes", method="native")
        if db in ("mysql", "postgresql"):
            if snap_a or snap_n:
                out.append((f"P1 {NAMES[db]} snapshot e2e ≥ 0.9× native", _fmt_ratio(_ratio(snap_a, snap_n), 0.9), ""))
            if chg_a or chg_n:
                out.append((f"P2 {NAMES[db]} changes e2e ≥ 0.85× native staging+merge",
                            _fmt_ratio(_ratio(chg_a, chg_n), 0.85), ""))
                for peer, t in (("sqlalchemy", 2.0), ("dlt", 5.0)):
                    p = _get(summary, **g, kind="changes", method=peer)
                    if p is not None:
                        if "wall" in p:
                            fig = _fmt_ratio(_ratio(chg_a, p), t)
                        elif p.get("timeout") and chg_a and "wall" in chg_a:
                            x = p["timeout"] / chg_a["wall"]
                            fig = f"**> {x:.0f}×** (the peer was stopped after {p['timeout']:.0f} s) " + \
                                ("✓" if x >= t else "✗ MISSING")
                        else:
                            fig = f"n/a ({p.get('failure', '')[:80]})"
                        out.append((f"P2 {NAMES[db]} changes e2e ≥ {t:g}× {LABEL[peer]}", fig, ""))
        else:
            if snap_a or snap_n:
                out.append(("P4 SQLite snapshot e2e ≥ 0.8× sqlite3 .import", _fmt_ratio(_ratio(snap_a, snap_n), 0.8), ""))
    for db in ("mysql", "postgresql", "sqlite"):
        rss = sorted((r["rows"], r["rss_mb"]) for r in summary if r["db"] == db and r["method"] == "agent-e2e"
                     and r["kind"] == "snapshot" and "rss_mb" in r)
        if len({n for n, _ in rss}) > 1:
            peak, spread = max(m for _, m in rss), max(m for _, m in rss) - min(m for _, m in rss)
            ok = peak <= 150 and spread <= 20
            out.append(((f"P3 {NAMES[db]} agent peak RSS ≤ 150 MiB, flat within 20 MiB "
                         f"({min(rss)[0]:,} → {max(rss)[0]:,} rows)"),
                        f"**{peak:.0f} MiB**, spread {spread:.0f} MiB " + ("✓" if ok else "✗ MISSING"), ""))
        chg = {r["base"]: r for r in summary if r["db"] == db and r["group"] == "scale-changes"
               and r["method"] == "agent-e2e"}
        nat = {r["base"]: r for r in summary if r["db"] == db and r["group"] == "scale-changes"
               and r["method"] == "native"}
        if 1_000_000 in chg and 5_000_000 in chg:
            a, b = chg[1_000_000], chg[5_000_000]
            if "wall" in a and "wall" in b:
                x = b["wall"] / a["wall"]
                fig = f"**{x:.2f}×** ({a['wall']:.1f} s → {b['wall']:.1f} s) " + ("✓" if x <= 1.3 else "✗ MISSING")
                na, nb = nat.get(1_000_000, {}), nat.get(5_000_000, {})
                if "wall" in na and "wall" in nb:
                    fig += (f"; the native staging + merge of the same batch: {nb['wall'] / na['wall']:.2f}× "
                            f"({na['wall']:.1f} s → {nb['wall']:.1f} s)")
            else:
                fig = "n/a ✗ (a run failed)"
            out.append((f"P5 {NAMES[db]} change batch into 5M rows ≤ 1.3× into 1M", fig, ""))
    return out


def render(doc: dict[str, Any]) -> str:
    env, summary = doc["env"], doc["summary"]
    lines = [(f"Run {env['date']} → {env.get('finished', '?')} on {env['machine']}; load average "
              f"{env['load_before']} before, {env.get('load_after', '?')} after (a shared VM: other engineers' "
              "runs load it too; ratios are measured side by side in the same run)."), "",
             (f"Python {env['python']}; {env['mariadb_server']} ({env['mariadb']}); PostgreSQL {env['postgresql']}; "
              f"SQLite {env['sqlite']}; " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()) + "."), ""]
    lines += [("| database | batch | rows | target table | method | s (median) | rows/s | vs native | "
               "peak RSS MiB | start-up s | runs ok |"), "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    groups = ["compare", "scale-snapshot", "scale-changes"]
    for r in sorted(summary, key=lambda r: (groups.index(r["group"]), r["db"], r["kind"] != "snapshot",
                                            r["rows"], r["base"] or 0, list(LABEL).index(r["method"]))):
        nat = _get(summary, group=r["group"], db=r["db"], kind=r["kind"], rows=r["rows"], base=r["base"],
                   method="native")
        if "wall" in r:
            rel = _ratio(r, nat)
            lines.append(f"| {NAMES[r['db']]} | {r['kind']} | {r['rows']:,} | {(r['base'] or 0):,} | "
                         f"{LABEL[r['method']]} | {r['wall']:.2f} | {r['rows_s']:,.0f} | "
                         f"{'' if rel is None else f'{rel:.2f}×'} | {r['rss_mb']:.0f} | {r['startup']:.2f} | "
                         f"{r['verified_runs']}/{r['runs']} |")
        elif r.get("timeout"):
            lines.append(f"| {NAMES[r['db']]} | {r['kind']} | {r['rows']:,} | {(r['base'] or 0):,} | "
                         f"{LABEL[r['method']]} | > {r['timeout']:.0f} | < {r['rows'] / r['timeout']:,.0f} | – | – | – | "
                         f"stopped after {r['timeout']:.0f} s |")
        else:
            lines.append(f"| {NAMES[r['db']]} | {r['kind']} | {r['rows']:,} | {(r['base'] or 0):,} | "
                         f"{LABEL[r['method']]} | – | – | – | – | – | 0/{r['runs']}: {r['failure'][:160]} |")
    runs = [f"{NAMES[r['db']]} {r['kind']} {r['rows']:,}{'→' + format(r['base'], ',') if r['base'] else ''} "
            f"{r['method']}: " + ", ".join(f"{w:.2f}" for w in r["walls"])
            for r in summary if len(r.get("walls", [])) > 1]
    if runs:
        lines += ["", "Every verified run (s), for the spread: " + "; ".join(runs) + "."]
    lines += ["", "| target | figure (same run) |", "|---|---|"]
    lines += [f"| {t} | {f} |" for t, f, _ in targets(summary)]
    profiles = doc.get("profiles") or {}
    if profiles:
        cols = list(profiles)
        buckets: list[str] = []
        for p in profiles.values():
            buckets += [b for b in p["main"] if b not in buckets]
        lines += ["", ("Where the time of one edx-agent end-to-end run goes (py-spy, share of the main thread's "
                       "samples; raw stacks in docs/perf/profile-*.txt):"), "",
                  "| phase | " + " | ".join(f"{NAMES[c.split('/')[0]]} {c.split('/')[1]}" for c in cols) + " |",
                  "|---|" + "---:|" * len(cols)]
        for b in buckets:
            lines.append(f"| {b} | " + " | ".join(
                f"{profiles[c]['main'].get(b, 0) * 100 / max(profiles[c]['samples'], 1):.0f} %" for c in cols) + " |")
        lines.append("| (seconds of the profiled run) | " + " | ".join(
            f"{profiles[c].get('wall') or 0:.1f}" for c in cols) + " |")
    ph = [r for r in summary if r["method"] == "agent-e2e" and r.get("phases") and r["group"] == "compare"]
    if ph:
        lines += ["", "edx-agent end to end, median phases (s): " + "; ".join(f"{NAMES[r['db']]} {r['kind']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items())
                              for r in ph)]
    return "\n".join(lines)


INTRO = """\
Reproduce: `pip install -r bench/requirements.txt`, then `python bench/bench_e2e.py` (quick, ≈ 15 min here
under a load average of ~9: 100k-row snapshot and a 100k-record change batch into 100k rows, edx-agent, native
CLI, SQLAlchemy Core, pandas, and edx-agent with `sync.reconcile = "count"`), `--all-peers` (adds per-row
upsert and dlt, minutes per run), `--full` (1M comparison; snapshots 100k → 5M and the change batch into 1M
and 5M rows; on PostgreSQL and SQLite the change batch runs `--scale-repeat` times, 3 by default, for
edx-agent and native alternately, each on a fresh clone of the same settled base), `--profile` (py-spy),
`--report-only` (rebuild this section and the charts from docs/perf/e2e-results*.json).

Methods, each in its own process, each result verified by row count and checksum of the target table against
the expected rows (`agent.payload.Checksum`): **edx-agent end to end** = `agent.pipeline.apply_file` on a batch
sealed with the envelope API (INTL-1, fixed test keys, the hub's expected figure in header extension 0x81)
lying in the spool: header signature, sequence against the checkpoint, pass 1 (every chunk decrypted and
authenticated), pass 2 (decrypt + zstd streamed into the bulk path), merge or swap, reconciliation read-back,
lineage, checkpoint, COMMIT; interpreter start-up, imports and connecting are excluded from "s" and shown as
"start-up s". **apply only** = `connector.apply` on the decrypted payload file. **native CLI** = the same rows
as CSV through `mariadb --local-infile=1` `LOAD DATA LOCAL INFILE`, `psql \\copy`, `sqlite3 .import` (snapshot:
new table, key, rename; changes: staging table + hand-written DELETE and upsert), the scripts of
bench/bench_connectors.py. Peers read the same decrypted payload (no crypto): **SQLAlchemy Core executemany**
(dialect upsert, chunks of 5000), **per-row upsert** (one statement per record on a DB-API cursor, one
transaction), **pandas to_sql** (snapshot into the empty table; changes into a staging table + the native
merge SQL), **dlt** (`replace` / `merge` with primary key and hard deletes; destinations `postgres` and
`sqlalchemy`, which covers MariaDB and SQLite; it loads its own base table for the change batch). Times are
medians of the verified runs (edx-agent and native: 3 runs interleaved, peers: 1); peak RSS is the process's
own VmHWM (a child's `ru_maxrss` would include the parent's high-water mark, inherited over fork/exec); the
native CLI's RSS is GNU time's."""

NOTES = """\
### Reading the figures

* **The reconciliation read-back is what still separates edx-agent from the native load.** By default
  (`sync.reconcile = "checksum"`) every batch from the hub carries its expected checksum, and before the
  commit (MySQL: before the swap) the connector has the database hash every applied row as it stores it
  (SHA-256 of the canonical texts, summed; `agent/reconcile.py`), so a row the database stored
  differently from the platform is an error, not a silent difference. The native load does nothing of
  the kind. "reconcile = count" is the other setting a unit can choose (since 2026-11-26; before, the
  setting skipped only the comparison and still paid for the read-back): the database's row counts are
  compared with the hub's, no pass over the rows. In the `--all-peers` run above (2026-11-26 04:27, a
  slower hour of this VM: the same commands ran up to 25 % longer than at 02:24, the native loads
  included) it ran at 0.89x (MariaDB) and 0.88x (PostgreSQL) of the native snapshot load and 0.89x /
  1.02x of the native change batch; at 02:24 the same load path (then without the row count) ran at
  0.97x / 1.08x and 0.92x / 0.93x. With the checksum, the default we keep (docs/architecture.md,
  "Verification wins over the load-ratio targets"), P1 is 0.68x / 0.65x and P2 0.69x / 0.81x
  (02:24: 0.77x / 0.70x and 0.77x / 0.70x; 2026-11-25: 0.60x / 0.67x and 0.69x / 0.65x). On these 2 vCPUs the hash cannot hide behind the load:
  copying a snapshot in committed chunks while a second connection hashed the chunks already in took
  1.07 s against 1.06 s for load-then-hash (200k rows, PostgreSQL), both cores being busy either way.
* **What made the read-back cheaper on 2026-11-25 (evening)**, each measured on the same 100k students:
  the row hash joins the canonical texts with a NUL byte instead of length-prefixing each one (the
  length prefix cost more than SHA-256 in SQL: MariaDB 0.47 s -> 0.22 s, PostgreSQL 0.29 s -> 0.20 s);
  MySQL hashes the committed, not yet live shadow in two key ranges on two connections (two server
  threads); SQLite concatenates each row's bytes in SQL and Python only hashes them (0.72 s -> 0.33 s);
  PostgreSQL's upsert hashes each row in its `RETURNING` clause (no second scan of the temp staging
  table, which parallel workers cannot read). End to end the read-back went from 27-49 % of a run to
  19-44 % (profiles above; on PostgreSQL changes it is now inside "merge"). What remains is the server's
  work of spelling 13 typed values as text and hashing them: about 2 us per row per core here, the same
  order as parsing the row in the load.
* **Merges cost more than the native script's**: the connector keeps the last record per key, counts
  inserted/updated/deleted rows for the receipt, checks NOT NULL columns and merges in a savepoint so
  refused rows can be quarantined; the native script only deletes and upserts. On 2026-11-26 MariaDB's
  upsert began counting the rows that existed itself (a user variable in its first `ON DUPLICATE KEY
  UPDATE` assignment) instead of a LEFT JOIN of staging and target before it: merge 2.98 s -> 2.44 s for
  180k upserts into 200k rows, apply-only change batch 0.85x -> 0.92x of native without the read-back.
  (An earlier attempt measured the upsert alone slower, 0.98 s -> 1.27 s at 100k, and was dropped; run
  whole, three times, side by side, the merge is faster: the join it removes cost 0.44 s.) PostgreSQL
  looks for a repeated key with a hash aggregate that stops at the first instead of count(DISTINCT).
  Every upsert now takes the staged rows in key order, so the key index is walked once instead of at
  random (180k staged rows into 200k: PostgreSQL 1.92 -> 1.58 s, MariaDB 2.14 -> 1.98 s, SQLite 2.0 -> 1.3 s).
* **SQLite (P4)**: the load is Python's (csv, conversion checks, `executemany`: SQLite has no bulk path
  a library can call). Since 2026-11-26 each chunk is converted column by column (map, one regex over
  the joined column) with a row-by-row pass only for a chunk holding a bad value (load 1.82 s -> 1.68 s
  per 200k), and change batches upsert and read back in key order, so the table's B-tree is walked once
  instead of at random (merge 2.0 s -> 1.3 s for 180k upserts). The read-back was meant to be in key order
  too, but SQLite flattened the ordered subquery into the join and dropped the ORDER BY; since 3fc7a91 it
  is kept (1.04 s -> 0.71 s per 180k rows), and a batch is deduplicated only when a key repeats (-0.15 s):
  apply-only change batch 0.57x -> 0.67x of native with the read-back. With counts only the snapshot is
  0.77x-0.84x of `.import` (apply-only, 04:24 and the day before: around the 0.8x target); with the
  read-back, 0.60x. Per-row upsert and pandas beat
  edx-agent on SQLite changes: they only insert, the agent stages, merges, validates every value (STRICT
  tables) and reads the rows back.
* **What is specific to end to end is small**: header and signature checks and pass 1 (AES-GCM over every
  chunk) are about 1 % of the profiles; pass 2 (decrypt + zstd) runs in a read-ahead thread on the
  second core, overlapping the server's parsing (on MariaDB the FIFO feeder thread does so too).
* **Scaling**: peak RSS is flat from 100k to 5M rows (P3). P5 (the change batch into a 5M-row table
  against a 1M-row one) passes on MariaDB and SQLite and misses on PostgreSQL: 1.50x in the `-pg` run
  (2026-11-26 05:08, medians of three runs each on fresh clones of one settled base), where the
  database's own staging + merge of the same batch, measured beside it, grows as much: 1.47x. Single
  runs before the clones moved between 1.32x and 2.63x for the same code. At both sizes edx-agent ran
  at 0.94x (1M) and 0.92x (5M) of the native merge's speed (medians).
  The plan was read with auto_explain on the 5M-row table: staging scanned, every key looked up through
  the primary key (nested loop, index scans), no scan of the target; the rows examined grow with the
  batch only. What grows is the number of distinct table pages the batch dirties: 80k upserts and
  deletes of random keys touch about 28k of a 1M-row table's ≈30k pages but about 62k of a 5M-row
  table's ≈150k (pages x (1 - e^(-records/pages))), 2.2x as many, each read, dirtied, written with a
  full-page image in the WAL and evicted (`Buffers: shared read=126667 dirtied=122299 written=112485`).
  Raising `shared_buffers` from 128 MB to 2 GB did not change the ratio (1.66 s -> 3.67 s; again on
  2026-11-26: 1.84 s -> 4.83 s, the native merge 1.32x), nor did a `VACUUM ANALYZE` after the snapshot
  (since 2026-11-26 the benchmark settles every base that way, and CHECKPOINTs it, before timing a
  change batch, for every method alike: the one-off autovacuum and hint-bit work of a fresh
  multi-million-row load no longer lands on whichever run comes first): the cost is bounded by the batch (at most a page per record) but,
  for random keys, reaches that bound only on tables much larger than the batch. Keys that arrive
  clustered (a school's students together) dirty fewer pages.
* **Peers**: dlt's `merge` on MariaDB and SQLite (sqlalchemy destination) does not finish in reasonable
  time: its correlated `DELETE ... WHERE EXISTS (SELECT ... FROM the staging dataset)` ran for 472 s
  (MariaDB) and 625 s (SQLite) on 100k records in an earlier run; the runs above stop a peer after
  `--peer-timeout` (120 s) and report it as slower than that. Every peer result shown was verified; pandas
  needs `DATETIME(fsp=6)` for the timestamp on MariaDB, or it silently drops the microseconds (the
  checksum caught it).
* **MariaDB's stock `innodb_buffer_pool_size` (128 MiB)**: issue 9 measured a 1M-row load 4.5x slower per
  row than a 200k one with it; here the student keys arrive in key order, but merges touch random keys.
  `edx-agent doctor` reports the pool against the size of the tables in the target schema (plus room for
  a snapshot's shadow copy) and says what to set (`mysql:innodb_buffer_pool_size`).
* **Oracle and SQL Server** cannot run here; their round trips through the recording fake DB-API (array
  binding / `fast_executemany`, no per-row round trips) are in the oracle-sqlserver section above, with the
  real-server command for when a URL is set.
* **Which code**: the `--all-peers` run (with its profiles) ran on commit 3fc7a91 (count reconciliation
  as a setting, SQLite's key-ordered read-back, settled bases), the `-pg` scaling run on the same product
  code with the benchmark's cloned-base repeats (the commit that added them); the
  scaling run without a tag is older (2026-11-25, before the read-back changes listed above, on a VM
  loaded by other work: load averages in its header).
* A figure that misses its target is marked MISSING above; none is hidden, none was made to pass by
  measuring something else."""


def result_files(perf_dir: Path) -> list[Path]:
    """The complete result files, the quick run's first."""
    files = [p for p in perf_dir.glob("e2e-results*.json") if ".partial." not in p.name]
    return sorted(files, key=lambda p: (p.name != "e2e-results.json", "full" in p.name, p.name))


def write_docs(perf_md: Path, perf_dir: Path) -> None:
    parts = []
    for p in result_files(perf_dir):
        doc = json.loads(p.read_text())
        cmd = doc.get("command") or ("python bench/bench_e2e.py --full" if "full" in p.name else
                                     "python bench/bench_e2e.py")
        parts.append(f"### `{cmd}` ({p.name})\n\n{render(doc)}")
    from bench import _e2e_charts
    charts = _e2e_charts.draw(perf_dir)
    body = "\n\n".join([INTRO, *parts, NOTES])
    if charts:
        body += "\n\n" + "\n".join(f"![{c}](perf/{c})" for c in charts)
    block = f"{BEGIN}\n## End to end: edx-agent vs native bulk loads and peers\n\n{body}\n{END}"
    text = perf_md.read_text() if perf_md.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    perf_md.write_text(text)
