"""Per-dataset state in the daemon: sync runs, capped backoff on transient errors, stop on terminal ones.

States: ``ok`` (last run succeeded), ``retrying`` (a transient error; the next run is brought forward
or pushed back by the backoff), ``stopped`` (a terminal error; no more runs until the configuration is
reloaded, the platform sends a resync command, or the operator runs ``edx-agent sync --dataset D``),
``purged`` (retention removed its rows). A log line is written when the state or the error code
changes, not at every attempt: a hub that is down for hours costs one line, not thousands.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import structlog

from .. import audit
from ..client import RetryPolicy
from ..errors import AgentError, HubBusy, HubUnreachable, is_transient
from ..pipeline import BatchOutcome, sync_dataset
from ..state import now_iso

log = structlog.get_logger(__name__)

HUB_CODES = {HubUnreachable.code, HubBusy.code}


class StopRequested(BaseException):
    """Raised between two batches when the daemon is asked to stop (not an error: nothing is lost)."""


class InternalError(AgentError):
    code = "internal-error"
    message = "unexpected failure in the agent: {detail}"
    remedy = "Report it with the log lines around it; the dataset is stopped until the config is reloaded."


@dataclass
class Runner:
    """What the daemon knows about one granted dataset between runs."""

    dataset: str
    grant: dict[str, Any]
    interval: float
    state: str = "new"
    attempts: int = 0                 # consecutive transient failures
    error: AgentError | None = None
    since: float = field(default_factory=time.time)   # when the current state began
    last_success: float | None = None
    running_since: float | None = None
    last_written: float | None = None   # when status.json last got this dataset's success
    batches_this_run: int = 0

    def policy(self) -> RetryPolicy:
        # first retries come quickly (a deadlock, a blip); a long outage settles at one try per 5 minutes
        return RetryPolicy(base=min(2.0, self.interval), cap=max(300.0, min(self.interval, 900.0)),
                           max_retry_after=3600.0)


class Liveness:
    """Progress marks from the sync loop; the watchdog pings only while they keep coming."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: dict[str, float] = {}     # job -> monotonic time of its last progress
        self.last_done = time.monotonic()

    def begin(self, job: str) -> None:
        with self.lock:
            self.running[job] = time.monotonic()

    def progress(self, job: str) -> None:
        with self.lock:
            if job in self.running:
                self.running[job] = time.monotonic()

    def end(self, job: str) -> None:
        with self.lock:
            self.running.pop(job, None)
            self.last_done = time.monotonic()

    def stuck(self, limit: float) -> list[str]:
        now = time.monotonic()
        with self.lock:
            return [j for j, t in self.running.items() if now - t > limit]

    def idle(self) -> bool:
        with self.lock:
            return not self.running


class HubState:
    """Whether the hub answered recently; logs once per change of state and counts the failures."""

    def __init__(self, on_recover: Any = None) -> None:
        self.on_recover = on_recover
        self.up: bool | None = None
        self.since = time.time()
        self.last_ok: float | None = None
        self.failures = 0
        self.last_error: AgentError | None = None

    def ok(self) -> None:
        self.last_ok = time.time()
        recovered = self.up is False
        if recovered:
            log.info("hub_reachable_again", down_for_s=round(time.time() - self.since), failures=self.failures)
        if self.up is not True:
            self.up, self.since, self.failures = True, time.time(), 0
        if recovered and self.on_recover is not None:
            self.on_recover()

    def failed(self, err: AgentError) -> None:
        self.failures += 1
        self.last_error = err
        if self.up is not False:
            log.warning("hub_unreachable", code=err.code, error=str(err),
                        note="retrying with capped backoff; one line per change of state")
            self.up, self.since = False, time.time()


class DatasetSync:
    """Runs one dataset's sync and turns its outcome into state, status, metrics and audit records."""

    def __init__(self, service: Any) -> None:
        self.svc = service

    def run(self, runner: Runner, *, reason: str = "schedule") -> list[BatchOutcome]:
        """One sync run; returns the outcomes. Never raises an AgentError (it becomes state)."""
        svc = self.svc
        if runner.state in ("stopped", "purged") and reason == "schedule":
            return []
        job = f"sync:{runner.dataset}"
        svc.liveness.begin(job)
        runner.running_since, runner.batches_this_run = time.time(), 0
        outcomes: list[BatchOutcome] = []

        def progress(out: BatchOutcome) -> None:
            outcomes.append(out)
            runner.batches_this_run += 1
            svc.liveness.progress(job)
            svc.metrics.batch(out)
            if svc.stopping.is_set():
                raise StopRequested()
        try:
            with audit.correlation():
                sync_dataset(svc.ctx, runner.grant, progress=progress)
        except StopRequested:
            log.info("sync_interrupted_between_batches", dataset=runner.dataset, applied=len(outcomes))
        except AgentError as e:
            self.failed(runner, e)
        except Exception as e:  # noqa: BLE001 - translate at the seam, then decide like any error
            err = svc.ctx.connector.classify(e) if _from_database(e) else InternalError(f"{type(e).__name__}: {e}")
            if isinstance(err, InternalError):
                log.exception("sync_internal_error", dataset=runner.dataset)
            self.failed(runner, err)
        else:
            self.succeeded(runner, applied=len(outcomes))
        finally:
            runner.running_since = None
            svc.liveness.end(job)
        return outcomes

    def succeeded(self, runner: Runner, applied: int = 0) -> None:
        svc = self.svc
        svc.hub.ok()
        now = time.time()
        previous, runner.attempts, runner.error = runner.state, 0, None
        self.set_state(runner, "ok")
        if previous in ("retrying", "stopped"):
            log.info("dataset_recovered", dataset=runner.dataset, was=previous)
        # an idle poll changes nothing but the time: status.json (written with two fsyncs) gets it at
        # most once a minute, /metrics and heartbeats read it from memory at every poll
        if previous != "ok" or applied or runner.last_written is None or now - runner.last_written >= 60:
            svc.state_write(runner.dataset, state="ok", last_error=None, next_retry_at=None, attempts=0,
                            last_success_at=now_iso())
            runner.last_written = now
        runner.last_success = now

    def failed(self, runner: Runner, err: AgentError) -> None:
        svc = self.svc
        svc.metrics.error(runner.dataset, err.code)
        hub_side = err.code in HUB_CODES
        if hub_side:
            svc.hub.failed(err)
        changed = runner.error is None or runner.error.code != err.code
        runner.error = err
        entry = {**err.to_dict(), "at": now_iso()}
        if is_transient(err):
            delay = max(0.5, runner.policy().delay(runner.attempts, getattr(err, "retry_after", None)))
            runner.attempts += 1
            was = runner.state
            self.set_state(runner, "retrying")
            svc.reschedule(runner.dataset, delay)
            if changed or was != "retrying":
                # while the hub is down its own line says so; per-dataset lines would only repeat it
                (log.debug if hub_side else log.warning)(
                    "dataset_retrying", dataset=runner.dataset, code=err.code, error=str(err),
                    next_in_s=round(delay, 1))
            svc.state_write(runner.dataset, state="retrying", last_error=entry, attempts=runner.attempts,
                            next_retry_at=_iso_in(delay))
        else:
            self.set_state(runner, "stopped")
            svc.pause(runner.dataset)
            log.error("dataset_stopped", dataset=runner.dataset, code=err.code, error=str(err),
                      remedy=err.remedy_text,
                      resume="reload the config (SIGHUP), a resync from the platform, or "
                             f"`edx-agent sync --dataset {runner.dataset}`")
            svc.audit_record("dataset_stopped", outcome=err.code, dataset=runner.dataset)
            svc.state_write(runner.dataset, state="stopped", last_error=entry, next_retry_at=None)

    def set_state(self, runner: Runner, state: str) -> None:
        if runner.state != state:
            runner.state, runner.since = state, time.time()


def _from_database(exc: BaseException) -> bool:
    mod = type(exc).__module__ or ""
    return mod.startswith(("sqlalchemy", "sqlite3", "pymysql", "psycopg", "oracledb", "pyodbc"))


def _iso_in(seconds: float) -> str:
    import datetime as dt

    t = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    return t.isoformat(timespec="seconds")


def resolve_interval(cfg: Any, dataset: str, grant: dict[str, Any]) -> float:
    """[datasets.D].interval, else an explicit sync.interval, else the catalog's update interval
    (bounded by the default sync.interval, so a daily dataset is still polled every few minutes)."""
    ds = cfg.datasets.get(dataset)
    if ds is not None and ds.interval:
        return float(ds.interval)
    if "interval" in cfg.sync.model_fields_set:
        return float(cfg.sync.interval)
    declared = grant.get("update_interval_s")
    if declared:
        return float(min(max(float(declared), 10.0), cfg.sync.interval))
    return float(cfg.sync.interval)


def grant_is_active(grant: dict[str, Any]) -> bool:
    return grant.get("state", "active") == "active"

