"""``edx-hub serve``: run the hub's HTTP API (TLS, or plain HTTP on loopback only) with uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import os

from agent.errors import ConfigError

from ..context import ENV_DATA_DIR, ENV_DB_URL, HubContext
from .common import add_store_options, context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the hub's HTTP API")
    add_store_options(p)
    p.add_argument("--listen", default="127.0.0.1:8443", help="HOST:PORT (default 127.0.0.1:8443)")
    p.add_argument("--tls-cert", help="PEM certificate chain (required unless listening on loopback)")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--heartbeat-interval", type=int, default=30,
                   help="seconds between agent heartbeats, for the fleet's Online/Offline states")
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--graceful-timeout", type=int, default=5,
                   help="seconds to let requests in flight finish on SIGTERM (default 5)")
    p.set_defaults(func=run)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ConfigError(f"--listen {listen!r}: expected HOST:PORT, e.g. 127.0.0.1:8443")
    return host.strip("[]"), int(port)


def app_factory():  # type: ignore[no-untyped-def]
    """Entry for uvicorn workers (each process builds its own context from the environment)."""
    from ..api import create_app

    ctx = HubContext.from_args(os.environ.get(ENV_DATA_DIR), os.environ.get(ENV_DB_URL))
    ctx.settings.heartbeat_interval_s = int(os.environ.get("EDX_HUB_HEARTBEAT_INTERVAL", "30"))
    return create_app(ctx)


def run(args: argparse.Namespace) -> int:
    import uvicorn

    host, port = split_listen(args.listen)
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    if not args.tls_cert and not is_loopback(host):
        raise ConfigError(f"refusing plain HTTP on {host}: agents' traffic must be encrypted",
                          remedy="Pass --tls-cert and --tls-key, or listen on 127.0.0.1 behind a TLS proxy.")
    ctx = context(args)
    ctx.init()  # keys, admin token and tables exist before the first request
    os.environ[ENV_DATA_DIR] = str(ctx.data_dir)
    os.environ[ENV_DB_URL] = str(ctx.db_url)
    os.environ["EDX_HUB_HEARTBEAT_INTERVAL"] = str(args.heartbeat_interval)
    uvicorn.run("hub.cli.serve_cmd:app_factory", factory=True, host=host, port=port, workers=args.workers,
                ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key, access_log=args.access_log,
                log_level="warning", timeout_keep_alive=30, timeout_graceful_shutdown=args.graceful_timeout)
    return 0
