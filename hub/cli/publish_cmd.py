"""``edx-hub publish``: publish a batch from a JSON Lines file or from a SQL query against a source database."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.errors import ConfigError
from agent.schema import Schema

from ..publish import publish
from ..sources import db_records, jsonl_records
from .common import add_store_options, context, print_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("publish", help="publish a snapshot or changes batch")
    add_store_options(p)
    p.add_argument("dataset")
    p.add_argument("file", nargs="?", help="rows as JSON Lines (one object per row; _op I/U/D in changes)")
    p.add_argument("--kind", choices=("snapshot", "changes"), required=True)
    p.add_argument("--schema", help="schema JSON (required for a new dataset; a new version otherwise)")
    p.add_argument("--from-db", metavar="URL", help="SQLAlchemy URL of a source database")
    p.add_argument("--query", help="SQL whose columns are the schema's (with --from-db)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if bool(args.file) == bool(args.from_db):
        raise ConfigError("give either FILE.jsonl or --from-db URL --query SQL")
    if args.from_db and not args.query:
        raise ConfigError("--from-db needs --query SQL")
    schema = None
    if args.schema:
        try:
            schema = Schema.from_json(Path(args.schema).read_bytes())
        except OSError as e:
            raise ConfigError(f"cannot read schema {args.schema}: {e.strerror}") from None
    ctx = context(args)
    if args.file:
        path = Path(args.file)
        result = publish(ctx, args.dataset, lambda enc: jsonl_records(path, enc), kind=args.kind,
                         schema=schema, source=f"jsonl:{path.name}")
    else:
        result = publish(ctx, args.dataset, lambda enc: db_records(args.from_db, args.query, enc),
                         kind=args.kind, schema=schema, source="query")
    print_json(result.to_dict())
    return 0
