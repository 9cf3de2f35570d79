"""``edx-hub dataset create|update|list|show``: the catalog (资源目录)."""

from __future__ import annotations

import argparse
from pathlib import Path

from agent.errors import ConfigError
from agent.schema import Schema

from .. import catalog
from .common import add_store_options, context, print_json


def _meta_options(p: argparse.ArgumentParser, creating: bool) -> None:
    p.add_argument("--title", help="title (Chinese), e.g. 学生基本信息")
    p.add_argument("--provider-unit", help="the unit providing the data")
    p.add_argument("--sharing", help="无条件 | 有条件 | 不予共享 (or unconditional / conditional / none)")
    p.add_argument("--classification", help="一般 | 重要 | 核心 (or general / important / core)")
    p.add_argument("--personal-info", action=argparse.BooleanOptionalAction, default=None,
                   help="the dataset holds personal information")
    p.add_argument("--update-interval", type=int, metavar="SECONDS", help="declared update interval (更新时限)")
    p.add_argument("--retention", choices=catalog.RETENTION, help="what agents keep")
    p.add_argument("--retention-days", type=int, help="days, for purge_after_days")
    p.add_argument("--description")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dataset", help="the catalog")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    c = dsub.add_parser("create", help="add a dataset to the catalog")
    add_store_options(c)
    c.add_argument("name")
    c.add_argument("--schema", required=True, help="schema JSON file")
    _meta_options(c, True)
    c.set_defaults(func=run_create)
    u = dsub.add_parser("update", help="change a dataset's catalog facts")
    add_store_options(u)
    u.add_argument("name")
    _meta_options(u, False)
    u.set_defaults(func=run_update)
    ls = dsub.add_parser("list", help="list the catalog")
    add_store_options(ls)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=run_list)
    sh = dsub.add_parser("show", help="one dataset with its schema versions")
    add_store_options(sh)
    sh.add_argument("name")
    sh.set_defaults(func=run_show)


def _fields(args: argparse.Namespace) -> dict[str, object]:
    fields = {"title": args.title, "provider_unit": args.provider_unit, "sharing": args.sharing,
              "classification": args.classification, "personal_info": args.personal_info,
              "update_interval_s": args.update_interval, "retention_policy": args.retention,
              "retention_days": args.retention_days, "description": args.description}
    return {k: v for k, v in fields.items() if v is not None}


def run_create(args: argparse.Namespace) -> int:
    try:
        schema = Schema.from_json(Path(args.schema).read_bytes())
    except OSError as e:
        raise ConfigError(f"cannot read schema {args.schema}: {e.strerror}") from None
    ctx = context(args)
    with ctx.engine.begin() as conn:
        catalog.create_dataset(conn, args.name, schema, **_fields(args))  # type: ignore[arg-type]
        print_json(catalog.get_dataset(conn, args.name).to_dict())
    return 0


def run_update(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.begin() as conn:
        catalog.update_dataset(conn, args.name, **_fields(args))
        print_json(catalog.get_dataset(conn, args.name).to_dict())
    return 0


def run_list(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.connect() as conn:
        items = catalog.list_datasets(conn)
    if args.json:
        print_json([d.to_dict() for d in items])
        return 0
    print(f"{'NAME':24} {'TITLE':20} {'SHARING':6} {'CLASS':4} {'PI':3} {'SEQ':>6} {'ROWS':>10}  PROVIDER")
    for d in items:
        print(f"{d.name:24} {d.title[:20]:20} {d.sharing:6} {d.classification:4} "
              f"{'yes' if d.personal_info else 'no':3} {d.latest_seq:>6} {d.state_rows:>10}  {d.provider_unit}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.connect() as conn:
        print_json(catalog.get_dataset(conn, args.name).to_dict() | {"schemas": catalog.schema_history(conn, args.name)})
    return 0
