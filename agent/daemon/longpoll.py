"""Long-poll (``[sync] long_poll = true``): wait at the hub for new batches, so one is applied within
seconds instead of at the dataset's next interval.

One thread, one request at a time for all datasets: ``GET /v1/batches/wait?cursor=D:SEQ…`` answers as
soon as a dataset has a batch after the agent's last applied seq (or after ``long_poll_wait`` seconds
with nothing). A dataset that is ready gets its sync job run now; the scheduled interval stays as the
safety net, so a lost answer or a hub without the endpoint only costs latency. Network errors back off
(1 s doubling to 60 s) with a fresh client each time (so a rotated key is picked up); an answer saying
the hub does not offer long-poll (404) turns it off with one log line. Turning it on or off takes a restart.
"""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import structlog

from ..errors import AgentError

log = structlog.get_logger("edx_agent.daemon")
UTC = dt.timezone.utc
MAX_BACKOFF = 60.0
UNSUPPORTED = ("not-found", "hub-protocol-error")   # an older hub: 404, or an answer it does not document


class LongPoll:
    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self.seen: dict[str, int] = {}     # dataset -> latest seq already handed to its sync job
        self.thread: threading.Thread | None = None
        self._client: Any = None

    def client(self) -> Any:
        """Its own client (a held connection must not queue heartbeats behind it); one attempt per call."""
        if self._client is None:
            from ..client import HubClient, RetryPolicy
            svc = self.svc
            self._client = HubClient.from_config(svc.cfg, agent_id=svc.ctx.agent_id, keys=svc.ctx.keys[0],
                                                 base_url=svc.ctx.client.base_url, retry=RetryPolicy(attempts=1))
        return self._client

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop, name="edx-long-poll", daemon=True)
        self.thread.start()
        log.info("long_poll_on", wait_s=self.svc.cfg.sync.long_poll_wait)

    def cursors(self) -> dict[str, int]:
        status = self.svc.ctx.state.status().get("datasets", {})
        out = {}
        for name, runner in list(self.svc.runners.items()):
            if runner.state in ("stopped", "purged"):
                continue   # a terminal error waits for the operator, not for new batches
            applied = int((status.get(name) or {}).get("last_seq") or 0)
            out[name] = max(applied, self.seen.get(name, 0))
        return out

    def loop(self) -> None:
        svc, backoff = self.svc, 1.0
        while not svc.stopping.is_set():
            cursors = self.cursors()
            if not cursors:
                svc.stopping.wait(5.0)
                continue
            try:
                ready = self.client().wait_batches(cursors, svc.cfg.sync.long_poll_wait)
                backoff = 1.0
            except AgentError as e:
                if e.code in UNSUPPORTED:
                    log.warning("long_poll_off", code=e.code, error=str(e),
                                note="the hub has no long-poll; batches arrive at each sync interval")
                    return
                # anything else (network, a busy hub, a key just rotated) is retried with a fresh client
                log.info("long_poll_retry", code=e.code, in_s=backoff)
                self._client = None   # a fresh connection next time
                svc.stopping.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            busy = False
            for name, latest in ready.items():
                busy |= not self.trigger(name, int(latest))
            if busy:
                svc.stopping.wait(1.0)   # its sync is running: ask again once it may have finished

    def trigger(self, dataset: str, latest: int) -> bool:
        """Run the dataset's sync now; False when it is running already (it is asked again later)."""
        runner = self.svc.runners.get(dataset)
        if runner is None:
            return True
        if runner.running_since:
            return False
        self.seen[dataset] = latest
        try:
            self.svc.scheduler.modify_job(f"sync:{dataset}", next_run_time=dt.datetime.now(UTC))
        except Exception:  # noqa: BLE001 - JobLookupError: the grant ended meanwhile
            return True
        log.info("long_poll_batch", dataset=dataset, latest_seq=latest)
        return True


__all__ = ["LongPoll"]
