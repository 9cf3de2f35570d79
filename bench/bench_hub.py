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
import statistics
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


def bench_store(store: str, args: argparse.Namespace, agents: list[tuple[str, Any]]) -> dict[str, Any]:
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
               f"127.0.0.1:{port}", "--workers", str(args.workers), "--graceful-timeout", "1"]
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
        time.sleep(1.0 * args.workers)
        steps = []
        target = args.agents / CYCLE_S
        rates = [target] + [r for r in args.ceiling_rates if r > target]
        for rate in rates:
            asyncio.run(run_step(port, agents, rate, 3, args.connections))  # warm-up: pools, caches
            res = asyncio.run(run_step(port, agents, rate, args.duration, args.connections))
            res["store"] = store
            steps.append(res)
            print(json.dumps(res, ensure_ascii=False), flush=True)
            if res["p99_ms"] > 200 or res["errors"] or res["achieved_rps"] < 0.9 * rate:
                break
        return {"store": store, "seed_s": round(seed_s, 1), "steps": steps}
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
    when = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = ["## Hub: heartbeats", "",
             f"Measured {when} on {machine()}. The hub (`edx-hub serve`, {args.workers} worker process"
             f"{'es' if args.workers > 1 else ''}, plain HTTP on loopback) and the load generator (one asyncio "
             f"process, {args.connections} keep-alive connections) share the machine. Each heartbeat carries "
             f"{DATASETS} dataset statuses (≈2.6 KB), is signed with the agent's Ed25519 key and is really "
             "authenticated, nonce-checked (insert into the store) and stored by the hub. Open-loop schedule; "
             "latency from the scheduled send time. Agents = rate × 30 s. "
             f"{args.duration:.0f} s per step after a 3 s warm-up. Reproduce: `python bench/bench_hub.py`.", "",
             "| Store | Agents (every 30 s) | Rate /s | Achieved /s | p50 ms | p99 ms | max ms | Errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        for s in r["steps"]:
            lines.append(f"| {r['store']} | {s['agents_equiv']:,} | {s['rate']:.0f} | {s['achieved_rps']:.0f} | "
                         f"{s['p50_ms']} | {s['p99_ms']} | {s['max_ms']} | {s['errors']}"
                         + (f" ({', '.join(f'{k}: {v}' for k, v in s['error_kinds'].items())})" if s["errors"] else "")
                         + " |")
    lines.append("")
    for r in results:
        ok = [s for s in r["steps"] if s["p99_ms"] <= 200 and not s["errors"] and s["achieved_rps"] >= 0.9 * s["rate"]]
        bad = [s for s in r["steps"] if s not in ok]
        if bad:
            lines.append(f"- **{r['store']}**: ceiling between {ok[-1]['agents_equiv']:,} and "
                         f"{bad[0]['agents_equiv']:,} agents ({ok[-1]['rate']:.0f}–{bad[0]['rate']:.0f} heartbeats/s), "
                         "where p99 crosses 200 ms or errors appear." if ok else
                         f"- **{r['store']}**: p99 above 200 ms already at {bad[0]['rate']:.0f}/s.")
        else:
            lines.append(f"- **{r['store']}**: p99 under 200 ms up to the highest rate tried "
                         f"({r['steps'][-1]['rate']:.0f}/s = {r['steps'][-1]['agents_equiv']:,} agents).")
    lines.append("")
    return "\n".join(lines)


def write_section(text: str) -> None:
    path = ROOT / "docs" / "performance.md"
    doc = path.read_text() if path.exists() else "# Performance\n\nMeasured figures of each part; each section is written by its benchmark.\n"
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
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--ceiling-rates", type=lambda s: [float(x) for x in s.split(",")],
                   default=[500, 667, 833, 1000, 1333])
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = p.parse_args()
    top = max([args.agents / CYCLE_S, *args.ceiling_rates])
    print(f"generating {int(top * CYCLE_S)} agent key pairs…", flush=True)
    agents = make_agents(int(top * CYCLE_S))
    results = [bench_store(s.strip(), args, agents) for s in args.stores.split(",") if s.strip()]
    text = section(results, args)
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
