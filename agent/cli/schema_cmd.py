"""``edx-agent schema plan DATASET``: the DDL the agent would run for a dataset's current schema."""

from __future__ import annotations

import json
from typing import Any

from ..config import load
from ..errors import NotFound
from ..runtime import open_connector
from ..schema import Schema
from ..state import StateDir


def register(sub: Any) -> None:
    p = sub.add_parser("schema", help="show the DDL the agent would run for a dataset")
    p.add_argument("action", choices=["plan"])
    p.add_argument("dataset")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    cfg = load(args.config)
    grants = {g["dataset"]: g for g in StateDir(cfg.state_dir).grants()}
    grant = grants.get(args.dataset)
    if grant is None or not grant.get("schema"):
        raise NotFound(f"{args.dataset} (no grant with a schema; run `edx-agent sync` to refresh grants)")
    schema = Schema.from_dict(grant["schema"])
    conn = open_connector(cfg)
    try:
        ddl = conn.plan_schema(cfg.table_for(args.dataset), schema, cfg.database.schema_name or None)
    finally:
        conn.close()
    if args.json:
        print(json.dumps({"dataset": args.dataset, "table": cfg.table_for(args.dataset), "ddl": ddl},
                         ensure_ascii=False))
    elif ddl:
        print(f"-- {args.dataset} → {cfg.table_for(args.dataset)} ({conn.name})")
        for stmt in ddl:
            print(stmt.rstrip(";") + ";")
    else:
        print(f"-- {args.dataset}: table {cfg.table_for(args.dataset)} already matches; nothing to run")
    return 0
