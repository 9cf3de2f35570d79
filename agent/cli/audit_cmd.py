"""``edx-agent audit verify``: check the audit log's hash chain across all its files, offline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import audit
from ..config import load
from ..errors import EXIT_USAGE


def register(sub: Any) -> None:
    p = sub.add_parser("audit", help="audit log tools (verify the hash chain)")
    asub = p.add_subparsers(dest="audit_command", metavar="ACTION")
    v = asub.add_parser("verify", help="verify the whole hash chain and name the first broken record")
    v.add_argument("--dir", default=None,
                   help="audit directory (default: <state_dir>/audit of the configuration); "
                        "lets an auditor check a copy without the agent's configuration")
    v.add_argument("--expect-head", default=None, metavar="SEQ:HASH",
                   help="a head recorded elsewhere (e.g. the platform's copy from heartbeats): "
                        "detects records removed from the end even if audit.head was rewritten")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    if getattr(args, "audit_command", None) != "verify":
        print("usage: edx-agent audit verify [--dir DIR] [--expect-head SEQ:HASH]")
        return EXIT_USAGE
    root = Path(args.dir) if args.dir else audit.audit_dir(load(args.config))
    expect = None
    if args.expect_head:
        seq, _, digest = args.expect_head.partition(":")
        if not seq.isdigit() or len(digest) < 16:
            print("--expect-head must look like 1234:9f86d081884c7d65...")
            return EXIT_USAGE
        expect = (int(seq), digest.lower())
    verdict = audit.verify(root, expect_head=expect)
    if args.json:
        print(json.dumps(verdict.to_dict(), ensure_ascii=False))
    elif verdict.ok:
        span = f"{verdict.first_seq}..{verdict.last_seq}" if verdict.records else "none"
        print(f"✓ audit chain intact: {verdict.records} record(s) (sequence {span}) in "
              f"{len(verdict.files)} file(s) under {root}")
        if verdict.last_hash:
            print(f"  head {verdict.last_seq}:{verdict.last_hash}")
    else:
        b = verdict.broken or {}
        where = f"{b.get('file')}" + (f" line {b['line']}" if b.get("line") else "")
        print(f"✗ audit chain broken at {where}" + (f" (sequence {b['seq']})" if b.get("seq") else ""))
        print(f"  {b.get('reason')}")
        print(f"  {verdict.records} record(s) before it verified")
        print(f"  what to do: {audit.AuditChainBroken.remedy}")
    return 0 if verdict.ok else audit.AuditChainBroken.exit_code
