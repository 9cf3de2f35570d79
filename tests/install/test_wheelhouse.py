"""The offline bundle: built by packaging/build-wheelhouse.sh, installed with pip and the network off.

The default run builds for this machine's platform and Python only (--current); the slow test builds
the release bundle (x86_64 + aarch64, CPython 3.11 + 3.12) and checks every target resolves offline.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent import __version__

from .conftest import BASE_PYTHON, BUILD, offline_env, run_install


def sha256(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_bundle_has_version_in_name_and_a_checksum(bundle: Path, bundle_dir: Path) -> None:
    assert re.fullmatch(rf"edx-agent-{re.escape(__version__)}-wheelhouse-[a-z0-9_]+-cp3\d+\.tar\.gz", bundle.name)
    line = bundle.with_name(bundle.name + ".sha256").read_text()
    assert line.split() == [sha256(bundle), bundle.name]
    res = subprocess.run(["sha256sum", "--check", "--strict", bundle.name + ".sha256"], cwd=bundle.parent,
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    # inside: the installer, the unit, the example config, and every wheel under SHA256SUMS
    for f in ("install.sh", "edx-agent.service", "agent.example.toml", "requirements.txt", "BUILD-INFO"):
        assert (bundle_dir / f).is_file(), f
    listed = {ln.split(maxsplit=1)[1] for ln in (bundle_dir / "SHA256SUMS").read_text().splitlines()}
    wheels = {f"wheels/{w.name}" for w in (bundle_dir / "wheels").iterdir()}
    assert wheels <= listed and any(w.startswith(f"wheels/edx_agent-{__version__}-") for w in wheels)
    for rel in listed:
        assert sha256(bundle_dir / rel) == next(
            ln.split()[0] for ln in (bundle_dir / "SHA256SUMS").read_text().splitlines() if ln.endswith("  " + rel))


def test_pip_installs_it_into_a_fresh_venv_with_the_network_off(bundle: Path, bundle_dir: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([BASE_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    env = offline_env()
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--no-index",
           "--find-links", str(bundle_dir / "wheels")]
    # the control: with the network off, a package that is not in the wheelhouse cannot be had
    res = subprocess.run([*pip, "six"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode != 0, "pip reached an index: the test would not prove an offline install"
    res = subprocess.run([*pip, "-r", str(bundle_dir / "requirements.txt")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    out = subprocess.run([str(venv / "bin" / "edx-agent"), "version"], capture_output=True, text=True,
                         env=env, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == f"edx-agent {__version__}"
    # it is the bundle's agent, not this checkout's: imported from the fresh venv
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import agent; print(agent.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    assert where.startswith(str(venv))


def test_a_checksum_mismatch_refuses_to_install(bundle: Path, tmp_path: Path) -> None:
    bad = tmp_path / bundle.name
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    shutil.copy(bundle.with_name(bundle.name + ".sha256"), tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    res = run_install("--bundle", str(bad), "--root", str(root), "--python", BASE_PYTHON)
    assert res.returncode == 65, res.stdout + res.stderr
    assert "checksum mismatch" in res.stderr
    assert not any(root.iterdir()), "nothing may be touched before the checks pass"
    # and without its checksum file the bundle is not installed either
    (tmp_path / (bundle.name + ".sha256")).unlink()
    shutil.copy(bundle, bad)
    res = run_install("--bundle", str(bad), "--root", str(root), "--python", BASE_PYTHON)
    assert res.returncode == 65 and "checksum file" in res.stderr
    assert not any(root.iterdir())


def test_a_tampered_wheel_inside_the_bundle_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    whl = next((copy / "wheels").glob("requests-*.whl"))
    whl.write_bytes(whl.read_bytes() + b"\0")
    root = tmp_path / "root"
    root.mkdir()
    res = run_install("--bundle", str(copy), "--root", str(root), "--python", BASE_PYTHON)
    assert res.returncode == 65 and "SHA256SUMS" in res.stderr, res.stderr
    assert not any(root.iterdir())
    # a wheel slipped in beside the listed ones would be picked up by pip: refused too
    shutil.copy(bundle_dir / "wheels" / whl.name, whl)
    shutil.copy(whl, copy / "wheels" / "evil-1.0-py3-none-any.whl")
    res = run_install("--bundle", str(copy), "--root", str(root), "--python", BASE_PYTHON)
    assert res.returncode == 65 and "evil-1.0-py3-none-any.whl" in res.stderr, res.stderr
    assert not any(root.iterdir())


@pytest.mark.slow
def test_release_bundle_covers_x86_64_and_aarch64_for_cpython_311_and_312(tmp_path: Path) -> None:
    res = subprocess.run(["bash", str(BUILD), "--out", str(tmp_path)], capture_output=True, text=True,
                         env=dict(offline_env(), PYTHON=sys.executable, PIP_CONFIG_FILE="",
                                  PIP_NO_INDEX="", http_proxy="", https_proxy="", HTTP_PROXY="", HTTPS_PROXY=""),
                         timeout=1800)
    assert res.returncode == 0, res.stderr[-4000:]
    tarball = Path(res.stdout.strip().splitlines()[-1])
    assert tarball.name == f"edx-agent-{__version__}-wheelhouse-manylinux_2_28-x86_64-aarch64-cp311-cp312.tar.gz"
    names = subprocess.run(["tar", "-tzf", str(tarball)], capture_output=True, text=True, check=True).stdout
    # the script itself resolved every target offline (pip install --dry-run --no-index); spot-check here
    for arch in ("x86_64", "aarch64"):
        for cp in ("cp311", "cp312"):
            assert re.search(rf"pydantic_core-[^/]*-{cp}-{cp}-[^/]*manylinux[^/]*_{arch}\.whl", names), (arch, cp)
        assert re.search(rf"cryptography-[^/]*abi3-[^/]*_{arch}\.whl", names), arch
    assert not re.search(r"manylinux_2_(29|3\d)_", names), "a wheel needs a glibc newer than 2.28"
