"""``edx-agent doctor``: online diagnosis step by step, each failure with its cause and fix."""

from __future__ import annotations

import json
from typing import Any

from ..client import HubClient, RetryPolicy
from ..config import load
from ..doctor import diagnose, render
from ..errors import EXIT_FAILED
from ..state import StateDir


def register(sub: Any) -> None:
    p = sub.add_parser("doctor", help="diagnose network, TLS, platform, clock, database and disk")
    p.set_defaults(func=run)


def client_for(cfg: Any) -> HubClient:
    state = StateDir(cfg.state_dir)
    once = RetryPolicy(attempts=1)
    if state.is_enrolled():
        enr = state.enrolment()
        return HubClient.from_config(cfg, agent_id=enr.agent_id, keys=state.load_keys(enr.key_id),
                                     base_url=cfg.hub.url or enr.hub_url, retry=once)
    return HubClient.from_config(cfg, retry=once)


def run_doctor(cfg: Any) -> Any:
    from ..runtime import open_connector

    return diagnose(cfg, connector_factory=lambda: open_connector(cfg), client_factory=lambda: client_for(cfg))


def run(args: Any) -> int:
    cfg = load(args.config)
    report = run_doctor(cfg)
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(render(report))
    return 0 if report.ok else EXIT_FAILED
