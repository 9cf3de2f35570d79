"""Prometheus metrics of the daemon: counters fed by the sync loop, gauges read at scrape time.

A private registry (not the process-global one) so that tests and a second service in one process
never collide, and so /metrics shows only what this agent means. Gauges that describe state (lag,
last success, spool usage, dataset state) are computed when scraped from the daemon's own records,
which costs nothing between scrapes on an idle agent.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .. import __version__

STATES = ("new", "ok", "retrying", "stopped", "purged")


class Metrics:
    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.batches = Counter("edx_batches", "Batches handled", ["dataset", "outcome"], registry=r)
        self.rows = Counter("edx_rows", "Rows applied (inserted, updated or deleted)", ["dataset"], registry=r)
        self.quarantined = Counter("edx_rows_quarantined", "Rows set aside in edx_quarantine", ["dataset"],
                                   registry=r)
        self.bytes = Counter("edx_bytes", "Sealed batch bytes applied", ["dataset"], registry=r)
        self.errors = Counter("edx_errors", "Sync errors by stable error code", ["dataset", "code"], registry=r)
        self.heartbeats = Counter("edx_heartbeats", "Heartbeats sent", ["outcome"], registry=r)
        self.commands = Counter("edx_commands", "Platform commands executed", ["type", "outcome"], registry=r)
        self.purges = Counter("edx_purges", "Retention purges", ["dataset", "policy"], registry=r)
        r.register(_StateCollector(snapshot))

    def batch(self, out: Any) -> None:
        self.batches.labels(out.dataset, "duplicate" if out.duplicate else "applied").inc()
        if not out.duplicate:
            self.rows.labels(out.dataset).inc(out.rows)
            self.quarantined.labels(out.dataset).inc(out.quarantined)
            self.bytes.labels(out.dataset).inc(out.bytes)

    def error(self, dataset: str, code: str) -> None:
        self.errors.labels(dataset, code).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges computed at scrape time from the daemon's snapshot (see Service.snapshot)."""

    def __init__(self, snapshot: Callable[[], dict[str, Any]]) -> None:
        self.snapshot = snapshot

    def describe(self) -> Iterable[Metric]:
        return []   # gauges vary with the granted datasets; nothing to pre-declare

    def collect(self) -> Iterable[Metric]:
        snap = self.snapshot()
        now = time.time()
        info = GaugeMetricFamily("edx_agent_info", "Agent version and config digest", labels=["version", "config_digest"])
        info.add_metric([__version__, snap.get("config_digest", "")], 1)
        yield info
        yield GaugeMetricFamily("edx_uptime_seconds", "Seconds since the daemon started", value=snap["uptime_s"])
        yield GaugeMetricFamily("edx_hub_up", "1 if the hub answered the last call", value=1 if snap["hub_up"] else 0)
        yield GaugeMetricFamily("edx_hub_last_ok_timestamp_seconds", "Last successful call to the hub",
                                value=snap.get("hub_last_ok") or 0)
        state = GaugeMetricFamily("edx_dataset_state", "1 for the dataset's current state", labels=["dataset", "state"])
        lag = GaugeMetricFamily("edx_dataset_lag_seconds", "Age of the newest applied batch", labels=["dataset"])
        succ = GaugeMetricFamily("edx_dataset_last_success_timestamp_seconds",
                                 "Last sync run that ended without error", labels=["dataset"])
        seq = GaugeMetricFamily("edx_dataset_last_seq", "Sequence number of the last applied batch", labels=["dataset"])
        stale = GaugeMetricFamily("edx_dataset_stale", "1 if older than its update interval plus grace",
                                  labels=["dataset"])
        for d in snap["datasets"]:
            name = d["dataset"]
            for s in STATES:
                state.add_metric([name, s], 1 if d["state"] == s else 0)
            if d.get("last_applied_ts"):
                lag.add_metric([name], max(0.0, now - d["last_applied_ts"]))
            if d.get("last_success_ts"):
                succ.add_metric([name], d["last_success_ts"])
            if d.get("last_seq") is not None:
                seq.add_metric([name], d["last_seq"])
            stale.add_metric([name], 1 if d.get("freshness") == "stale" else 0)
        yield from (state, lag, succ, seq, stale)
        spool = snap.get("spool") or {}
        for key, help_ in (("used_bytes", "Bytes held in the spool"), ("quota_bytes", "Spool quota"),
                           ("disk_free_bytes", "Free bytes on the spool's filesystem")):
            if key in spool:
                yield GaugeMetricFamily(f"edx_spool_{key}", help_, value=spool[key])
