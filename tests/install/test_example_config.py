"""config/agent.example.toml: valid, explains every setting of agent/config.py, passes `edx-agent check`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from pydantic import BaseModel

from agent.config import AgentConfig, DatasetSection, load

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "agent.example.toml"
CLI = [sys.executable, "-m", "agent"]

# A commented-out setting or table header ("# key = value", "# [datasets.student]") the operator may enable.
_COMMENTED = re.compile(r"^#\s?(\[[A-Za-z0-9_.]+\]|[A-Za-z_]+\s*=\s*\S.*)$")


def uncommented(text: str) -> str:
    """The example with every commented-out setting enabled, as an operator would."""
    return "\n".join(m.group(1) if (m := _COMMENTED.match(line)) else line for line in text.splitlines())


def fields(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items() if name != "source"}


def test_example_loads_with_the_real_loader() -> None:
    cfg = load(EXAMPLE)
    assert cfg.database.url.startswith("sqlite:")
    assert cfg.state_dir == Path("/var/lib/edx-agent")  # what the systemd unit's StateDirectory= gives


def test_every_setting_is_in_the_example_with_its_comment() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    doc = tomllib.loads(uncommented(text))
    sections = {name: f.annotation for name, f in AgentConfig.model_fields.items() if name != "source"}
    for section, model in sections.items():
        if section == "datasets":
            assert doc["datasets"], "the example shows a [datasets.NAME] table"
            for name, ds in doc["datasets"].items():
                assert set(ds) == fields(DatasetSection), f"datasets.{name}"
            continue
        assert section in doc, f"[{section}] is missing from the example"
        assert set(doc[section]) == fields(model), f"[{section}]: keys differ from agent/config.py"
    # each setting has an English and a Chinese explanation in the comment block just above it
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^(#\s?)?[a-z_]+\s*=", line) and not lines[i - 1].lstrip("# ").startswith(("[", "Check")):
            block = []
            j = i - 1
            while j >= 0 and lines[j].startswith("#") and not _COMMENTED.match(lines[j]):
                block.append(lines[j])
                j -= 1
            if not block:  # a setting sharing the comment of the one above it (connect/read timeout)
                continue
            comment = " ".join(block)
            assert re.search(r"[a-zA-Z]{3}", comment) and re.search(r"[\u4e00-\u9fff]", comment), line


def test_the_example_with_everything_enabled_is_valid_too() -> None:
    doc = tomllib.loads(uncommented(EXAMPLE.read_text(encoding="utf-8")))
    AgentConfig.model_validate(doc)


def run_check(config: Path) -> tuple[int, dict]:
    res = subprocess.run([*CLI, "--json", "--config", str(config), "check"], capture_output=True,
                         text=True, timeout=60, cwd=ROOT, env=dict(os.environ, EDX_AGENT_LANG="en"))
    return res.returncode, json.loads(res.stdout)


def test_check_finds_only_the_missing_keys() -> None:
    rc, doc = run_check(EXAMPLE)
    assert rc == 78
    assert len(doc["problems"]) == 1 and doc["problems"][0].startswith("agent.state_dir: no keys"), doc


def test_check_passes_once_keys_exist(tmp_path: Path) -> None:
    # keys made by the real `init` into a state directory of our own, then the example pointed at it
    state = tmp_path / "state"
    subprocess.run([*CLI, "--config", str(tmp_path / "scratch.toml"), "init", "--database",
                    "sqlite:///scratch.db", "--state-dir", str(state)], check=True, capture_output=True,
                   timeout=60, cwd=ROOT)
    cfg = tmp_path / "agent.toml"
    cfg.write_text(EXAMPLE.read_text(encoding="utf-8").replace('"/var/lib/edx-agent"', f'"{state}"')
                   .replace("sqlite:////var/lib/edx-agent/edu.db", f"sqlite:///{tmp_path}/edu.db"),
                   encoding="utf-8")
    rc, doc = run_check(cfg)
    assert (rc, doc) == (0, {"ok": True, "problems": []})
