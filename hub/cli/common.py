"""Options and helpers shared by the ``edx-hub`` subcommands (data dir, store URL, output)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from agent.errors import ConfigError

from ..context import HubContext


def add_store_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="hub data directory (default: $EDX_HUB_DATA_DIR)")
    p.add_argument("--db", dest="db_url", help="store URL, e.g. postgresql://user@host/db "
                   "(default: $EDX_HUB_DB_URL, else SQLite in the data directory)")


def context(args: argparse.Namespace) -> HubContext:
    return HubContext.from_args(args.data_dir, args.db_url)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, ensure_ascii=False, indent=2, default=str)
    sys.stdout.write("\n")


def parse_time_ms(text: str | None) -> int | None:
    """ISO date or date-time (local time unless an offset is given) to Unix ms."""
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not an ISO date or date-time (2025-09-01 or 2025-09-01T08:00+08:00)") from None
    return int(value.timestamp() * 1000)


def fmt_ms(ms: int | None) -> str:
    if not ms:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000).isoformat(sep=" ", timespec="seconds")
