"""``edx-agent test``: joint-debug mode (前置环境联调): doctor + one real batch into a sandbox, reported."""

from __future__ import annotations

import json
from typing import Any

from ..config import load
from ..doctor import render
from ..errors import EXIT_FAILED
from ..jointdebug import run_test
from ..runtime import build_context
from .doctor_cmd import run_doctor


def register(sub: Any) -> None:
    p = sub.add_parser("test", help="joint-debug mode: doctor, then a test batch through the whole pipeline")
    p.add_argument("--keep", action="store_true", help="keep the sandbox table afterwards")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    cfg = load(args.config)
    doctor = run_doctor(cfg)
    ctx = build_context(cfg)
    try:
        doc = run_test(ctx, doctor, keep=args.keep)
    finally:
        ctx.connector.close()
        ctx.client.close()
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=2))
    else:
        from ..doctor import Report, Step

        print(render(Report(steps=[Step(**s) for s in doc["steps"]])))
        print(f"correlation id: {doc['correlation_id']} "
              f"({'report sent to the platform' if doc['sent_to_platform'] else 'report NOT sent: ' + doc['send_error']['message']})")
    return 0 if doc["ok"] else EXIT_FAILED
