"""``edx-agent receipts verify``: check offline every receipt this agent signed for applied batches."""

from __future__ import annotations

import json
from typing import Any

from .. import envelope
from ..config import load
from ..errors import EXIT_DATAERR
from ..state import StateDir


def register(sub: Any) -> None:
    p = sub.add_parser("receipts", help="verify the signed receipts of applied batches offline")
    p.add_argument("action", choices=["verify", "list"])
    p.set_defaults(func=run)


def run(args: Any) -> int:
    cfg = load(args.config)
    state = StateDir(cfg.state_dir)
    keys = {k.name[:-5]: state.load_keys(k.name[:-5]).public()
            for k in state.keys_dir.glob("*.json") if k.name != "current.json"}
    bad = []
    receipts = state.receipts()
    for i, r in enumerate(receipts, 1):
        pub = keys.get(str(r.get("agent_key_id", "")))
        try:
            if pub is None:
                raise envelope.ReceiptInvalid(f"signed by unknown key {r.get('agent_key_id')!r}")
            envelope.verify_receipt(r, pub)
        except envelope.ReceiptInvalid as e:
            bad.append((i, r, e))
        if args.action == "list":
            print(f"{r.get('dataset')} #{r.get('seq')} {r.get('counts')} {r.get('checksum')}")
    if args.json:
        print(json.dumps({"ok": not bad, "receipts": len(receipts),
                          "invalid": [{"line": i, "error": e.to_dict()} for i, _, e in bad]}))
    else:
        for i, r, e in bad:
            print(f"✗ line {i}: {r.get('dataset')} #{r.get('seq')}: [{e.code}] {e}")
        print(f"{len(receipts) - len(bad)}/{len(receipts)} receipts valid")
    return EXIT_DATAERR if bad else 0
