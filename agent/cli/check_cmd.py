"""``edx-agent check``: offline configuration check: every problem with its path; exit 0 or 78."""

from __future__ import annotations

import json
from typing import Any

from ..config import load, permission_problems
from ..errors import EXIT_CONFIG, ConfigError
from ..i18n import _
from ..state import StateDir


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="check the configuration offline (no network)")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    problems: list[str] = []
    try:
        cfg = load(args.config)
    except ConfigError as e:
        problems = list(getattr(e, "problems", None) or [str(e)])
        cfg = None
    if cfg is not None:
        problems += permission_problems(cfg)
        state = StateDir(cfg.state_dir)
        if not state.pending_key_id():
            problems.append(_("agent.state_dir: no keys in {keys_dir} (run `edx-agent init`)")
                            .format(keys_dir=state.keys_dir))
        import connectors
        try:
            connectors.connector_class(cfg.database.url)
        except Exception as e:  # unknown scheme or missing driver: both are configuration problems
            problems.append(f"database.url: {e}")
    if args.json:
        print(json.dumps({"ok": not problems, "problems": problems}, ensure_ascii=False))
    elif problems:
        print(_("configuration has problems:"))
        for p in problems:
            print(f"  ✗ {p}")
    else:
        print("✓ " + _("configuration is valid"))
    return EXIT_CONFIG if problems else 0
