"""``edx-agent run``: the long-running service that systemd starts (Type=notify, watchdog, signals).

Exit codes: 0 after SIGTERM/SIGINT (also when the current batch had to be abandoned: the database rolls
its transaction back and the batch is applied again from the spool); 78 for an invalid configuration
(every problem listed; ``RestartPreventExitStatus=78`` stops systemd from restart-looping on it); 70
when the crypto self-test fails; 75 when another instance already runs; the error's own code when
start-up meets a terminal database error.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import sys
import threading
import time
from typing import Any


from .. import logs
from ..config import parse_duration


class TailStream:
    """The log stream (stdout, read by journald) that also keeps the last lines for diagnostics bundles."""

    def __init__(self, stream: Any, keep: int = 500) -> None:
        self.stream = stream
        self.tail: collections.deque[str] = collections.deque(maxlen=keep)
        self._partial = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self.stream.write(text)
            if text.endswith("\n"):
                self.stream.flush()   # one line at a time to journald, even when stdout is a pipe or file
            data = self._partial + text
            *complete, self._partial = data.split("\n")
            self.tail.extend(complete)
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return self.stream.isatty()

    def lines(self) -> list[str]:
        with self._lock:
            return list(self.tail)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def register(sub: Any) -> None:
    p = sub.add_parser("run", help="run as a service: scheduled sync, heartbeats, health endpoints (systemd)")
    p.add_argument("--stop-timeout", type=_duration, default="60s",
                   help="on SIGTERM, how long the current batch may take to finish (keep it below "
                        "systemd's TimeoutStopSec; default 60s)")
    p.add_argument("--stuck-after", type=_duration, default="2h",
                   help="a sync job without progress this long stops the watchdog pings (default 2h)")
    p.add_argument("--health-allow-remote", action="store_true",
                   help="allow health.listen on a non-loopback address")
    p.add_argument("--housekeeping-every", type=_duration, default="60s", help=argparse.SUPPRESS)
    p.add_argument("--summary-every", type=_duration, default="15m",
                   help="how often a summary line is logged (default 15m)")
    p.add_argument("--daemon-log-level", default="info", help="log level of the service (default info)")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    from ..daemon.service import Options, Service

    fmt = args.log_format
    if fmt == "auto":
        try:
            from ..config import load
            fmt = load(args.config).agent.log_format
        except Exception:  # noqa: BLE001 - the service reports config problems itself, below
            pass
    stream = TailStream(sys.stdout)
    logs.setup(fmt, args.daemon_log_level, stream=stream)   # library records too, one line each
    logging.getLogger("apscheduler").setLevel(logging.ERROR)   # skips and misfires are counted as metrics

    svc = Service(Options(config=args.config, stop_timeout=args.stop_timeout, stuck_after=args.stuck_after,
                          health_allow_remote=args.health_allow_remote,
                          housekeeping_every=args.housekeeping_every, summary_every=args.summary_every),
                  log_tail=stream.lines)
    try:
        svc.start()
    except SystemExit:
        return 0   # SIGTERM while waiting for the database at start-up
    except BaseException as e:
        if svc.audit is not None:
            svc.audit_record("daemon_start_failed", outcome=getattr(e, "code", type(e).__name__))
        raise
    code = svc.serve()
    sys.stdout.flush()
    # a worker still inside a batch (or a heartbeat on a black-holed network) would keep the interpreter
    # from exiting; systemd's stop timeout is a promise, so leave without waiting for it
    if svc.abandoned:
        sys.stderr.flush()
        os._exit(code)
    deadline = time.monotonic() + 1.0
    for t in threading.enumerate():
        if t is not threading.main_thread() and not t.daemon:
            t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() and not t.daemon and t is not threading.main_thread() for t in threading.enumerate()):
        sys.stderr.flush()
        os._exit(code)
    return code
