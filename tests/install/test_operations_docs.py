"""docs/operations.md and its Chinese twin stay complete and in step with the code they describe."""

from __future__ import annotations

import re
from pathlib import Path

from agent import errors

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "docs" / "operations.md", ROOT / "docs" / "operations.zh.md"]


def exit_table(text: str) -> set[int]:
    return {int(m.group(1)) for m in re.finditer(r"^\| (\d+) \|", text, re.M)}


def test_every_exit_code_of_the_error_tree_is_documented_in_both_languages() -> None:
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert {0, 1, 2, 65, 69, 70, 75, 77, 78} <= codes
    for doc in DOCS:
        assert codes <= exit_table(doc.read_text(encoding="utf-8")), doc.name


def test_both_languages_have_the_same_sections_and_commands() -> None:
    en, zh = (d.read_text(encoding="utf-8") for d in DOCS)
    heads = [re.findall(r"^## (\d+)\.", t, re.M) for t in (en, zh)]
    assert heads[0] == heads[1] and len(heads[0]) >= 10
    assert commands(en) == commands(zh) and len(commands(en)) > 15


def commands(text: str) -> list[str]:
    """The commands shown in code (fenced blocks and `inline` code), e.g. 'systemctl start', 'edx-agent enrol'."""
    code = " ".join(re.findall(r"```.*?```|`[^`\n]+`", text, re.S))
    found = set(re.findall(r"\b(systemctl|journalctl|systemd-analyze|systemd-run) ([a-z-]+)", code))
    found |= {("edx-agent", c) for c in re.findall(r"(?:agent\.toml|edx-agent)\s+([a-z]+)\b", code)}
    found |= {("install.sh", o) for o in re.findall(r"install\.sh[^\n`]*?(--[a-z]+)", code)}
    return sorted(" ".join(f) for f in found)


def test_documented_relaxations_are_real_directives_of_the_unit_or_dropin() -> None:
    unit = (ROOT / "systemd" / "edx-agent.service").read_text()
    dropin = (ROOT / "systemd" / "examples" / "native-db-client.conf").read_text()
    for doc in DOCS:
        for directive in re.findall(r"`([A-Z][a-z][A-Za-z]+)=[^`]*`", doc.read_text(encoding="utf-8")):
            if directive in ("LoadCredential", "User"):
                continue
            assert f"{directive}=" in unit + dropin or directive == "ReadWritePaths", directive
    for line in dropin.splitlines():
        if "=" in line and not line.startswith("#"):
            assert line.split("=")[0] + "=" in unit, line  # the drop-in relaxes what the unit sets
