"""HTML rendering of the fleet view: small, dependency-free, every value escaped (agents send free text)."""

from __future__ import annotations

import datetime as dt
from html import escape
from typing import Any, Iterable

CSS = """
body{font:14px/1.4 system-ui,"Noto Sans CJK SC","Microsoft YaHei",sans-serif;margin:24px;color:#1d2733}
h1{font-size:20px;margin:0 0 4px} h2{font-size:16px;margin:24px 0 8px}
table{border-collapse:collapse;width:100%;margin-bottom:16px} th,td{padding:6px 8px;border-bottom:1px solid #e3e7ec;text-align:left;vertical-align:top}
th{background:#f4f6f8;font-weight:600} td.num{text-align:right;font-variant-numeric:tabular-nums}
.st{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.Online{background:#d9f2e1;color:#17603a}.Degraded{background:#fff1c2;color:#7a5400}.Offline{background:#fde0dc;color:#9b1c12}
.Never{background:#e8eaf0;color:#444}.Disabled{background:#e8eaf0;color:#444}.Revoked{background:#3b3f46;color:#fff}
.fresh{color:#17603a}.stale{color:#9b1c12;font-weight:600} code{font-size:12px;background:#f4f6f8;padding:1px 4px}
.summary span{margin-right:16px} .muted{color:#6b7785} a{color:#1554b0;text-decoration:none}
pre{background:#f4f6f8;padding:8px;overflow:auto;max-height:300px}
"""


def ts(ms: Any) -> str:
    if not isinstance(ms, (int, float)) or not ms:
        return "—" if not ms else escape(str(ms))
    return dt.datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def ago(ms: Any, now: int) -> str:
    if not isinstance(ms, int) or not ms:
        return "never"
    s = max(0, (now - ms) // 1000)
    if s < 120:
        return f"{s} s ago"
    if s < 7200:
        return f"{s // 60} min ago"
    if s < 172800:
        return f"{s // 3600} h ago"
    return f"{s // 86400} d ago"


def duration(s: int) -> str:
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h"
    return f"{s // 86400} d"


def badge(state: str) -> str:
    return f'<span class="st {escape(state.split()[0])}">{escape(state)}</span>'


def page(title: str, body: str, refresh: int = 30) -> str:
    return (f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta http-equiv="refresh" content="{refresh}"><style>{CSS}</style></head><body>{body}</body></html>')


def table(headers: Iterable[str], rows: Iterable[Iterable[str]], num: Iterable[int] = ()) -> str:
    numeric = set(num)
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f'<td class="num">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def dataset_cells(d: dict[str, Any]) -> list[str]:
    err = d["last_error"]
    fresh = ('<span class="fresh">fresh</span>' if d["freshness"] == "fresh"
             else f'<span class="stale">stale · {duration(d["lag_s"])}</span>')
    return [escape(d["dataset"]), escape(d["title"]), str(d["last_seq"]), str(d["latest_seq"]), str(d["lag_batches"]),
            fresh + f' <span class="muted">/ {duration(d["update_interval_s"])}</span>',
            escape(str(d["rows_total"])) if d["rows_total"] is not None else "—",
            (f"<code>{escape(err['code'])}</code> {escape(err['message'])}" if err else "—")]


def fleet_page(doc: dict[str, Any]) -> str:
    now = doc["generated_at_ms"]
    summary = "".join(f"<span>{badge(s)} {n}</span>" for s, n in doc["summary"].items())
    rows = []
    for a in doc["agents"]:
        stale = sum(1 for d in a["datasets"] if d["freshness"] == "stale")
        lag = max((d["lag_batches"] for d in a["datasets"]), default=0)
        rows.append([badge(a["state"]), f'<a href="/fleet/agents/{escape(a["agent_id"])}">{escape(a["agent_id"])}</a>',
                     escape(a["unit"]), escape(a["hostname"]), escape(a["version"] or "—"),
                     ago(a["last_seen_ms"], now), f'{len(a["datasets"])}', str(lag),
                     f'<span class="stale">{stale}</span>' if stale else "0",
                     f"<code>{escape(a['last_error_code'])}</code>" if a["last_error_code"] else "—"])
    agents = table(["State", "Agent", "Unit 单位", "Host", "Version", "Last heartbeat", "Datasets", "Max lag",
                    "Stale", "Last error"], rows, num=(6, 7, 8))
    ds = table(["Dataset", "Title", "Latest seq", "Rows", "Update interval"],
               [[escape(d["name"]), escape(d["title"]), str(d["latest_seq"]), str(d["rows"]),
                 duration(d["update_interval_s"])] for d in doc["datasets"]], num=(2, 3))
    body = (f"<h1>Fleet 前置机状态</h1><p class='muted'>{len(doc['agents'])} agents · generated {ts(now)} · "
            f"Offline after {doc['offline_after_beats']} missed heartbeats of {doc['heartbeat_interval_s']} s · "
            f"<a href='/admin/v1/fleet'>JSON</a></p><p class='summary'>{summary}</p>"
            f"<h2>Agents</h2>{agents}<h2>Datasets 资源目录</h2>{ds}")
    return page("edx fleet", body)


def agent_page(a: dict[str, Any], now: int, reports: list[dict[str, Any]], feedback: list[dict[str, Any]],
               commands: list[dict[str, Any]]) -> str:
    facts = table(["", ""], [
        ["State", badge(a["state"])], ["Unit 单位", escape(a["unit"])], ["Host", escape(a["hostname"])],
        ["Version", escape(a["version"] or "—")], ["Enrolled", ts(a["enrolled_at_ms"])],
        ["Last heartbeat", f'{ts(a["last_seen_ms"])} ({ago(a["last_seen_ms"], now)})'],
        ["Heartbeats", str(a["heartbeats"])], ["Config digest", f"<code>{escape(str(a['config_digest'] or '—'))}</code>"],
        ["Clock skew", f"{a['clock_skew_ms']} ms" if a["clock_skew_ms"] is not None else "—"],
        ["Disk", escape(", ".join(f"{k}={v}" for k, v in a["disk"].items())) or "—"],
        ["Certificates", escape(", ".join(f"{k}={v}" for k, v in a["certs"].items())) or "—"],
        ["Checksum mismatches", str(a["checksum_mismatches"])],
    ])
    ds = table(["Dataset", "Title", "Applied", "Latest", "Lag", "Freshness / interval", "Rows", "Last error"],
               [dataset_cells(d) for d in a["datasets"]], num=(2, 3, 4))
    rep = table(["Received", "Correlation id", "Report"],
                [[ts(m["created_at_ms"]), escape(str(m["body"].get("correlation_id", ""))),
                  f"<pre>{escape(_pretty(m['body'].get('report')))}</pre>"] for m in reports])
    fb = table(["Received", "Kind", "Dataset", "Seq", "Message"],
               [[ts(m["created_at_ms"]), escape(m["kind"]), escape(m["dataset"] or "—"), escape(str(m["seq"] or "—")),
                 escape(str(m["body"].get("message", "")))
                 + (f" <span class='muted'>({len(m['body'].get('quarantined') or [])} quarantined rows)</span>"
                    if m["body"].get("quarantined") else "")] for m in feedback])
    cmd = table(["Created", "Command", "Dataset", "State", "Detail"],
                [[ts(c["created_at_ms"]), escape(c["type"]), escape(c["dataset"] or "—"), escape(c["state"]),
                  escape(str((c["result"] or {}).get("detail", "")))] for c in commands])
    body = (f"<p><a href='/fleet'>← fleet</a></p><h1>{escape(a['agent_id'])}</h1>{facts}"
            f"<h2>Datasets</h2>{ds}<h2>Joint-debug reports 联调报告</h2>{rep}"
            f"<h2>Feedback 问题反馈 and requests 需求征集</h2>{fb}<h2>Commands</h2>{cmd}")
    return page(f"edx agent {a['agent_id']}", body)


def _pretty(obj: Any) -> str:
    import json
    return json.dumps(obj, ensure_ascii=False, indent=2)[:5000]
