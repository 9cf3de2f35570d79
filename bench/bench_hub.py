"""Hub heartbeat benchmark: N simulated agents beating every 30 s (20 dataset statuses each) against a real hub.

    python bench/bench_hub.py                      # SQLite and PostgreSQL, 10,000 agents, then the ceiling
    python bench/bench_hub.py --stores sqlite --agents 2000 --duration 10 --no-write

The load generator is one asyncio process with hand-written HTTP/1.1 over a pool of keep-alive
connections (lean: it shares the 2 cores with the hub). Requests are sent on an open-loop schedule,
each agent at its own offset in the 30 s cycle; latency is measured from the *scheduled* send time, so a
hub that falls behind shows it (no coordinated omission). Every request is really signed
(agent/reqsign.py) and really authenticated, nonce-checked and stored by the hub. Agents are inserted
straight into the hub's store (enrolling 10,000 over HTTP measures enrolment, not heartbeats).

Writes its section of docs/performance.md between <!-- hub:begin --> and <!-- hub:end -->.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent import envelope, reqsign  # noqa: E402

PG_URL = os.environ.get("EDX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CYCLE_S = 30.0
DATASETS = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- setup ---------------------------------------------------------------------------------------

def make_agents(n: int) -> list[tuple[str, Any]]:
    out = []
    for i in range(n):
        out.append((f"agt-bench{i:07d}", envelope.generate_agent_keys("INTL1")))
    return out


def seed_store(data_dir: Path, db_url: str | None, agents: list[tuple[str, Any]]) -> None:
    from sqlalchemy import insert

    from hub.context import HubContext
    from hub.store import agents as agents_t
    from hub.store import now_ms

    ctx = HubContext(data_dir, db_url)
    ctx.init()
    rows = [{"agent_id": aid, "unit": f"unit-{i:05d}", "hostname": f"qzj-{i}", "agent_version": "0.2.0",
             "suite": 1, "keys_json": json.dumps(k.public().to_dict()), "state": "active",
             "enrolled_at_ms": now_ms(), "heartbeats": 0} for i, (aid, k) in enumerate(agents)]
    with ctx.engine.begin() as conn:
        for i in range(0, len(rows), 1000):
            conn.execute(insert(agents_t), rows[i:i + 1000])
    ctx.engine.dispose()


def beat_body(i: int) -> bytes:
    now = int(time.time() * 1000)
    ds = [{"dataset": f"dataset_{d:02d}", "last_seq": 100 + d, "last_applied_at": now - 60_000, "rows_total": 50_000 + i,
           "state": "ok", "freshness": "fresh", "last_error": None, "progress": None} for d in range(DATASETS)]
    return json.dumps({"agent_version": "0.2.0", "hostname": f"qzj-{i}", "config_digest": "sha256:ab12",
                       "uptime_s": 3600, "datasets": ds, "disk": {"spool_free_mb": 9000},
                       "certs": {"hub_ca_days_left": 300}, "clock_ms": now}, separators=(",", ":")).encode()


# --- the load generator --------------------------------------------------------------------------

class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects after an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def request(self, head: bytes, body: bytes) -> int:
        if self.w is None:
            self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.r is not None
        try:
            self.w.write(head + body)
            status_line = await self.r.readline()
            status = int(status_line.split()[1])
            length = 0
            while True:
                line = await self.r.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await self.r.readexactly(length)
            return status
        except Exception:
            self.w.close()
            self.w = None
            raise


async def run_step(port: int, agents: list[tuple[str, Any]], rate: float, duration: float,
                   connections: int) -> dict[str, Any]:
    """Send ``rate`` heartbeats per second for ``duration`` s, cycling through the agents in schedule order."""
    queue: asyncio.Queue[tuple[int, float] | None] = asyncio.Queue()
    latencies: list[float] = []
    errors: dict[str, int] = {}
    statuses: list[int] = []

    async def worker() -> None:
        conn = Conn(port)
        while True:
            item = await queue.get()
            if item is None:
                return
            i, due = item
            aid, keys = agents[i % len(agents)]
            body = beat_body(i)
            hdrs = reqsign.sign_request(aid, keys, "POST", "/v1/heartbeat", body)
            head = ("POST /v1/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
                    + "\r\n").encode()
            try:
                status = await asyncio.wait_for(conn.request(head, body), 30)
                statuses.append(status)
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except Exception as e:  # noqa: BLE001 - every failure counts as an error of its type
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            latencies.append(time.perf_counter() - due)

    workers = [asyncio.create_task(worker()) for _ in range(connections)]
    start = time.perf_counter() + 0.2
    total = int(rate * duration)
    for k in range(total):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait((k, due))
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    elapsed = time.perf_counter() - start
    lat = sorted(latencies)

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {"rate": rate, "agents_equiv": int(rate * CYCLE_S), "sent": total, "elapsed_s": round(elapsed, 1),
            "achieved_rps": round(len(lat) / elapsed, 1), "p50_ms": round(pct(0.50), 1),
            "p99_ms": round(pct(0.99), 1), "max_ms": round(lat[-1] * 1000, 1) if lat else None,
            "errors": sum(errors.values()), "error_kinds": errors}


def hub_cpu_s(pid: int) -> float:
    import psutil

    root = psutil.Process(pid)
    total = 0.0
    for p in [root, *root.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


# --- one store ---------------------------------------------------------------------------------------

def fresh_pg() -> tuple[str, Any]:
    import sqlalchemy as sa

    name = "edx_hub_bench_" + uuid.uuid4().hex[:6]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    url = sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
    return url, drop


def bench_store(store: str, workers: int, args: argparse.Namespace, agents: list[tuple[str, Any]]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"edx-bench-{store}-"))
    drop = None
    db_url = None
    if store == "postgresql":
        db_url, drop = fresh_pg()
    proc = None
    try:
        t0 = time.perf_counter()
        seed_store(tmp / "data", db_url, agents)
        seed_s = time.perf_counter() - t0
        port = free_port()
        cmd = [sys.executable, "-m", "hub.cli", "serve", "--data-dir", str(tmp / "data"), "--listen",
               f"127.0.0.1:{port}", "--workers", str(workers), "--graceful-timeout", "1"]
        env = dict(os.environ)
        if db_url:
            env["EDX_HUB_DB_URL"] = db_url
        else:
            env.pop("EDX_HUB_DB_URL", None)
        log = open(tmp / "hub.log", "wb")
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        for _ in range(300):
            try:
                with socket.create_connection(("127.0.0.1", port), 0.2):
                    break
            except OSError:
                time.sleep(0.1)
        time.sleep(1.0 * workers)
        steps = []
        target = args.agents / CYCLE_S

        def step(rate: float) -> bool:
            asyncio.run(run_step(port, agents, rate, 3, args.connections))  # warm-up: pools, caches
            cpu0 = hub_cpu_s(proc.pid)
            res = asyncio.run(run_step(port, agents, rate, args.duration, args.connections))
            # the hub's own CPU per request (all its processes): the figure contention does not distort
            res["hub_cpu_ms"] = round((hub_cpu_s(proc.pid) - cpu0) * 1000 / max(res["sent"], 1), 2)
            res["store"], res["workers"] = store, workers
            steps.append(res)
            print(json.dumps(res, ensure_ascii=False), flush=True)
            return res["p99_ms"] <= 200 and not res["errors"] and res["achieved_rps"] >= 0.9 * rate

        # the target first; then up until p99 crosses 200 ms, or down until it no longer does
        if step(target):
            for rate in [r for r in args.ceiling_rates if r > target]:
                if not step(rate):
                    break
        else:
            for rate in [r for r in args.floor_rates if r < target]:
                if step(rate):
                    break
        steps.sort(key=lambda r: r["rate"])
        return {"store": store, "workers": workers, "seed_s": round(seed_s, 1), "steps": steps}
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        if drop:
            drop()
        shutil.rmtree(tmp, ignore_errors=True)


# --- publishing and sealing a big batch --------------------------------------------------------------

SEAL_SCHEMA = {"columns": [{"name": "id", "type": "int64", "nullable": False},
                           {"name": "name", "type": "string(40)"}, {"name": "school", "type": "string(60)"},
                           {"name": "born", "type": "date"}, {"name": "score", "type": "decimal(6,2)"},
                           {"name": "note", "type": "text"}],
               "primary_key": ["id"]}
_SUR = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


def write_jsonl(path: Path, target_bytes: int) -> int:
    """Synthetic 学籍-like rows until the file reaches ``target_bytes``; returns the row count."""
    n = 0
    size = 0
    with open(path, "w", encoding="utf-8", buffering=1 << 22) as f:
        while size < target_bytes:
            chunk = []
            for i in range(n + 1, n + 10001):
                chunk.append(json.dumps({"id": i, "name": _SUR[i % 20] + "同学" + str(i % 997),
                                         "school": f"第{i % 173}中学（{i % 16}区）", "born": f"20{i % 10:02d}-0{1 + i % 9}-1{i % 9}",
                                         "score": f"{i % 1000}.{i % 100:02d}",
                                         "note": "备注" * (i % 7) + f" row {i}, \"quoted\""},
                                        ensure_ascii=False))
            text = "\n".join(chunk) + "\n"
            f.write(text)
            size += len(text.encode())
            n += 10000
    return n


def _child(code: str, env: dict[str, str]) -> tuple[float, int, str]:
    """Run Python ``code`` in a fresh process; (seconds, peak RSS bytes, stdout) via wait4's rusage."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, cwd=ROOT, stdout=subprocess.PIPE)
    out = proc.stdout.read().decode() if proc.stdout else ""
    _pid, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"child failed ({status}): {code[:200]}")
    return time.perf_counter() - t, usage.ru_maxrss * 1024, out


def bench_seal(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="edx-bench-seal-"))
    try:
        src = tmp / "rows.jsonl"
        (tmp / "schema.json").write_text(json.dumps(SEAL_SCHEMA))
        rows = write_jsonl(src, int(args.seal_mb * 1_000_000))
        mb = src.stat().st_size / 1e6
        agents = make_agents(args.seal_agents)
        seed_store(tmp / "data", None, agents)
        from hub.context import HubContext
        from hub.grants import add_grant
        from hub.catalog import create_dataset
        from agent.schema import Schema
        ctx = HubContext(tmp / "data")
        with ctx.engine.begin() as conn:
            create_dataset(conn, "big", Schema.from_dict(SEAL_SCHEMA), update_interval_s=86400)
            for i in range(len(agents)):
                add_grant(conn, f"unit-{i:05d}", "big")
        ctx.engine.dispose()
        env = {**os.environ, "EDX_HUB_DATA_DIR": str(tmp / "data")}
        env.pop("EDX_HUB_DB_URL", None)
        pub_s, pub_rss, out = _child(
            "from pathlib import Path; from hub.context import HubContext; from hub.publish import publish; "
            "from hub.sources import jsonl_records; import json, os; "
            "ctx = HubContext(Path(os.environ['EDX_HUB_DATA_DIR'])); ctx.settings.seal_on_publish = False; "
            f"r = publish(ctx, 'big', lambda e: jsonl_records(Path({str(src)!r}), e), kind='snapshot'); "
            "print(json.dumps(r.to_dict()))", env)
        seal_s, seal_rss, _ = _child(
            "from pathlib import Path; from hub.context import HubContext; from hub.sealing import seal_new_batch; "
            "import os; ctx = HubContext(Path(os.environ['EDX_HUB_DATA_DIR'])); print(seal_new_batch(ctx, 'big', 1))",
            env)
        ctx = HubContext(tmp / "data")
        from sqlalchemy import func, select
        from hub.store import sealed
        with ctx.engine.connect() as conn:
            n_sealed, wire = conn.execute(select(func.count(), func.sum(sealed.c.size))).one()
        res = {"mb": round(mb), "rows": rows, "agents": len(agents), "sealed": n_sealed,
               "wire_mb_each": round((wire or 0) / max(n_sealed, 1) / 1e6, 1),
               "publish_s": round(pub_s, 1), "publish_mb_s": round(mb / pub_s, 1),
               "publish_rss_mib": round(pub_rss / 2**20), "seal_s": round(seal_s, 1),
               "seal_mb_s": round(mb * n_sealed / seal_s, 1), "seal_rss_mib": round(seal_rss / 2**20)}
        print(json.dumps(res), flush=True)
        return res
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def seal_section(r: dict[str, Any]) -> str:
    return "\n".join([
        SEAL_HEADING, "",
        f"A {r['mb']:,} MB JSON Lines file ({r['rows']:,} synthetic 学籍 rows, 6 columns) published as a snapshot "
        f"with `edx-hub publish` (validate every row, write the CSV payload, zstd, apply to the hub's materialised "
        f"state in SQLite), then sealed for {r['agents']} agents (INTL1: X25519 + AES-256-GCM, 1 MiB chunks), each "
        "in a fresh process; peak RSS from wait4(2). MB/s are of the JSONL input, summed over agents for sealing.", "",
        "| Step | Seconds | Throughput | Peak RSS |", "|---|---:|---:|---:|",
        f"| publish {r['mb']:,} MB ({r['rows']:,} rows) | {r['publish_s']} | {r['publish_mb_s']} MB/s | "
        f"{r['publish_rss_mib']} MiB |",
        f"| seal for {r['sealed']} agents ({r['wire_mb_each']} MB on the wire each) | {r['seal_s']} | "
        f"{r['seal_mb_s']} MB/s | {r['seal_rss_mib']} MiB |", "", ""])


# --- report ------------------------------------------------------------------------------------------

def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0]
    return f"{cpu}, {os.cpu_count()} vCPU, Python {platform.python_version()}, load average {load:.1f} at the end"


def section(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """The heartbeat table and the ceiling per store and worker count."""
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = ["## Hub: heartbeats", "",
             f"Measured {when} on {machine()}. The hub (`edx-hub serve --workers W`, plain HTTP on loopback) "
             "and the load generator (one asyncio "
             f"process, {args.connections} keep-alive connections) share the machine. Each heartbeat carries "
             f"{DATASETS} dataset statuses (≈2.6 KB), is signed with the agent's Ed25519 key and is really "
             "authenticated, nonce-checked (insert into the store) and stored by the hub. Open-loop schedule; "
             "latency from the scheduled send time. Agents = rate × 30 s. "
             f"{args.duration:.0f} s per step after a 3 s warm-up. Reproduce: `python bench/bench_hub.py`.", "",
             "| Store | W | Agents (every 30 s) | Rate /s | Achieved /s | p50 ms | p99 ms | max ms | Errors "
             "| Hub CPU ms/req |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for s in r["steps"]:
            lines.append(f"| {r['store']} | {r['workers']} | {s['agents_equiv']:,} | {s['rate']:.0f} | {s['achieved_rps']:.0f} | "
                         f"{s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} | {s['errors']}"
                         + (f" ({', '.join(f'{k}: {v}' for k, v in s['error_kinds'].items())})" if s["errors"] else "")
                         + f" | {s.get('hub_cpu_ms', '—')} |")
    lines += ["", "Hub CPU ms/req is the CPU time (user + system) of the hub's processes per heartbeat, PostgreSQL's "
              "own server processes excluded: the figure that contention from other work on the machine does not "
              "distort. At 333 heartbeats/s a hub needs 0.333 × that many cores; latency then depends on getting "
              "them. Read the p99 column together with the load average above.", ""]
    for r in results:
        ok = [s for s in r["steps"] if s["p99_ms"] <= 200 and not s["errors"] and s["achieved_rps"] >= 0.9 * s["rate"]]
        bad = [s for s in r["steps"] if s not in ok]
        who = f"**{r['store']}, {r['workers']} worker(s)**"
        if ok and bad:
            hi_ok = max(ok, key=lambda s: s["rate"])
            lo_bad = min((s for s in bad if s["rate"] > hi_ok["rate"]), key=lambda s: s["rate"], default=bad[0])
            lines.append(f"- {who}: p99 ≤ 200 ms up to {hi_ok['agents_equiv']:,} agents ({hi_ok['rate']:.0f}/s); "
                         f"crosses it by {lo_bad['agents_equiv']:,} agents ({lo_bad['rate']:.0f}/s).")
        elif ok:
            lines.append(f"- {who}: p99 ≤ 200 ms up to the highest rate tried "
                         f"({ok[-1]['rate']:.0f}/s = {ok[-1]['agents_equiv']:,} agents).")
        else:
            lines.append(f"- {who}: p99 above 200 ms at every rate tried (down to {bad[0]['rate']:.0f}/s).")
    lines.append("")
    return "\n".join(lines)


SEAL_HEADING = "### Publishing and sealing a big batch"


def write_section(text: str, heartbeats: bool, seal: bool) -> None:
    """Replace the hub section; a part this run did not measure (heartbeats or sealing) is kept as it was."""
    path = ROOT / "docs" / "performance.md"
    doc = path.read_text() if path.exists() else "# Performance\n\nMeasured figures of each part; each section is written by its benchmark.\n"
    old = re.search(r"<!-- hub:begin -->\n(.*?)<!-- hub:end -->", doc, flags=re.S)
    if old and not (heartbeats and seal):
        prev_hb, _, prev_seal = old.group(1).partition(SEAL_HEADING)
        new_hb, _, new_seal = text.partition(SEAL_HEADING)
        hb = new_hb if heartbeats else prev_hb
        sl = new_seal if seal else prev_seal
        text = hb.rstrip("\n") + "\n\n" + (SEAL_HEADING + sl if sl else "")
    block = f"<!-- hub:begin -->\n{text}<!-- hub:end -->"
    if "<!-- hub:begin -->" in doc:
        doc = re.sub(r"<!-- hub:begin -->.*?<!-- hub:end -->", lambda _m: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(doc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stores", default="sqlite,postgresql")
    p.add_argument("--agents", type=int, default=10_000)
    p.add_argument("--duration", type=float, default=20)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts to compare")
    p.add_argument("--ceiling-rates", type=lambda s: [float(x) for x in s.split(",")],
                   default=[500, 667, 833, 1000, 1333])
    p.add_argument("--floor-rates", type=lambda s: [float(x) for x in s.split(",")],
                   default=[250, 167, 100, 50], help="tried downwards when the target rate fails")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    p.add_argument("--seal-mb", type=float, default=1000, help="size of the big-batch JSONL (0: skip)")
    p.add_argument("--seal-agents", type=int, default=10)
    p.add_argument("--skip-heartbeats", action="store_true")
    args = p.parse_args()
    top = max([args.agents / CYCLE_S, *args.ceiling_rates])
    agents = [] if args.skip_heartbeats else make_agents(int(top * CYCLE_S))
    results = [] if args.skip_heartbeats else [
        bench_store(s.strip(), int(w), args, agents)
        for s in args.stores.split(",") if s.strip() for w in args.workers.split(",")]
    text = section(results, args) if results else ""
    if args.seal_mb > 0:
        text += ("\n" if text else "") + seal_section(bench_seal(args))
    print(text)
    if not args.no_write:
        write_section(text, heartbeats=bool(results), seal=args.seal_mb > 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
