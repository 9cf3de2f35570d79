"""Named fault points for the reliability tests: kill, raise or hold the process at a named step.

``faults.point("merge")`` does nothing unless the environment variable ``EDX_FAULTS`` was set when
this module was imported (it is read once, so a point costs one global lookup in production). The
variable is a comma-separated list of ``NAME:ACTION[@N]`` entries; NAME may be ``*`` for every point
and ``@N`` fires on the N-th time the point is reached in this process (default 1; ``@*`` every time):

    kill    SIGKILL this process (a crash: no finally blocks, no flush, no atexit)
    raise   raise InjectedFault (a Transient AgentError), as an unexpected failure at that step would
    hold    create ``$EDX_FAULTS_DIR/hold.NAME.PID`` and wait until the test removes it (at most
            ``EDX_FAULTS_HOLD_SECONDS``, default 120), so a test can cut a link, restart a database,
            fill a disk or turn on an fsync fault at exactly that step
    trace   append ``NAME`` to ``$EDX_FAULTS_DIR/trace.PID`` (counts how often each point is reached)

The steps of one batch, in order: download_chunk, downloaded, verify, decrypt, staging_load, merge,
checkpoint_write, commit, committed, ack, acked, spool_cleanup (tests/reliability/ and
docs/reliability.md).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from .errors import AgentError, Transient

STEPS = ("download_chunk", "downloaded", "verify", "decrypt", "staging_load", "merge", "checkpoint_write",
         "commit", "committed", "ack", "acked", "spool_cleanup")
ACTIONS = ("kill", "raise", "hold", "trace")


class InjectedFault(Transient, AgentError):
    code = "injected-fault"
    message = "fault injected at {detail} (EDX_FAULTS)"
    remedy = "Only the reliability tests set EDX_FAULTS; unset it."


def parse(spec: str) -> list[tuple[str, str, int]]:
    """``"merge:kill@2,*:trace"`` -> [("merge", "kill", 2), ("*", "trace", 0)]; 0 means every time."""
    plan = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, _, rest = entry.partition(":")
        action, _, nth = rest.partition("@")
        if not name or action not in ACTIONS:
            raise ValueError(f"EDX_FAULTS entry {entry!r}: expected NAME:{'|'.join(ACTIONS)}[@N]")
        n = 0 if nth == "*" or (action == "trace" and not nth) else int(nth or 1)
        plan.append((name, action, n))
    return plan


_PLAN = parse(os.environ["EDX_FAULTS"]) if os.environ.get("EDX_FAULTS") else None
_DIR = Path(os.environ.get("EDX_FAULTS_DIR", "."))
_HOLD_S = float(os.environ.get("EDX_FAULTS_HOLD_SECONDS", "120"))
_hits: dict[str, int] = {}


def point(name: str) -> None:
    """Mark the named step; acts only when EDX_FAULTS names it (see the module docstring)."""
    if _PLAN is None:
        return
    _fire(name)


def _fire(name: str) -> None:
    count = _hits[name] = _hits.get(name, 0) + 1
    for target, action, n in _PLAN:  # type: ignore[union-attr]
        if target not in (name, "*") or (n and n != count):
            continue
        if action == "trace":
            with open(_DIR / f"trace.{os.getpid()}", "a", encoding="utf-8") as f:
                f.write(name + "\n")
        elif action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)  # not reached: SIGKILL cannot be caught
        elif action == "raise":
            raise InjectedFault(f"{name}#{count}")
        elif action == "hold":
            flag = _DIR / f"hold.{name}.{os.getpid()}"
            flag.write_text(str(count))
            deadline = time.monotonic() + _HOLD_S
            while flag.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
