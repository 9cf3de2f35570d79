"""Unknown commit outcome: the link to the database is cut around the COMMIT of an apply (≥ 50 per database).

FoundationDB's first simulation find was a double apply after ``commit_unknown_result``. Here a TCP proxy
between the agent and MariaDB/PostgreSQL reads the wire protocol, recognises the COMMIT of a transaction
that wrote ``edx_checkpoint`` and either swallows it (the server rolls back), relays it and resets the
link at once (a race), or relays it and swallows the server's answer (committed, but the agent cannot
know). The agent must resolve every case from the checkpoint table on its next run: never apply a batch
twice (the apply log written by a trigger says what was committed), never skip one (the target equals
the published state at its checkpoint, and the whole stream at the end).

SQLite has no connection to cut: its COMMIT is a local file operation, covered by SIGKILL at the
``commit``/``committed`` fault points and by the fsync faults instead.
"""

from __future__ import annotations

import random

import pytest

from .faultproxy import CommitCut, FaultProxy
from .harness import assert_clean_exit

DATASETS = [f"ds{i}" for i in range(10)]


def run_cuts(make_rig, backend: str, rng: random.Random, want: int, max_rounds: int) -> dict:
    with FaultProxy(0) as proxy:
        rig = make_rig(backend, datasets=DATASETS, db_proxy=proxy, base_rows=40)
        for ds in DATASETS:
            rig.publish("snapshot", ds)
        rig.recover()
        rig.check(complete=True)
        cut = CommitCut("mysql" if backend == "mysql" else "postgresql", probability=0.9, rng=rng)
        rounds = 0
        while sum(cut.injected.values()) < want and rounds < max_rounds:
            rounds += 1
            for ds in DATASETS:
                rig.publish("snapshot" if rng.random() < 0.25 else "changes", ds)
            proxy.commit = cut
            run = rig.sync()
            proxy.commit = None
            assert_clean_exit(run)
            rig.check(allow_snapshot_ahead=backend == "mysql")
            if run.returncode != 0:
                assert "database-unavailable" in run.stdout + run.stderr, run.text
            rig.recover()
            rig.check(complete=True)
        n = sum(cut.injected.values())
        assert n >= want, f"only {n} COMMITs cut in {rounds} rounds"
        print(f"[unknown-commit {backend}] {n} cuts {cut.injected} in {rounds} rounds, "
              f"{len(rig.runs)} agent runs, {rig.check()['rows']} rows checked")
        return cut.injected


@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql),
                                     pytest.param("postgresql", marks=pytest.mark.postgresql)])
def test_commit_outcome_unknown(backend, make_rig, rng):
    injected = run_cuts(make_rig, backend, rng, want=50, max_rounds=40)
    assert set(injected) == {"drop_request", "cut_after", "drop_reply"}, injected


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("mysql", marks=pytest.mark.mysql),
                                     pytest.param("postgresql", marks=pytest.mark.postgresql)])
def test_commit_outcome_unknown_long(backend, make_rig, rng):
    run_cuts(make_rig, backend, rng, want=500, max_rounds=400)
