"""``edx-hub gc``: delete payloads and sealed envelopes that a later snapshot superseded (hub/gc.py).

Run it daily (cron or a systemd timer); ``--dry-run`` shows what it would free.
"""

from __future__ import annotations

import argparse

from agent.config import parse_duration

from ..gc import DEFAULT_GRACE_S, collect
from .common import add_store_options, context, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("gc", help="delete payloads and envelopes superseded by a snapshot (frees disk)")
    add_store_options(p)
    p.add_argument("--grace", type=parse_duration, default=float(DEFAULT_GRACE_S),
                   help="only snapshots published longer ago than this (default 24h)")
    p.add_argument("--dry-run", action="store_true", help="report what would be deleted; delete nothing")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = collect(context(args), grace_s=args.grace, dry_run=args.dry_run)
    if args.json:
        print_json(out)
        return 0
    verb = "would free" if args.dry_run else "freed"
    for name, d in sorted(out["datasets"].items()):
        print(f"{name}: before snapshot #{d['before_snapshot']}: {d['payloads']} payload(s), "
              f"{d['envelopes']} envelope(s), {d['bytes'] / 2**20:.1f} MiB")
    print(f"{verb} {out['bytes'] / 2**20:.1f} MiB: {out['payloads']} payload(s), {out['envelopes']} envelope(s)")
    return 0
