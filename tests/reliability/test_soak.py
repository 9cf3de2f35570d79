"""Soak: one daemon, 50 datasets, 1,000 batches in a row; its RSS must stay flat (no leak per batch).

The platform publishes ``EDX_SOAK_BATCHES`` batches (default 1,000) round-robin over 50 datasets while
the daemon (``edx-agent run``) applies them; the daemon's RSS is sampled with psutil against the number of
batches applied (sum of the checkpoints). The curve is printed (and goes into docs/reliability.md); the
test fails if RSS after the last quarter grew by more than 25 % over RSS after the first quarter, and the
oracle checks every dataset at the end.

    EDX_SOAK_BATCHES=1000 pytest tests/reliability/test_soak.py --run-slow -s
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from .harness import wait_for

DATASETS = [f"soak{i:02d}" for i in range(50)]


@pytest.mark.slow
def test_soak_rss_flat(make_rig, rng):
    psutil = pytest.importorskip("psutil")
    total = int(os.environ.get("EDX_SOAK_BATCHES", "1000"))
    rig = make_rig("sqlite", datasets=DATASETS, base_rows=40,
                   extra_config={"sync": {"interval": "2s", "jitter": "0s"}, "heartbeat": {"interval": "10s"},
                                 "health": {"enabled": False}})
    for ds in DATASETS:
        rig.publish("snapshot", ds)
    proc = rig.spawn("run", "--stop-timeout", "10s", log=rig.workdir / "daemon.log")
    p = psutil.Process(proc.pid)
    curve: list[tuple[int, int, float]] = []
    t0 = time.monotonic()

    def applied() -> int:
        return sum(rig.target.checkpoint(ds)[0] for ds in DATASETS)

    try:
        published = len(DATASETS)
        while published < total:
            for _ in range(min(25, total - published)):
                ds = DATASETS[published % len(DATASETS)]
                rig.publish("snapshot" if rng.random() < 0.1 else "changes", ds, rows=20)
                published += 1
            curve.append((applied(), p.memory_info().rss, round(time.monotonic() - t0, 1)))
            assert proc.poll() is None
        wait_for(lambda: applied() >= published, 900, "the daemon to apply every batch", poll=1.0)
        curve.append((applied(), p.memory_info().rss, round(time.monotonic() - t0, 1)))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
    rig.check(complete=True)
    print("[soak] batches_applied rss_mib seconds")
    for n, rss, s in curve:
        print(f"[soak] {n} {rss / 2**20:.1f} {s}")
    q = max(1, len(curve) // 4)
    early = sorted(r for _, r, _ in curve[q:2 * q])[len(curve[q:2 * q]) // 2]
    late = sorted(r for _, r, _ in curve[-q:])[len(curve[-q:]) // 2]
    assert late <= early * 1.25, f"RSS grew from {early / 2**20:.1f} to {late / 2**20:.1f} MiB"
