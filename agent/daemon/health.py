"""Local health endpoints: /healthz (alive), /readyz (ready, each check with its reason), /metrics,
/status (the daemon's live per-dataset status, read by `edx-agent status`).

The stdlib's threading HTTP server in one daemon thread: a handful of requests a minute from a local
monitoring agent do not justify a web framework in the 前置机's process. It listens on loopback unless
the operator explicitly allows another address, because /metrics and /readyz describe the unit's
datasets. Answers are cached briefly (X-Road caches a pass for 2 s), so a monitoring storm cannot
turn into database load.
"""

from __future__ import annotations

import ipaddress
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import structlog

from ..errors import ConfigError

log = structlog.get_logger(__name__)

CACHE_S = 2.0


class HealthAddressRefused(ConfigError):
    code = "health-listen-not-loopback"
    message = "health.listen {detail} is not a loopback address"
    remedy = ("The health endpoints describe this unit's datasets; keep them on 127.0.0.1, or start "
              "`edx-agent run --health-allow-remote` if a firewall protects the port.")


def parse_listen(listen: str, allow_remote: bool = False) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"health.listen: {listen!r} is not HOST:PORT")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise HealthAddressRefused(repr(listen))
    return host, int(port)


class _Cache:
    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn, self.lock, self.at, self.value = fn, threading.Lock(), 0.0, None

    def get(self) -> Any:
        with self.lock:   # concurrent scrapes wait for one computation instead of each running it
            if self.value is None or time.monotonic() - self.at > CACHE_S:
                self.value, self.at = self.fn(), time.monotonic()
            return self.value


class HealthServer:
    """Serves the three endpoints from callables supplied by the daemon."""

    def __init__(self, listen: str, *, readiness: Callable[[], dict[str, Any]],
                 metrics: Callable[[], bytes], status: Callable[[], dict[str, Any]] | None = None,
                 allow_remote: bool = False) -> None:
        self.host, self.port = parse_listen(listen, allow_remote)
        self.readiness = _Cache(readiness)
        self.metrics = _Cache(metrics)
        self.status = status
        self.started = time.time()
        self.httpd: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "edx-agent-health"

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, {"ok": True, "uptime_s": round(time.time() - server.started, 1)})
                elif path == "/readyz":
                    doc = server.readiness.get()
                    self._send(200 if doc["ready"] else 503, doc)
                elif path == "/metrics":
                    body = server.metrics.get()
                    self._raw(200, body, "text/plain; version=0.0.4; charset=utf-8")
                elif path == "/status" and server.status is not None:
                    # live, not cached: `edx-agent status` shows the batch being applied (rows done, rows/s)
                    self._send(200, server.status())
                else:
                    self._send(404, {"error": "not found",
                                     "endpoints": ["/healthz", "/readyz", "/metrics", "/status"]})

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                self._raw(code, json.dumps(doc, ensure_ascii=False).encode(), "application/json")

            def _raw(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass   # scrapes every few seconds would drown the journal

        self.httpd = ThreadingHTTPServer((self.host, self.port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="health", daemon=True)
        self.thread.start()
        log.info("health_listening", address=f"{self.host}:{self.port}")

    def stop(self) -> None:
        if self.httpd:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.httpd = None
