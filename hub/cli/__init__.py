"""The ``edx-hub`` command line: one module per subcommand; ``main()`` alone turns errors into exit codes.

Admin commands work on the data directory (``--data-dir`` or ``EDX_HUB_DATA_DIR``) and the store
(``--db`` or ``EDX_HUB_DB_URL``), so they run beside a serving hub: the store is shared, not locked.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from agent.errors import EXIT_SOFTWARE, AgentError

from . import (admin_token, agent_cmd, dataset_cmd, gc_cmd, grant_cmd, publish_cmd, resend_cmd, serve_cmd,
               token_cmd)

COMMANDS = (serve_cmd, publish_cmd, token_cmd, dataset_cmd, grant_cmd, agent_cmd, resend_cmd, gc_cmd, admin_token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edx-hub", description="Reference platform hub for edx agents.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for mod in COMMANDS:
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except AgentError as e:
        print(f"error [{e.code}]: {e.text}", file=sys.stderr)
        if e.remedy_text:
            print(f"  → {e.remedy_text}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as e:  # the one place an unexpected failure becomes an exit code
        print(f"error [hub-internal-error]: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_SOFTWARE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
