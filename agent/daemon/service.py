"""The long-running service behind ``edx-agent run``: start-up checks, schedule, signals, reload, stop.

Threads and why. The main thread only waits for signals (Python runs handlers there) and turns them
into actions; APScheduler's BackgroundScheduler keeps time in its own thread and runs jobs in two
pools. The ``sync`` pool has exactly one worker: every job that touches the database or the pipeline
Context (dataset syncs, grant refresh, resync commands, retention, reload) runs there one after the
other, so there is one writer to the database, to status.json and to the spool, and a reload swaps the
Context between two jobs instead of under one. The ``default`` pool runs the rest (heartbeat,
watchdog tick, diagnostics command), so a long batch never delays a heartbeat; the doctor command
writes scratch tables, so it runs in the sync pool too.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import queue
import random
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import structlog
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from .. import audit as audit_mod
from ..client import HubClient, RetryPolicy
from ..config import AgentConfig, load
from ..errors import EXIT_SOFTWARE, EXIT_TEMPFAIL, AgentError, ConfigError, Terminal, is_transient
from ..runtime import build_context
from .datasets import HUB_CODES, DatasetSync, HubState, Liveness, Runner, grant_is_active, resolve_interval
from .heartbeat import CommandRunner, build_body
from .housekeeping import Housekeeping
from .metrics import Metrics
from .readiness import Readiness
from .sdnotify import Notifier

log = structlog.get_logger(__name__)
UTC = dt.timezone.utc


class SelftestFailed(Terminal, AgentError):
    code = "crypto-selftest-failed"
    message = "crypto known-answer test failed, refusing to open any batch: {detail}"
    remedy = ("The cryptography libraries of this installation are broken or substituted; reinstall the "
              "agent from the offline bundle and run `edx-agent selftest`.")
    exit_code = EXIT_SOFTWARE


class AlreadyRunning(AgentError):
    code = "daemon-already-running"
    message = "another `edx-agent run` holds {detail}"
    remedy = "Stop the other instance (systemctl stop edx-agent) before starting this one."
    exit_code = EXIT_TEMPFAIL


@dataclass(frozen=True)
class Options:
    config: str | None = None
    stop_timeout: float = 60.0        # below systemd's TimeoutStopSec (2 min in our unit)
    stuck_after: float = 7200.0       # a sync job without progress this long stops the watchdog pings
    health_allow_remote: bool = False
    housekeeping_every: float = 60.0
    summary_every: float = 900.0


def probe_database(connector: Any) -> None:
    """A real round trip to the database, errors translated into the tree."""
    try:
        connector.get_checkpoint("edx-probe")
    except AgentError:
        raise
    except Exception as e:  # noqa: BLE001 - the connector's seam decides what it means
        raise connector.classify(e) from None


class Service:
    def __init__(self, opts: Options, *, notifier: Notifier | None = None,
                 log_tail: Callable[[], list[str]] | None = None) -> None:
        self.opts = opts
        self.notifier = notifier or Notifier()
        self.log_tail = log_tail or (lambda: [])
        self.started = time.time()
        self.stopping = threading.Event()
        self.liveness = Liveness()
        self.hub = HubState(on_recover=self._hub_recovered)
        self.metrics = Metrics(self.snapshot)
        self.sync = DatasetSync(self)
        self.commands = CommandRunner(self)
        self.housekeeping = Housekeeping(self)
        self.readiness = Readiness(self)
        self.runners: dict[str, Runner] = {}
        self.grants: dict[str, dict[str, Any]] = {}
        self.cfg: AgentConfig = None  # type: ignore[assignment]
        self.ctx: Any = None
        self.audit: audit_mod.AuditLog = None  # type: ignore[assignment]
        self.audit_error: AgentError | None = None
        self.status_unwritten: set[str] = set()   # datasets whose last state could not be saved to status.json
        self.reload_refused: dict[str, Any] | None = None
        self.maintenance = False
        self.ready = False
        self.scheduler: BackgroundScheduler | None = None
        self.health: Any = None
        self.signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._term = False
        self._hub_client: HubClient | None = None
        self._lock_fd: int | None = None
        self.abandoned: list[str] = []

    # ------------------------------------------------------------------ start-up
    def start(self) -> None:
        """Config, lock, crypto self-test, health endpoint, keys and database; then READY and schedule."""
        self.cfg = load(self.opts.config)          # every problem listed; exit 78 through main()
        self.audit = audit_mod.for_config(self.cfg, via="daemon")
        self._take_lock()
        self._install_signals()
        self._selftest()
        self._start_health()
        self.ctx = self._connect()
        self.ready = True
        self.audit_record("daemon_started", config_digest=self.cfg.digest(), agent_id=self.ctx.agent_id)
        self._start_scheduler()
        self.notifier.ready(self.status_text())
        log.info("daemon_ready", agent_id=self.ctx.agent_id, datasets=sorted(self.runners),
                 config_digest=self.cfg.digest(), watchdog_s=self.notifier.watchdog_interval)

    def _take_lock(self) -> None:
        path = self.cfg.state_dir / "run.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(str(path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        from ..fsutil import remove_stale_temps
        removed = remove_stale_temps(self.cfg.state_dir)
        if removed:
            log.info("stale_temp_files_removed", files=removed, note="left by a writer killed before its rename")

    def _selftest(self) -> None:
        try:
            from ..selftest import run_selftest
        except ImportError:
            log.warning("selftest_unavailable", note="this build has no agent.selftest; start-up continues")
            return
        self.notifier.status("crypto self-test")
        failed = [(name, detail) for name, ok, detail in run_selftest() if not ok]
        if failed:
            self.audit_record("crypto_selftest", outcome=SelftestFailed.code, failed=[n for n, _ in failed])
            raise SelftestFailed("; ".join(f"{n}: {d}" for n, d in failed))
        log.info("crypto_selftest_passed")

    def _start_health(self) -> None:
        if not self.cfg.health.enabled:
            return
        from .health import HealthServer

        self.health = HealthServer(self.cfg.health.listen, readiness=self.readiness.evaluate,
                                   metrics=self.metrics.render, status=self.snapshot,
                                   allow_remote=self.opts.health_allow_remote)
        self.health.start()

    def _connect(self) -> Any:
        """Keys, hub client and a database probe; waits (with backoff) while the database is down."""
        policy, attempt, last = RetryPolicy(base=1.0, cap=60.0), 0, None
        while True:
            try:
                ctx = build_context(self.cfg, audit=self.audit_record)
                probe_database(ctx.connector)
                if last:
                    log.info("database_reachable")
                return ctx
            except AgentError as e:
                if not is_transient(e):
                    raise
                if last != e.code:
                    log.warning("waiting_for_database", code=e.code, error=str(e))
                last = e.code
                self.notifier.status(f"waiting for the database: [{e.code}] {e}"[:200])
                deadline = time.monotonic() + policy.delay(attempt)
                attempt += 1
                while time.monotonic() < deadline:
                    if self._term:
                        raise SystemExit(0)
                    time.sleep(0.1)

    # ------------------------------------------------------------------ schedule
    def _start_scheduler(self) -> None:
        self.scheduler = BackgroundScheduler(
            executors={"sync": ThreadPoolExecutor(1), "default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 30}, timezone=UTC)
        self.scheduler.add_listener(self._job_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
        try:
            grants = self.ctx.client.grants()
            self.hub.ok()
            self.ctx.state.save_grants(grants)
        except AgentError as e:
            grants = self.ctx.state.grants()
            (self.hub.failed if e.code in HUB_CODES else lambda _e: None)(e)
            log.warning("grants_from_cache", code=e.code, error=str(e), datasets=len(grants))
        self.reconcile(grants, initial=True)
        now = dt.datetime.now(UTC)
        s = self.scheduler
        s.add_job(self._grants_job, "interval", seconds=self.cfg.sync.interval, id="grants", executor="sync",
                  jitter=self._jitter(self.cfg.sync.interval))
        s.add_job(self._heartbeat_job, "interval", seconds=self.cfg.heartbeat.interval, id="heartbeat",
                  next_run_time=now, jitter=self._jitter(self.cfg.heartbeat.interval))
        s.add_job(self.housekeeping.run, "interval", seconds=self.opts.housekeeping_every, id="housekeeping",
                  executor="sync", next_run_time=now + dt.timedelta(seconds=2))
        tick = min(self.notifier.watchdog_interval or 5.0, 5.0)
        s.add_job(self._tick, "interval", seconds=tick, id="tick", next_run_time=now)
        s.start()
        if self.cfg.sync.long_poll:
            from .longpoll import LongPoll
            LongPoll(self).start()

    def _jitter(self, interval: float) -> float | None:
        # spread thousands of agents over the interval without ever moving a run by more than half of it
        j = min(self.cfg.sync.jitter, interval / 2)
        return j if j > 0 else None

    def reconcile(self, grants: list[dict[str, Any]], initial: bool = False) -> None:
        """Jobs for the active grants; retention for the ones that ended."""
        self.grants = {g["dataset"]: g for g in grants}
        now = dt.datetime.now(UTC)
        for g in grants:
            name = g["dataset"]
            ds = self.cfg.datasets.get(name)
            wanted = grant_is_active(g) and (ds is None or ds.enabled)
            if wanted and name not in self.runners:
                runner = Runner(name, g, resolve_interval(self.cfg, name, g))
                self.runners[name] = runner
                self.scheduler.add_job(self._sync_job, "interval", args=[name], seconds=runner.interval,
                                       id=f"sync:{name}", executor="sync", next_run_time=now,
                                       misfire_grace_time=max(30, int(runner.interval)),
                                       jitter=self._jitter(runner.interval), replace_existing=True)
                if not initial:
                    log.info("dataset_granted", dataset=name, interval_s=runner.interval)
            elif wanted:
                self.runners[name].grant = g
            elif name in self.runners:
                self.runners.pop(name)
                self._remove_job(f"sync:{name}")
                log.info("dataset_not_synced", dataset=name, grant=g.get("state"),
                         enabled=ds.enabled if ds else True)
        for name in [n for n in self.runners if n not in self.grants]:
            self.runners.pop(name)
            self._remove_job(f"sync:{name}")
            log.info("dataset_grant_gone", dataset=name)

    def _remove_job(self, job_id: str) -> None:
        try:
            self.scheduler.remove_job(job_id)
        except Exception:  # noqa: BLE001 - JobLookupError: already gone
            pass

    def _sync_job(self, dataset: str) -> None:
        runner = self.runners.get(dataset)
        if runner is not None and not self.stopping.is_set():
            self.sync.run(runner)

    def _grants_job(self) -> None:
        try:
            grants = self.ctx.client.grants()
        except AgentError as e:
            if e.code in HUB_CODES:
                self.hub.failed(e)
            else:
                log.warning("grants_refresh_failed", code=e.code, error=str(e))
            return
        self.hub.ok()
        self.ctx.state.save_grants(grants)
        self.reconcile(grants)
        self.housekeeping.retention(revoked_only=True)

    def _heartbeat_job(self) -> None:
        body = build_body(self)
        try:
            answer = self.hub_client().heartbeat(body)
        except AgentError as e:
            self.metrics.heartbeats.labels("failed").inc()
            if e.code in HUB_CODES:
                self.hub.failed(e)
            else:
                log.warning("heartbeat_refused", code=e.code, error=str(e))
            return
        self.metrics.heartbeats.labels("ok").inc()
        self.hub.ok()
        skew = (answer.get("server_time_ms") or body["clock_ms"]) - body["clock_ms"]
        self.housekeeping.note_clock_skew(skew / 1000.0)
        if answer.get("commands"):
            self.commands.dispatch(answer["commands"])

    def _hub_recovered(self) -> None:
        """Datasets waiting out a hub outage try again now instead of at the end of their backoff."""
        for name, r in list(self.runners.items()):
            if r.state == "retrying" and r.error is not None and r.error.code in HUB_CODES:
                # a little spread: the beats of thousands of agents already are, this keeps it so
                self.reschedule(name, random.uniform(0, min(r.interval, 5.0)))

    def _tick(self) -> None:
        """Watchdog ping, STATUS text, and resuming datasets an operator fixed by hand."""
        stuck = self.liveness.stuck(self.opts.stuck_after)
        if stuck:
            self.housekeeping.note_stuck(stuck)
            self.notifier.status(f"sync loop stuck: {', '.join(stuck)}")
            return   # no WATCHDOG=1: systemd restarts a loop that stopped making progress
        self.housekeeping.note_stuck([])
        self.notifier.watchdog()
        self.notifier.status(self.status_text())
        self.housekeeping.operator_resumes()

    def _job_event(self, event: Any) -> None:
        if event.code == EVENT_JOB_ERROR:
            log.error("job_failed", job=event.job_id, error=repr(event.exception))
        else:   # a run skipped because the previous one is still going: normal during a long batch
            self.metrics.errors.labels(event.job_id, "job-skipped").inc()

    # ------------------------------------------------------------------ helpers used by the jobs
    def hub_client(self) -> HubClient:
        """A client for heartbeats and command results: one attempt (the next beat is the retry)."""
        if self._hub_client is None:
            self._hub_client = HubClient.from_config(
                self.cfg, agent_id=self.ctx.agent_id, keys=self.ctx.keys[0],
                base_url=self.ctx.client.base_url, retry=RetryPolicy(attempts=1))
        return self._hub_client

    def submit_sync(self, fn: Callable[[], Any], name: str) -> None:
        self.scheduler.add_job(fn, executor="sync", id=f"{name}:{time.monotonic_ns()}", name=name,
                               misfire_grace_time=None)

    def submit_default(self, fn: Callable[[], Any], name: str) -> None:
        self.scheduler.add_job(fn, id=f"{name}:{time.monotonic_ns()}", name=name, misfire_grace_time=None)

    def reschedule(self, dataset: str, delay: float) -> None:
        self.scheduler.modify_job(f"sync:{dataset}",
                                  next_run_time=dt.datetime.now(UTC) + dt.timedelta(seconds=delay))

    def pause(self, dataset: str) -> None:
        self.scheduler.pause_job(f"sync:{dataset}")

    def resume(self, dataset: str, reason: str) -> None:
        runner = self.runners.get(dataset)
        if runner is None:
            return
        was = runner.state
        if was in ("stopped", "purged"):
            runner.state, runner.attempts, runner.error = "new", 0, None
            log.info("dataset_resumed", dataset=dataset, was=was, reason=reason)
            self.audit_record("dataset_resumed", dataset=dataset, reason=reason)
        self.scheduler.modify_job(f"sync:{dataset}", next_run_time=dt.datetime.now(UTC))

    def state_write(self, dataset: str, **fields: Any) -> None:
        try:
            self.ctx.state.update_status(dataset, **fields)
        except AgentError as e:  # a failing disk must neither undo the decision held in memory nor hide it
            log.error("status_write_failed", dataset=dataset, code=e.code, error=str(e))
            self.status_unwritten.add(dataset)
        else:
            self.status_unwritten.discard(dataset)

    def audit_record(self, event: str, **fields: Any) -> None:
        """The pipeline's and the daemon's audit callback: a failing audit log alarms, data keeps flowing."""
        try:
            self.audit.record(event, **fields)
        except AgentError as e:
            if self.audit_error is None or self.audit_error.code != e.code:
                log.error("audit_write_failed", code=e.code, error=str(e), remedy=e.remedy_text)
            self.audit_error = e
        else:
            if self.audit_error is not None:
                log.info("audit_writable_again")
            self.audit_error = None

    def recent_log_lines(self) -> list[str]:
        return self.log_tail()

    def snapshot(self) -> dict[str, Any]:
        return self.readiness.snapshot()

    def status_text(self) -> str:
        return self.readiness.status_text()

    # ------------------------------------------------------------------ signals, reload, stop
    def _install_signals(self) -> None:
        def handler(signum: int, _frame: Any) -> None:
            if signum in (signal.SIGTERM, signal.SIGINT):
                self._term = True
            self.signals.put(signum)   # SimpleQueue.put is safe inside a signal handler
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            signal.signal(sig, handler)

    def serve(self) -> int:
        """Wait for signals until asked to stop; return the exit code."""
        while True:
            try:
                sig = self.signals.get(timeout=0.5)
            except queue.Empty:
                continue
            if sig in (signal.SIGTERM, signal.SIGINT):
                return self.shutdown(signal.Signals(sig).name)
            if sig == signal.SIGHUP:
                self.request_reload()
            elif sig == signal.SIGUSR1:
                self.maintenance = not self.maintenance
                log.warning("maintenance_mode", on=self.maintenance, note="/readyz answers 503 while on")
                self.audit_record("maintenance_mode", on=self.maintenance)

    def request_reload(self) -> None:
        self.notifier.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            new = load(self.opts.config)
        except ConfigError as e:
            problems = list(getattr(e, "problems", None) or [str(e)])
            self.reload_refused = {"code": e.code, "problems": problems, "at": time.time()}
            log.error("config_reload_refused", code=e.code, problems=problems,
                      keeping=self.cfg.digest(), note="the running configuration stays in force")
            self.audit_record("config_reload", outcome=e.code, problems=problems)
            self.notifier.notify("READY=1", "STATUS=config reload refused, running on the previous one")
            return
        self.submit_sync(lambda: self._apply_config(new), "reload")

    def _apply_config(self, new: AgentConfig) -> None:
        old = self.cfg
        for key in ("agent.state_dir", "health.listen", "health.enabled"):
            a, b = (getattr(getattr(c, key.split(".")[0]), key.split(".")[1]) for c in (old, new))
            if a != b:
                log.warning("config_change_needs_restart", setting=key, running=a, configured=b)
        try:
            ctx = build_context(new, audit=self.audit_record)
        except AgentError as e:
            log.error("config_reload_failed", code=e.code, error=str(e), keeping=old.digest())
            self.audit_record("config_reload", outcome=e.code, error=str(e))
            self.notifier.notify("READY=1", f"STATUS=config reload failed: [{e.code}]")
            return
        old_ctx, self.ctx, self.cfg = self.ctx, ctx, new
        self.audit = audit_mod.for_config(new, via="daemon")
        self._hub_client, self.reload_refused = None, None
        for closer in (old_ctx.connector.close, old_ctx.client.close):
            closer()
        self.readiness.reset()
        self.scheduler.reschedule_job("heartbeat", trigger="interval", seconds=new.heartbeat.interval)
        for name, runner in list(self.runners.items()):
            runner.interval = resolve_interval(new, name, runner.grant)
            self.scheduler.reschedule_job(f"sync:{name}", trigger="interval", seconds=runner.interval,
                                          jitter=self._jitter(runner.interval))
            if runner.state == "purged":
                self.pause(name)   # retention removed its rows: only a resync brings them back
            else:
                self.resume(name, "config reloaded")
        self.reconcile(list(self.grants.values()))
        self.audit_record("config_reload", old_digest=old.digest(), new_digest=new.digest())
        log.info("config_reloaded", old_digest=old.digest(), new_digest=new.digest())
        self.notifier.notify("READY=1", f"STATUS={self.status_text()}")

    def shutdown(self, why: str) -> int:
        """Stop scheduling, let the current batch finish (or abandon it: the database rolls it back)."""
        self.stopping.set()
        self.notifier.notify("STOPPING=1", "STATUS=stopping")
        log.info("daemon_stopping", signal=why, running=sorted(self.liveness.running))
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        deadline = time.monotonic() + self.opts.stop_timeout
        while not self.liveness.idle() and time.monotonic() < deadline:
            time.sleep(0.05)
        abandoned = self.abandoned = sorted(self.liveness.running)
        self.audit_record("daemon_stopped", outcome="aborted" if abandoned else "ok", signal=why,
                          uptime_s=round(time.time() - self.started), abandoned=abandoned)
        if abandoned:
            log.warning("daemon_stop_abandons_work", jobs=abandoned,
                        note="the open transaction is rolled back by the database; the batch is applied "
                             "again from the spool at the next start")
        else:
            for closer in (self.ctx.connector.close, self.ctx.client.close):
                closer()
        if self.health is not None:
            self.health.stop()
        log.info("daemon_stopped", signal=why, abandoned=bool(abandoned))
        self.notifier.close()
        return 0
