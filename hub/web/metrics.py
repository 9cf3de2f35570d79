"""Prometheus metrics at /metrics (admin token): fleet and catalog gauges from the store, HTTP figures per process.

Fleet gauges are computed at scrape time from the store, so every hub instance reports the same fleet
and Prometheus may scrape any of them; request counters and latencies are per process, as usual.
Per-agent series carry only ``agent``/``unit`` labels (about 3 series per agent), keeping a 10,000-agent
fleet at a size Prometheus handles comfortably.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api.auth import admin_auth
from ..context import HubContext
from ..fleet import STATES, fleet

router = APIRouter(tags=["fleet"])


class FleetCollector:
    """Collects fleet and dataset gauges from the store on each scrape."""

    def __init__(self, ctx: HubContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Any]:
        doc = fleet(self.ctx)
        by_state = GaugeMetricFamily("edx_hub_agents", "Enrolled agents by fleet state", labels=["state"])
        for s in STATES:
            by_state.add_metric([s], doc["summary"][s])
        yield by_state
        seen = GaugeMetricFamily("edx_hub_agent_last_heartbeat_timestamp_seconds",
                                 "Unix time of the agent's last heartbeat", labels=["agent", "unit"])
        stale = GaugeMetricFamily("edx_hub_agent_stale_datasets",
                                  "Granted datasets older than their declared update interval at the agent",
                                  labels=["agent", "unit"])
        lag = GaugeMetricFamily("edx_hub_agent_max_lag_batches", "Largest number of batches the agent lacks",
                                labels=["agent", "unit"])
        for a in doc["agents"]:
            labels = [a["agent_id"], a["unit"]]
            if a["last_seen_ms"]:
                seen.add_metric(labels, a["last_seen_ms"] / 1000)
            stale.add_metric(labels, sum(1 for d in a["datasets"] if d["freshness"] == "stale"))
            lag.add_metric(labels, max((d["lag_batches"] for d in a["datasets"]), default=0))
        yield seen
        yield stale
        yield lag
        latest = GaugeMetricFamily("edx_hub_dataset_latest_seq", "Latest published batch sequence", labels=["dataset"])
        rows = GaugeMetricFamily("edx_hub_dataset_rows", "Rows in the dataset's current state", labels=["dataset"])
        for d in doc["datasets"]:
            latest.add_metric([d["name"]], d["latest_seq"])
            rows.add_metric([d["name"]], d["rows"])
        yield latest
        yield rows


class HttpMetrics:
    """Pure ASGI middleware counting requests and timing them by route template (not raw path: bounded labels)."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("edx_hub_http_requests", "HTTP requests handled", ["route", "method", "status"],
                                registry=registry)
        self.latency = Histogram("edx_hub_http_request_duration_seconds", "Time to answer an HTTP request",
                                 ["route", "method"], registry=registry,
                                 buckets=(.005, .01, .025, .05, .1, .2, .5, 1, 2.5, 5, 10))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = [500]

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.requests.labels(name, scope["method"], str(status[0])).inc()
            self.latency.labels(name, scope["method"]).observe(time.perf_counter() - start)


def install(app: Any, ctx: HubContext) -> None:
    registry = CollectorRegistry()
    registry.register(FleetCollector(ctx))  # type: ignore[arg-type]
    app.state.metrics_registry = registry
    app.add_middleware(HttpMetrics, registry=registry)


@router.get("/metrics", dependencies=[Depends(admin_auth)], include_in_schema=False)
async def metrics(request: Request) -> Response:
    data = await run_in_threadpool(generate_latest, request.app.state.metrics_registry)
    return Response(data, media_type=CONTENT_TYPE_LATEST)
