"""Charts of bench_e2e.py (PNG, matplotlib): rows/s per method and database, peak RSS against batch size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench._e2e_report import LABEL, NAMES

COLORS = {"agent-e2e": "#1f77b4", "agent-e2e-nock": "#aec7e8", "agent-apply": "#6baed6", "native": "#2ca02c", "sqlalchemy": "#ff7f0e",
          "per-row": "#d62728", "pandas": "#9467bd", "dlt": "#8c564b"}


def _load(perf_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    from bench._e2e_report import result_files
    return [(p.name, json.loads(p.read_text())) for p in result_files(perf_dir)]


def draw(perf_dir: Path) -> list[str]:
    """Draw every chart the result files allow; return the PNG file names."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    made = []
    for name, doc in _load(perf_dir):
        tag = name.removeprefix("e2e-results").removesuffix(".json").strip("-") or "quick"
        rows = [r for r in doc["summary"] if r["group"] == "compare"]
        if rows:
            made.append(_throughput(plt, rows, perf_dir / f"e2e-rows-per-s-{tag}.png", doc["env"]))
        scale = [r for r in doc["summary"] if r["group"] in ("scale-snapshot", "compare") and r["kind"] == "snapshot"
                 and r["method"] in ("agent-e2e", "native") and "rss_mb" in r]
        if len({r["rows"] for r in scale}) > 1:
            made.append(_rss(plt, scale, perf_dir / f"e2e-rss-{tag}.png", doc["env"]))
        chg = [r for r in doc["summary"] if r["group"] == "scale-changes" and "wall" in r]
        if len({r["base"] for r in chg}) > 1:
            made.append(_scale_changes(plt, chg, perf_dir / f"e2e-changes-scaling-{tag}.png", doc["env"]))
    return made


def _throughput(plt: Any, rows: list[dict[str, Any]], path: Path, env: dict[str, Any]) -> str:
    kinds = ["snapshot", "changes"]
    dbs = [d for d in NAMES if any(r["db"] == d for r in rows)]
    methods = [m for m in LABEL if any(r["method"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(kinds), figsize=(13, 4.8), sharey=False)
    width = 0.8 / max(len(methods), 1)
    for ax, kind in zip(axes, kinds):
        for j, m in enumerate(methods):
            xs, ys, marks = [], [], []
            for i, d in enumerate(dbs):
                r = next((r for r in rows if r["db"] == d and r["kind"] == kind and r["method"] == m), None)
                if r is None:
                    continue
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(r.get("rows_s", 0))
                marks.append("" if "rows_s" in r else "✗")
            ax.bar(xs, ys, width, label=LABEL[m], color=COLORS[m])
            for x, y, mk in zip(xs, ys, marks):
                if mk:
                    ax.text(x, 0, mk, ha="center", va="bottom", color="red", fontsize=9)
        n = next((r["rows"] for r in rows if r["kind"] == kind), 0)
        base = next((r["base"] for r in rows if r["kind"] == kind), 0)
        ax.set_title(f"{kind}: {n:,} rows" + (f" into {base:,}" if base else ""))
        ax.set_xticks(range(len(dbs)), [NAMES[d] for d in dbs])
        ax.set_ylabel("rows/s (verified runs; ✗ = stopped, failed or checksum differs)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Throughput per method, {env['date']}, load avg {env['load_before']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _lines(plt: Any, rows: list[dict[str, Any]], path: Path, x: str, y: str, *, xlabel: str, ylabel: str,
           title: str, limit: tuple[float, str] | None = None) -> str:
    """One line per database and method (edx-agent, native) of ``y`` against ``x`` (log scale)."""
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for d in NAMES:
        for m, style in (("agent-e2e", "-o"), ("native", ":s")):
            pts = sorted({r[x]: r[y] for r in rows if r["db"] == d and r["method"] == m}.items())
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=f"{NAMES[d]} {LABEL[m]}")
    if limit is not None:
        ax.axhline(limit[0], color="red", alpha=0.4, linestyle="--", label=limit[1])
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _rss(plt: Any, rows: list[dict[str, Any]], path: Path, env: dict[str, Any]) -> str:
    return _lines(plt, rows, path, "rows", "rss_mb", xlabel="snapshot rows",
                  ylabel="peak RSS of the process, MiB", limit=(150, "P3 limit 150 MiB"),
                  title=f"Peak RSS against batch size, {env['date']}")


def _scale_changes(plt: Any, rows: list[dict[str, Any]], path: Path, env: dict[str, Any]) -> str:
    return _lines(plt, rows, path, "base", "wall", xlabel="rows in the target table",
                  ylabel="seconds to apply the change batch",
                  title=f"Change batch of {rows[0]['rows']:,} records against target size, {env['date']}")
