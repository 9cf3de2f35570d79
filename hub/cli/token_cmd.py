"""``edx-hub token create``: a one-time enrolment token for a unit, printed alone on stdout."""

from __future__ import annotations

import argparse

from ..enrolment import create_token
from .common import add_store_options, context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("token", help="enrolment tokens")
    tsub = p.add_subparsers(dest="token_command", required=True, metavar="ACTION")
    c = tsub.add_parser("create", help="create a one-time token (grants the datasets to the unit)")
    add_store_options(c)
    c.add_argument("--unit", required=True, help="the unit (school, bureau) the agent belongs to")
    c.add_argument("--datasets", default="", help="comma-separated datasets to grant, e.g. A,B")
    c.add_argument("--ttl-minutes", type=int, default=30, help="validity (default 30 minutes)")
    c.set_defaults(func=run_create)


def run_create(args: argparse.Namespace) -> int:
    ctx = context(args)
    names = [d.strip() for d in args.datasets.split(",") if d.strip()]
    with ctx.engine.begin() as conn:
        token = create_token(conn, args.unit, names, args.ttl_minutes * 60)
    print(token)  # alone on stdout, so scripts can capture it
    return 0
