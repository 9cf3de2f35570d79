"""``edx-hub admin-token``: print the bearer token for /admin/v1 and /fleet (created on first use)."""

from __future__ import annotations

import argparse

from .common import add_store_options, context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("admin-token", help="print the admin bearer token")
    add_store_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(context(args).admin_token)
    return 0
