"""Fixtures of the install tests: one offline bundle built per session, for this machine only."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build-wheelhouse.sh"
INSTALL = ROOT / "systemd" / "install.sh"
# The interpreter the test venv was made from: install.sh builds its own venv with it.
BASE_PYTHON = str(Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}")


def offline_env(**extra: str) -> dict[str, str]:
    """An environment in which pip cannot reach any index: no config files, no index, a dead proxy."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "PYTHON", "VIRTUAL_ENV"))}
    dead = "http://127.0.0.1:9"  # discard port: nothing listens, every connection is refused
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead, no_proxy="",
               LANG="C.UTF-8", LC_ALL="C.UTF-8")
    env.update(extra)
    return env


@pytest.fixture(scope="session")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tarball made by packaging/build-wheelhouse.sh --current (its .sha256 lies next to it)."""
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, PYTHON=sys.executable)
    res = subprocess.run(["bash", str(BUILD), "--current", "--out", str(out)], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-4000:]
    tarball = Path(res.stdout.strip().splitlines()[-1])
    assert tarball.exists() and tarball.parent == out
    return tarball


@pytest.fixture(scope="session")
def bundle_dir(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle unpacked (read-only use: copy it before changing anything)."""
    dest = tmp_path_factory.mktemp("unpacked")
    with tarfile.open(bundle) as tf:
        tf.extractall(dest, filter="data")
    (top,) = dest.iterdir()
    return top


def run_install(*args: str, env: dict[str, str] | None = None, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True,
                          env=env or offline_env(), timeout=timeout)
