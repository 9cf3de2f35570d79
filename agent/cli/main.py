"""Entry point of ``edx-agent``: parses arguments, dispatches to a subcommand module, maps errors.

Only this function turns exceptions into exit codes (sysexits-style, docs/operations.md). Every
subcommand module exposes ``register(subparsers)`` and ``run(args) -> int``.

Subcommand modules are imported lazily: only the chosen command's module (and what it imports) is
loaded, so ``edx-agent version`` does not pay for SQLAlchemy, requests and the pipeline. Help, no
command and an unknown command register every module, so their output is unchanged.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Sequence

from .. import __version__, i18n, logs
from ..errors import EXIT_SOFTWARE, EXIT_USAGE, AgentError
from ..i18n import _

COMMANDS = ["init", "enrol", "check", "doctor", "test", "sync", "status", "resync", "feedback", "selftest", "schema", "receipts", "diagnostics", "keys", "demo", "version", "run", "audit"]
# subcommands registered by a module of another name (aliases, a module's second command)
OTHER_NAMES = {"enroll": "enrol", "request": "feedback"}


def _global_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="configuration file (default: $EDX_AGENT_CONFIG, then /etc/edx-agent/agent.toml)")
    p.add_argument("--lang", choices=["zh", "en"], default=None, help="language of messages")
    p.add_argument("--log-format", choices=["auto", "json", "console"], default="auto")
    p.add_argument("--log-level", default="warning", help="log level on stderr (default: warning)")
    p.add_argument("--json", action="store_true", help="machine-readable output where supported")


class _Probe(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise ValueError(message)


def chosen_module(argv: Sequence[str]) -> str | None:
    """The module of the subcommand named in ``argv``, or None (help, no or unknown command, bad options)."""
    probe = _Probe(add_help=False)
    _global_options(probe)
    probe.add_argument("command", nargs="?")
    try:
        ns, _rest = probe.parse_known_args(list(argv))
    except ValueError:
        return None
    name = OTHER_NAMES.get(ns.command, ns.command)
    return name if name in COMMANDS else None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with ``only``, just that subcommand module is imported and registered."""
    p = argparse.ArgumentParser(
        prog="edx-agent",
        description="Data-exchange front-end agent (数据交换前置机 agent): pulls sealed datasets from "
                    "the education data platform and applies them to the local database.")
    _global_options(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        mod = importlib.import_module(f".{name}_cmd", __package__)
        mod.register(sub)
    # the common options are accepted after the subcommand too (`edx-agent status --json`);
    # SUPPRESS keeps a value given before the subcommand when it is not repeated after it
    for sp in set(sub.choices.values()):
        sp.add_argument("--config", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--lang", choices=["zh", "en"], default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        sp.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="machine-readable output")
    return p


def _print_error(err: AgentError, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"ok": False, "error": err.to_dict()}, ensure_ascii=False))
        return
    print(_("error") + f" [{err.code}]: {err}", file=sys.stderr)
    problems = getattr(err, "problems", None)
    if problems:
        for line in problems:
            print(f"  - {line}", file=sys.stderr)
    if err.remedy_text:
        print("  " + _("what to do:") + f" {err.remedy_text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_module(argv))
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    # --lang (exported as EDX_AGENT_LANG), then the config's agent.lang, then the locale
    i18n.setup(args.lang, args.config)
    logs.setup(args.log_format, args.log_level)
    try:
        return int(args.func(args) or 0)
    except AgentError as e:
        _print_error(e, getattr(args, "json", False))
        return e.exit_code
    except KeyboardInterrupt:
        print(_("interrupted"), file=sys.stderr)
        return 130
    except Exception as e:  # a bug: say so plainly, with the version, instead of a bare traceback
        if os.environ.get("EDX_AGENT_DEBUG"):
            raise
        print(_("internal error in edx-agent {version}: {error}").format(
                  version=__version__, error=f"{type(e).__name__}: {e}") + "\n  " + _("what to do:") + " "
              + _("run again with EDX_AGENT_DEBUG=1 for the traceback and report it."), file=sys.stderr)
        return EXIT_SOFTWARE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
