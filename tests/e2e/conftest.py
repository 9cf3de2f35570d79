"""End-to-end fixtures: a real hub process with the sample dataset, and the real agent CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agent import sample
from agent.localhub import LocalHub

ROWS, CHANGES = 400, 120


class AgentCLI:
    """Runs ``python -m agent`` as a separate process with one config file, like an operator."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.config = workdir / "agent.toml"

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "agent", "--config", str(self.config), *args]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=self.workdir,
                             env={**os.environ, "LANG": "C.UTF-8", **(env or {})})
        if check and res.returncode != 0:
            raise AssertionError(f"edx-agent {' '.join(args)} exited {res.returncode}\n"
                                 f"stdout: {res.stdout}\nstderr: {res.stderr}")
        return res


@pytest.fixture
def sample_files(tmp_path: Path) -> dict[str, Path]:
    files = {"schema": tmp_path / "student.schema.json", "snapshot": tmp_path / "snap.jsonl",
             "changes": tmp_path / "changes.jsonl"}
    sample.write_schema(files["schema"])
    sample.write_jsonl(files["snapshot"], sample.snapshot(ROWS))
    sample.write_jsonl(files["changes"], sample.changes(ROWS, CHANGES))
    return files


@pytest.fixture
def hub(tmp_path: Path, sample_files: dict[str, Path]):
    with LocalHub(tmp_path / "hub") as h:
        h.admin("publish", "student", str(sample_files["snapshot"]), "--kind", "snapshot",
                "--schema", str(sample_files["schema"]))
        yield h


@pytest.fixture
def agent_cli(tmp_path: Path) -> AgentCLI:
    d = tmp_path / "agent"
    d.mkdir()
    return AgentCLI(d)


def expected_state(snapshot: Path, *changes: Path) -> dict[str, dict[str, Any]]:
    """The table the platform published, computed independently of the agent: last op per key wins."""
    rows: dict[str, dict[str, Any]] = {}
    for path in (snapshot, *changes):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            op = r.pop("_op", "I")
            if op == "D":
                rows.pop(r["student_id"], None)
            else:
                rows[r["student_id"]] = r
    return rows
