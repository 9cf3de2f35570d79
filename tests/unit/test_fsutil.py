"""Crash-safe writes: what a writer killed before its rename leaves behind is cleaned at start-up."""

from __future__ import annotations

import os
import subprocess
import sys

from agent.fsutil import remove_stale_temps


def test_temps_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    gone = tmp_path / f".status.json.tmp{dead.stdout.strip()}"
    mine = tmp_path / f".grants.json.tmp{os.getpid()}"
    parent = tmp_path / f".keys.json.tmp{os.getppid()}"
    keep = [tmp_path / "status.json", tmp_path / ".hidden.tmpx", tmp_path / "audit.tmp123"]
    for p in (gone, mine, parent, *keep):
        p.write_text("{}")
    assert remove_stale_temps(tmp_path) == [gone.name]
    assert not gone.exists() and all(p.exists() for p in (mine, parent, *keep))
    assert remove_stale_temps(tmp_path / "missing") == []
