"""SIGKILL (and an injected exception) at every named step of a batch, on every target database.

SQLite's method (fail at step 1, 2, ... N of one operation, then check) applied to the agent's data path:
for each step of agent/faults.STEPS the agent process is killed exactly there while applying a batch, the
state left behind is checked against the oracle (the target holds exactly the published prefix up to its
checkpoint, lineage = checkpoint, nothing applied twice, no ack before commit), then a fresh process
recovers and the target must hold the whole stream, every batch acknowledged once.

Default run: every step on a changes batch, and the steps inside the database transaction on a snapshot
too. ``--run-slow``: every step on both kinds, at the first and second occurrence in one process (two
batches pending), for SIGKILL and for an injected exception.
"""

from __future__ import annotations

import pytest

from agent.faults import STEPS

from .conftest import BACKEND_PARAMS
from .harness import assert_clean_exit

DB_STEPS = ("staging_load", "merge", "checkpoint_write", "commit", "committed")


def sweep(rig, plan, action: str = "kill") -> int:
    """Run ``plan`` = [(step, kinds to publish, nth)], checking after each fault and each recovery."""
    rig.publish("snapshot")
    rig.recover()
    rig.check(complete=True)
    faults = 0
    for step, kinds, nth in plan:
        for kind in kinds:
            rig.publish(kind)
        run = rig.sync(faults=f"{step}:{action}@{nth}")
        if action == "kill":
            assert run.killed, f"{step}@{nth} was not reached (kinds {kinds})\n{run.text}"
        else:
            assert_clean_exit(run)
            assert run.returncode != 0 and "injected-fault" in run.stdout + run.stderr, run.text
            st = rig.status()["datasets"][rig.datasets[0]]
            assert st["last_error"]["code"] == "injected-fault", st
        faults += 1
        rig.faults_injected += 1
        rig.check(allow_snapshot_ahead=rig.backend == "mysql")
        rig.recover()
        rig.check(complete=True)
    return faults


def default_plan(backend: str) -> list[tuple[str, tuple[str, ...], int]]:
    """Kept short for the default run (every agent run costs ~1-3 s of interpreter start-up)."""
    if backend == "sqlite":
        return [(s, ("changes",), 1) for s in STEPS] + [(s, ("snapshot",), 1) for s in ("merge", "commit")]
    if backend == "mysql":  # its snapshot path commits the RENAME before the checkpoint: both windows
        return [(s, ("changes",), 1) for s in DB_STEPS] + [(s, ("snapshot",), 1) for s in DB_STEPS]
    return [(s, ("changes" if i % 2 else "snapshot",), 1) for i, s in enumerate(DB_STEPS)]


def delivered(kinds: tuple[str, ...]) -> int:
    """How many of the batches published together the agent receives: the hub lists from the latest
    snapshot on (a snapshot replaces what came before it), so ("changes", "snapshot") delivers one."""
    last_snapshot = max((i for i, k in enumerate(kinds) if k == "snapshot"), default=0)
    return len(kinds) - last_snapshot


def full_plan() -> list[tuple[str, tuple[str, ...], int]]:
    plan = []
    for s in STEPS:
        for kinds in (("changes",), ("snapshot",), ("changes", "changes"), ("snapshot", "changes"),
                      ("changes", "snapshot")):
            for nth in range(1, delivered(kinds) + 1):
                plan.append((s, kinds, nth))
    return plan


@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_sigkill_at_every_step(backend, make_rig):
    rig = make_rig(backend)
    n = sweep(rig, default_plan(backend))
    print(f"[kill-sweep {backend}] {n} SIGKILLs, {len(rig.runs)} agent runs")


@pytest.mark.slow
def test_exception_at_every_step(make_rig):
    rig = make_rig("sqlite")
    sweep(rig, [(s, ("changes",), 1) for s in STEPS[2:]], action="raise")


@pytest.mark.slow
@pytest.mark.parametrize("action", ["kill", "raise"])
@pytest.mark.parametrize("backend", BACKEND_PARAMS)
def test_every_step_every_occurrence(backend, action, make_rig):
    rig = make_rig(backend)
    n = sweep(rig, full_plan(), action)
    print(f"[step-sweep {backend} {action}] {n} faults, {len(rig.runs)} agent runs")
