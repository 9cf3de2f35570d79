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
LABEL = {"agent-e2e": "edx-agent end to end", "agent-apply": "edx-agent apply only", "native": "native CLI",
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
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
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
                        fig = _fmt_ratio(_ratio(chg_a, p), t) if "wall" in p else f"n/a ({p.get('failure', '')[:80]})"
                        out.append((f"P2 {NAMES[db]} changes e2e ≥ {t:g}× {LABEL[peer]}", fig, ""))
        else:
            if snap_a or snap_n:
                out.append(("P4 SQLite snapshot e2e ≥ 0.8× sqlite3 .import", _fmt_ratio(_ratio(snap_a, snap_n), 0.8), ""))
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
    for r in sorted(summary, key=lambda r: (r["group"] != "compare", r["group"], r["db"], r["kind"] != "snapshot",
                                            r["rows"], r["base"] or 0, list(LABEL).index(r["method"]))):
        nat = _get(summary, group=r["group"], db=r["db"], kind=r["kind"], rows=r["rows"], base=r["base"],
                   method="native")
        if "wall" in r:
            rel = _ratio(r, nat)
            lines.append(f"| {NAMES[r['db']]} | {r['kind']} | {r['rows']:,} | {(r['base'] or 0):,} | "
                         f"{LABEL[r['method']]} | {r['wall']:.2f} | {r['rows_s']:,.0f} | "
                         f"{'' if rel is None else f'{rel:.2f}×'} | {r['rss_mb']:.0f} | {r['startup']:.2f} | "
                         f"{r['verified_runs']}/{r['runs']} |")
        else:
            lines.append(f"| {NAMES[r['db']]} | {r['kind']} | {r['rows']:,} | {(r['base'] or 0):,} | "
                         f"{LABEL[r['method']]} | – | – | – | – | – | 0/{r['runs']}: {r['failure'][:160]} |")
    lines += ["", "| target | figure (same run) |", "|---|---|"]
    lines += [f"| {t} | {f} |" for t, f, _ in targets(summary)]
    ph = [r for r in summary if r["method"] == "agent-e2e" and r.get("phases") and r["group"] == "compare"]
    if ph:
        lines += ["", "edx-agent end to end, median phases (s): " + "; ".join(f"{NAMES[r['db']]} {r['kind']}: " + ", ".join(f"{k} {v:.2f}" for k, v in r["phases"].items())
                              for r in ph)]
    return "\n".join(lines)


def write_docs(perf_md: Path, perf_dir: Path) -> None:
    parts = []
    for name, title in (("e2e-results.json", "Quick run (`python bench/bench_e2e.py`)"),
                        ("e2e-results-full.json", "Full run (`python bench/bench_e2e.py --full`)")):
        p = perf_dir / name
        if p.exists():
            doc = json.loads(p.read_text())
            parts.append(f"### {title}\n\n{render(doc)}")
    from bench import _e2e_charts
    charts = _e2e_charts.draw(perf_dir)
    body = "\n\n".join(parts)
    if charts:
        body += "\n\n" + "\n".join(f"![{c}](perf/{c})" for c in charts)
    block = f"{BEGIN}\n## End to end: edx-agent vs native bulk loads and peers\n\n{body}\n{END}"
    text = perf_md.read_text() if perf_md.exists() else "# Performance\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    perf_md.write_text(text)
