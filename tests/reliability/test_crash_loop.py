"""Crash loop: the real daemon (``edx-agent run``) SIGKILLed at random moments while applying a stream.

Kafka's transactions test hard-kills the copier and compares output with input; this does the same to
the agent. The platform keeps publishing snapshots and change batches to two datasets while the daemon
is killed after a random delay (seeded) and started again. After every kill the target must hold exactly
the published state at its checkpoint; at the end the daemon is left to converge and the target tables
must equal the source: row by row, and as count + checksum over all columns (the connector's
``table_checksum`` against ``payload.Checksum`` of the expected state), with every applied batch
acknowledged to the hub. Each process runs with the ``*:trace`` fault action, so the report says after
which step each kill landed.

Default: 30 kills per database. Long run (``--run-slow``), sized by environment variables:
``EDX_CRASH_KILLS`` (default 10000) and ``EDX_CRASH_ROWS`` (rows per snapshot, default 20000), e.g.

    EDX_CRASH_KILLS=10000 EDX_CRASH_ROWS=20000 pytest tests/reliability/test_crash_loop.py --run-slow -k long -s
"""

from __future__ import annotations

import collections
import os
import signal
import time

import pytest

from .conftest import BACKEND_PARAMS
from .harness import wait_for

DATASETS = ["crash_a", "crash_b"]


def crash_loop(make_rig, backend: str, rng, kills: int, rows: int, max_delay: float = 4.0) -> dict:
    rig = make_rig(backend, datasets=DATASETS, base_rows=rows,
                   extra_config={"sync": {"interval": "1s", "jitter": "0s"}, "heartbeat": {"interval": "3s"},
                                 "health": {"enabled": False}})
    for ds in DATASETS:
        rig.publish("snapshot", ds)
    landed: collections.Counter[str] = collections.Counter()
    published_rows = sum(b.rows for s in rig.streams.values() for b in s.batches)
    t0 = time.monotonic()
    for k in range(kills):
        # keep the platform publishing while the agent crashes
        ds = rng.choice(DATASETS)
        b = rig.publish("snapshot" if rng.random() < 0.2 else "changes", ds, rows=rows)
        published_rows += b.rows
        proc = rig.spawn("run", "--stop-timeout", "5s", faults="*:trace")
        trace = rig.faults_dir / f"trace.{proc.pid}"
        if rng.random() < 0.15:  # now and then anywhere, start-up included
            time.sleep(rng.uniform(0.1, max_delay))
        else:  # mostly once the data path is running: a random moment of the batches in flight
            try:
                wait_for(lambda: trace.exists() or proc.poll() is not None, 30, "the daemon to start a batch")
            except AssertionError:
                pass
            time.sleep(rng.uniform(0.0, rng.choice((0.02, 0.1, 0.4))))
        if proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"the daemon exited by itself ({proc.returncode}) before kill {k}:\n{err[-3000:]}")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        rig.faults_injected += 1
        steps = trace.read_text().split() if trace.exists() else []
        landed[steps[-1] if steps else "start-up"] += 1
        trace.unlink(missing_ok=True)
        figures = rig.check(allow_snapshot_ahead=backend == "mysql")
        if (k + 1) % 100 == 0:
            print(f"[crash-loop {backend}] progress: {k + 1} kills, {published_rows} rows published, "
                  f"{figures['rows']} rows checked now, {time.monotonic() - t0:.0f}s, landed {dict(landed)}",
                  flush=True)
    # converge: the daemon runs until every dataset holds the last published batch, then stops cleanly
    proc = rig.spawn("run", "--stop-timeout", "5s")
    try:
        wait_for(lambda: all(rig.target.checkpoint(ds)[0] == rig.streams[ds].seq for ds in DATASETS),
                 timeout=300, what="the daemon to apply the whole stream", poll=0.5)
        time.sleep(1.0)  # the last acks
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    figures = rig.check(complete=True)
    for ds in DATASETS:
        st = rig.streams[ds]
        got, want = rig.target.checksum(ds), st.expected_checksum(st.seq)
        assert (got.count, got.total) == (want.count, want.total), f"{ds}: checksum {got} != {want}"
    summary = {"kills": kills, "published_rows": published_rows, "final_rows": figures["rows"],
               "batches": sum(s.seq for s in rig.streams.values()), "seconds": round(time.monotonic() - t0, 1),
               "landed": dict(landed.most_common())}
    print(f"[crash-loop {backend}] {summary}")
    return summary


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_crash_loop(backend, make_rig, rng):
    s = crash_loop(make_rig, backend, rng, kills=30, rows=300)
    assert sum(n for step, n in s["landed"].items() if step != "start-up") > 0, \
        f"no kill landed inside the data path: {s['landed']}"


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_crash_loop_long(backend, make_rig, rng):
    crash_loop(make_rig, backend, rng, kills=int(os.environ.get("EDX_CRASH_KILLS", "10000")),
               rows=int(os.environ.get("EDX_CRASH_ROWS", "20000")), max_delay=8.0)
