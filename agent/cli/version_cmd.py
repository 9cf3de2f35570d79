"""``edx-agent version``: the agent's version and the versions that matter when reporting a problem."""

from __future__ import annotations

import json
import platform
import sys
from typing import Any

from .. import __version__


def register(sub: Any) -> None:
    p = sub.add_parser("version", help="show versions")
    p.set_defaults(func=run)


def versions() -> dict[str, str]:
    import cryptography
    import sqlalchemy

    return {"edx-agent": __version__, "python": platform.python_version(),
            "cryptography": cryptography.__version__, "sqlalchemy": sqlalchemy.__version__,
            "platform": platform.platform()}


def run(args: Any) -> int:
    v = versions()
    if args.json:
        print(json.dumps(v))
    else:
        print(f"edx-agent {__version__}")
        for k, val in v.items():
            if k != "edx-agent":
                print(f"  {k}: {val}", file=sys.stdout)
    return 0
