"""``edx-hub resend``: 补传 — re-seal an agent's batches of a dataset from a sequence number on.

The agent's sealed envelopes from ``--from-seq`` are dropped and sealed afresh (new data keys, the
chain rebuilt) on its next listing; use it after a lost blob, a key rotation or a disputed delivery.
The agent still decides from its own checkpoint what it applies, so resending never applies twice.
"""

from __future__ import annotations

import argparse

from ..enrolment import get_agent
from ..errors import AgentNotFound
from ..sealing import drop_sealed
from .common import add_store_options, context


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("resend", help="re-seal an agent's batches from a sequence number (补传)")
    add_store_options(p)
    p.add_argument("--agent", required=True, dest="agent_id")
    p.add_argument("--dataset", required=True)
    p.add_argument("--from-seq", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ctx = context(args)
    with ctx.engine.connect() as conn:
        get_agent(conn, args.agent_id, AgentNotFound)
    n = drop_sealed(ctx, args.agent_id, args.dataset, args.from_seq)
    print(f"{n} envelope(s) of {args.dataset} from #{args.from_seq} will be re-sealed for {args.agent_id}")
    return 0
