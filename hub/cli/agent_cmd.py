"""``edx-hub agent list|disable|enable|revoke|command``: the enrolled agents."""

from __future__ import annotations

import argparse

from ..errors import AgentNotFound
from .. import enrolment, status
from .common import add_store_options, context, fmt_ms, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("agent", help="enrolled agents")
    asub = p.add_subparsers(dest="agent_command", required=True, metavar="ACTION")
    ls = asub.add_parser("list", help="list agents")
    add_store_options(ls)
    ls.add_argument("--unit")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    for action, help_ in (("disable", "refuse the agent until enabled again"),
                          ("enable", "accept a disabled agent again"),
                          ("revoke", "refuse the agent for good (decommissioned or compromised)")):
        a = asub.add_parser(action, help=help_)
        add_store_options(a)
        a.add_argument("agent_id")
        a.set_defaults(func=run_state, state={"disable": "disabled", "enable": "active", "revoke": "revoked"}[action])
    c = asub.add_parser("command", help="queue a command for the agent's next heartbeat")
    add_store_options(c)
    c.add_argument("agent_id")
    c.add_argument("--type", required=True, choices=status.COMMAND_TYPES)
    c.add_argument("--dataset")
    c.set_defaults(func=run_command)


def run_list(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.connect() as conn:
        rows = enrolment.list_agents(conn, args.unit)
    if args.json:
        print_json([{k: v for k, v in r.items() if k not in ("keys_json", "heartbeat_json")} for r in rows])
        return 0
    print(f"{'AGENT':22} {'UNIT':28} {'STATE':9} {'VERSION':10} {'LAST SEEN':19}  HOST")
    for r in rows:
        print(f"{r['agent_id']:22} {r['unit'][:28]:28} {r['state']:9} {r['agent_version'][:10]:10} "
              f"{fmt_ms(r['last_seen_ms']):19}  {r['hostname']}")
    return 0


def run_state(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.begin() as conn:
        row = enrolment.set_agent_state(conn, args.agent_id, args.state)
    print(f"{row['agent_id']}: {row['state']}")
    return 0


def run_command(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.begin() as conn:
        enrolment.get_agent(conn, args.agent_id, AgentNotFound)
        print(status.queue_command(conn, args.agent_id, args.type, args.dataset))
    return 0
