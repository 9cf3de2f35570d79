"""``edx-agent selftest``: known-answer tests of every cryptographic primitive the agent relies on."""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import EXIT_SOFTWARE


def register(sub: Any) -> None:
    p = sub.add_parser("selftest", help="run the cryptographic known-answer tests")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    from ..selftest import run_selftest

    t0 = time.monotonic()
    results = run_selftest()
    took = time.monotonic() - t0
    ok = all(r[1] for r in results)
    if args.json:
        print(json.dumps({"ok": ok, "seconds": round(took, 3),
                          "tests": [{"name": n, "ok": o, "detail": d} for n, o, d in results]}))
    else:
        for name, passed, detail in results:
            print(f"{'✓' if passed else '✗'} {name}" + (f"  {detail}" if detail and not passed else ""))
        print(f"{sum(1 for r in results if r[1])}/{len(results)} passed in {took:.2f}s")
    return 0 if ok else EXIT_SOFTWARE
