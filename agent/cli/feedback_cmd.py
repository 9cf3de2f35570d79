"""``edx-agent feedback`` (问题反馈) and ``edx-agent request`` (需求征集): messages to the data provider."""

from __future__ import annotations

from typing import Any

from ..client import HubClient
from ..config import load
from ..state import StateDir


def register(sub: Any) -> None:
    p = sub.add_parser("feedback", help="report a data-quality problem in a dataset to its provider (问题反馈)")
    p.add_argument("dataset")
    p.add_argument("--key", action="append", default=[], help="primary key of a row concerned (repeatable)")
    p.add_argument("--message", required=True)
    p.set_defaults(func=run_feedback)
    r = sub.add_parser("request", help="ask the platform for new data (需求征集)")
    r.add_argument("--message", required=True)
    r.set_defaults(func=run_request)


def _client(cfg: Any) -> HubClient:
    state = StateDir(cfg.state_dir)
    enr = state.enrolment()
    return HubClient.from_config(cfg, agent_id=enr.agent_id, keys=state.load_keys(enr.key_id),
                                 base_url=cfg.hub.url or enr.hub_url)


def run_feedback(args: Any) -> int:
    cfg = load(args.config)
    ans = _client(cfg).feedback({"dataset": args.dataset, "keys": args.key, "message": args.message})
    print(f"feedback sent (id {ans.get('id', '?')})")
    return 0


def run_request(args: Any) -> int:
    cfg = load(args.config)
    ans = _client(cfg).data_request(args.message)
    print(f"request sent (id {ans.get('id', '?')})")
    return 0
