"""Print the table of every error code (code, exit code, retried?, what to do) in English or Chinese.

Used to write the code tables of docs/joint-debugging.md and docs/joint-debugging.zh.md; a test checks
that every code of the error tree appears there, so the documentation cannot fall behind the code.
Usage: python scripts/error_codes.py [en|zh]
"""

from __future__ import annotations

import importlib
import os
import sys

# every module that defines an error class (grep '    code = "'): the table must not depend on what else
# a process happened to import
MODULES = ["agent.errors", "agent.envelope.errors", "agent.spool", "agent.pipeline", "agent.audit",
           "agent.faults", "agent.reqsign", "agent.daemon.datasets", "agent.daemon.health",
           "agent.daemon.service", "connectors.api", "hub.errors"]


def all_codes() -> dict[str, type]:
    from agent.errors import AgentError

    for m in MODULES:
        importlib.import_module(m)
    seen: dict[str, type] = {}

    def walk(cls: type) -> None:
        for sub in cls.__subclasses__():
            seen.setdefault(sub.code, sub)
            walk(sub)
    walk(AgentError)
    return seen


def table(lang: str) -> str:
    before = os.environ.get("EDX_AGENT_LANG")
    os.environ["EDX_AGENT_LANG"] = lang
    try:
        return _table(lang)
    finally:
        if before is None:
            os.environ.pop("EDX_AGENT_LANG", None)
        else:
            os.environ["EDX_AGENT_LANG"] = before


def _table(lang: str) -> str:
    from agent.i18n import _

    head = ("| code | exit | retried | what to do |" if lang == "en" else "| 错误码 | 退出码 | 自动重试 | 处理办法 |")
    rows = [head, "|---|---|---|---|"]
    for code, cls in sorted(all_codes().items()):
        yes, no = ("yes", "no") if lang == "en" else ("是", "否")
        remedy = (_(cls.remedy) if cls.remedy else "").replace("|", "/")
        rows.append(f"| `{code}` | {cls.exit_code} | {yes if cls.transient else no} | {remedy} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table(sys.argv[1] if len(sys.argv) > 1 else "en"))
