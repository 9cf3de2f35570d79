"""``edx-hub grant add|revoke|list``: which unit receives which dataset (the outcome of 申请 → 审批)."""

from __future__ import annotations

import argparse

from .. import grants
from .common import add_store_options, context, fmt_ms, parse_time_ms, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("grant", help="grants of datasets to units")
    gsub = p.add_subparsers(dest="grant_command", required=True, metavar="ACTION")
    a = gsub.add_parser("add", help="grant a dataset to a unit (refused for 不予共享)")
    add_store_options(a)
    a.add_argument("--unit", required=True)
    a.add_argument("--dataset", required=True)
    a.add_argument("--start", help="ISO date/time the grant starts (default now)")
    a.add_argument("--end", help="ISO date/time the grant ends (default: open-ended)")
    a.set_defaults(func=run_add)
    r = gsub.add_parser("revoke", help="revoke: delivery stops, agents apply the retention policy")
    add_store_options(r)
    r.add_argument("--unit", required=True)
    r.add_argument("--dataset", required=True)
    r.set_defaults(func=run_revoke)
    ls = gsub.add_parser("list", help="list grants")
    add_store_options(ls)
    ls.add_argument("--unit")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)


def run_add(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.begin() as conn:
        print_json(grants.add_grant(conn, args.unit, args.dataset, start_ms=parse_time_ms(args.start),
                                    end_ms=parse_time_ms(args.end)))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.begin() as conn:
        print_json(grants.revoke_grant(conn, args.unit, args.dataset))
    return 0


def run_list(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.connect() as conn:
        rows = grants.list_grants(conn, args.unit)
    if args.json:
        print_json(rows)
        return 0
    print(f"{'UNIT':28} {'DATASET':24} {'STATE':8} {'START':19}  END")
    for g in rows:
        print(f"{g['unit']:28} {g['dataset']:24} {g['effective']:8} {fmt_ms(g['start_ms']):19}  {fmt_ms(g['end_ms'])}")
    return 0
