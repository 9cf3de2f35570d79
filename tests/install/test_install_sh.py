"""systemd/install.sh: install into a staging root, idempotent re-run, upgrade gate, rollback, uninstall.

Everything runs against the bundle the session built (conftest.bundle) with pip's network off. The
"live" test runs the installer as on a real machine (root, --root /: creates the user, chowns, runs
`init` as that user) inside a private mount namespace whose /etc, /opt, /usr and /var are overlays,
so the machine running the tests is not changed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest

from agent import __version__
from tests.conftest import unavailable

from .conftest import BASE_PYTHON, INSTALL, offline_env, run_install


def out(res: subprocess.CompletedProcess[str]) -> str:
    return res.stdout + res.stderr


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def reseal(bundle: Path) -> None:
    """Rewrite SHA256SUMS after a deliberate change, as a (re)build would."""
    lines = []
    for f in sorted(p for p in bundle.rglob("*") if p.is_file() and p.name != "SHA256SUMS"):
        rel = f.relative_to(bundle).as_posix()
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {rel}\n")
    (bundle / "SHA256SUMS").write_text("".join(lines))


def broken_agent_wheel(dest: Path, version: str) -> Path:
    """An edx-agent wheel that installs but cannot run: what a bad release looks like to the installer."""
    name = f"edx_agent-{version}"
    whl = dest / f"{name}-py3-none-any.whl"
    files = {
        "agent/__init__.py": "raise ImportError('deliberately broken build')\n",
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: edx-agent\nVersion: {version}\n"
                                      "Provides-Extra: all\n",
        f"{name}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        f"{name}.dist-info/entry_points.txt": "[console_scripts]\nedx-agent = agent.cli.main:main\n",
    }
    record = "".join(f"{p},,\n" for p in [*files, f"{name}.dist-info/RECORD"])
    with zipfile.ZipFile(whl, "w") as z:
        for p, text in {**files, f"{name}.dist-info/RECORD": record}.items():
            z.writestr(p, text)
    return whl


def test_install_upgrade_rollback_uninstall(bundle: Path, bundle_dir: Path,
                                                                        tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    args = ("--bundle", str(bundle), "--root", str(root), "--python", BASE_PYTHON, "--prefix", "/srv/edx")
    res = run_install(*args)
    assert res.returncode == 0, out(res)
    assert "bundle checksum OK" in res.stdout and "Next steps" in res.stdout

    # the service's files, where the unit expects them, with the unit pointing at the chosen prefix
    unit = root / "etc/systemd/system/edx-agent.service"
    text = unit.read_text()
    assert "ExecStart=/srv/edx/venv/bin/edx-agent --config /etc/edx-agent/agent.toml run" in text
    assert "/opt/edx-agent" not in text
    assert (root / "etc/systemd/system/multi-user.target.wants/edx-agent.service").is_symlink()
    conf = root / "etc/edx-agent/agent.toml"
    assert mode(conf) == 0o640 and conf.read_text() == (bundle_dir / "agent.example.toml").read_text()
    cred = root / "etc/edx-agent/credentials/db-password"
    assert cred.read_bytes() == b"" and mode(cred) == 0o600 and mode(cred.parent) == 0o700
    assert "u edx-agent" in (root / "usr/lib/sysusers.d/edx-agent.conf").read_text()
    assert "f /etc/edx-agent/credentials/db-password 0600" in (root / "usr/lib/tmpfiles.d/edx-agent.conf").read_text()
    keys = sorted((root / "var/lib/edx-agent/keys").glob("*.json"))
    assert keys and all(mode(k) == 0o600 for k in keys)
    venv = root / "srv/edx/venv"
    assert venv.is_symlink()
    release = os.readlink(venv)
    version = subprocess.run([str(venv / "bin/edx-agent"), "version"], capture_output=True, text=True,
                             env=offline_env(), check=True).stdout
    assert version.splitlines()[0] == f"edx-agent {__version__}"
    assert (root / "srv/edx/share/examples/native-db-client.conf").is_file()

    # the installed config with the installed keys passes the installed agent's own check
    staged = tmp_path / "staged.toml"
    staged.write_text(conf.read_text().replace('"/var/lib/edx-agent"', f'"{root}/var/lib/edx-agent"')
                      .replace("sqlite:////var/lib/edx-agent/", f"sqlite:///{root}/var/lib/edx-agent/"))
    chk = subprocess.run([str(venv / "bin/edx-agent"), "--config", str(staged), "check"],
                         capture_output=True, text=True, env=offline_env())
    assert chk.returncode == 0, out(chk)

    # a second run changes nothing and keeps what the operator changed
    conf.write_text(conf.read_text().replace('name = ""', 'name = "school-0101"'))
    (root / "var/lib/edx-agent/enrolment-marker").write_text("state")
    key_bytes = [k.read_bytes() for k in keys]
    res = run_install(*args)
    assert res.returncode == 0, out(res)
    assert "already installed" in res.stdout and "kept the existing configuration" in res.stdout
    assert 'name = "school-0101"' in conf.read_text()
    assert [k.read_bytes() for k in keys] == key_bytes
    assert os.readlink(venv) == release
    assert (root / "etc/edx-agent/agent.example.toml").is_file()

    # an upgrade whose self-test fails is removed and the running release stays
    good = release
    bad = tmp_path / "bad-bundle"
    shutil.copytree(bundle_dir, bad)
    for w in (bad / "wheels").glob("edx_agent-*.whl"):
        w.unlink()
    broken_agent_wheel(bad / "wheels", "99.0.0")
    reseal(bad)
    res = run_install(*args[2:], "--bundle", str(bad))
    assert res.returncode == 1, out(res)
    assert "failed its self-test" in res.stderr and good.split("/")[-1] in res.stderr
    assert os.readlink(venv) == good
    assert [p.name for p in (root / "srv/edx/releases").iterdir()] == [good.split("/")[-1]]
    ok = subprocess.run([str(venv / "bin/edx-agent"), "version"], capture_output=True, text=True, env=offline_env())
    assert ok.returncode == 0 and __version__ in ok.stdout

    # a second good build of the same version is a new release; --rollback goes back to the first
    newer = tmp_path / "newer-bundle"
    shutil.copytree(bundle_dir, newer)
    (newer / "REBUILD").write_text("same version, rebuilt\n")
    reseal(newer)
    res = run_install(*args[2:], "--bundle", str(newer), "--extras", "")
    assert res.returncode == 0, out(res)
    second = os.readlink(venv)
    assert second != good and f"previous: {good.split('/')[-1]}" in res.stdout
    res = run_install("--rollback", "--root", str(root), "--prefix", "/srv/edx")
    assert res.returncode == 0, out(res)
    assert os.readlink(venv) == good

    # uninstall keeps data; --purge removes it
    res = run_install("--uninstall", "--root", str(root), "--prefix", "/srv/edx")
    assert res.returncode == 0, out(res)
    assert not unit.exists() and not (root / "srv/edx").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/edx-agent.service").exists()
    assert conf.exists() and (root / "var/lib/edx-agent/enrolment-marker").exists() and keys[0].exists()
    res = run_install("--uninstall", "--purge", "--root", str(root), "--prefix", "/srv/edx")
    assert res.returncode == 0, out(res)
    for gone in ("etc/edx-agent", "var/lib/edx-agent", "var/log/edx-agent"):
        assert not (root / gone).exists(), gone


def fake_uname(bindir: Path, machine: str) -> None:
    bindir.mkdir(exist_ok=True)
    (bindir / "uname").write_text(f"#!/bin/sh\necho {machine}\n")
    (bindir / "uname").chmod(0o755)


def test_unsupported_architecture_is_refused_before_anything_changes(bundle: Path, tmp_path: Path) -> None:
    fake_uname(tmp_path / "bin", "mips64")
    root = tmp_path / "root"
    root.mkdir()
    env = offline_env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    res = run_install("--bundle", str(bundle), "--root", str(root), env=env)
    assert res.returncode == 69, out(res)
    assert "unsupported architecture mips64" in res.stderr and "nothing was changed" in res.stderr
    assert not any(root.iterdir())
    # in Chinese for a Chinese locale
    res = run_install("--bundle", str(bundle), "--root", str(root), env=dict(env, LANG="zh_CN.UTF-8", LC_ALL=""))
    assert res.returncode == 69 and "不支持的处理器架构 mips64" in res.stderr, res.stderr


def test_bundle_for_another_architecture_is_refused(bundle: Path, tmp_path: Path) -> None:
    other = "aarch64" if os.uname().machine == "x86_64" else "x86_64"
    fake_uname(tmp_path / "bin", other)
    root = tmp_path / "root"
    root.mkdir()
    env = offline_env(PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}")
    res = run_install("--bundle", str(bundle), "--root", str(root), "--python", BASE_PYTHON, env=env)
    assert res.returncode == 69 and f"no wheels for {other}" in res.stderr, out(res)
    assert not any(root.iterdir())


def test_python_older_than_311_is_refused_before_anything_changes(bundle: Path, tmp_path: Path) -> None:
    old = tmp_path / "python3"
    # a real interpreter that reports itself as 3.7, as UOS 20 and Kylin V10 ship
    old.write_text(f'#!/bin/sh\n[ "$1" = -c ] || exit 1\n'
                   f'exec {BASE_PYTHON} -c "import sys; sys.version_info = (3, 7, 3, \'final\', 0)\n$2"\n')
    old.chmod(0o755)
    root = tmp_path / "root"
    root.mkdir()
    res = run_install("--bundle", str(bundle), "--root", str(root), "--python", str(old))
    assert res.returncode == 69, out(res)
    assert "needs Python >= 3.11" in res.stderr and "3.7" in res.stderr and "nothing was changed" in res.stderr
    assert not any(root.iterdir())


def test_usage_errors() -> None:
    assert run_install("--frobnicate").returncode == 2
    assert run_install("--purge").returncode == 2
    assert run_install("--suite", "rsa").returncode == 2
    res = run_install("--help")
    assert res.returncode == 0 and "--uninstall" in res.stdout and "--purge" in res.stdout


def test_needs_root_for_the_real_system(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        res = run_install("--uninstall")
    else:
        nobody = shutil.which("setpriv")
        if not nobody:
            pytest.skip("setpriv not available to drop root")
        # the checkout may sit under a directory only root can enter (a CI clone in a 0700 temp dir):
        # give the unprivileged user its own readable copy of the script's folder
        import tempfile

        shared = Path(tempfile.mkdtemp(prefix="edx-install-"))
        try:
            os.chmod(shared, 0o755)
            copy = shared / INSTALL.parent.name
            shutil.copytree(INSTALL.parent, copy)
            for p in [copy, *copy.rglob("*")]:
                os.chmod(p, 0o755 if p.is_dir() or os.access(p, os.X_OK) else 0o644)
            res = subprocess.run([nobody, "--reuid=65534", "--regid=65534", "--clear-groups", "bash",
                                  str(copy / INSTALL.name), "--uninstall"], capture_output=True, text=True,
                                 env=offline_env(), cwd="/")
        finally:
            shutil.rmtree(shared, ignore_errors=True)
    assert res.returncode == 77 and "root" in res.stderr, out(res)


def test_shellcheck_clean() -> None:
    exe = shutil.which("shellcheck")
    if not exe:  # a lint, not a service: skipped where the tool is absent (apt-get install shellcheck)
        pytest.skip("shellcheck is not installed")
    root = INSTALL.parents[1]
    res = subprocess.run([exe, str(INSTALL), str(root / "packaging/build-wheelhouse.sh"),
                          str(root / "scripts/i18n.sh")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


LIVE_SCRIPT = r"""
set -eu
W=$1; BUNDLE=$2; PY=$3; INSTALL=$4
for d in etc opt usr var; do
    mkdir -p "$W/$d.upper" "$W/$d.work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/$d.upper,workdir=$W/$d.work" "/$d"
done
bash "$INSTALL" --bundle "$BUNDLE" --python "$PY" --extras ""
echo "--- facts"
getent passwd edx-agent | cut -d: -f1,6,7
stat -c '%U:%G %a %n' /etc/edx-agent /etc/edx-agent/agent.toml /etc/edx-agent/credentials \
    /etc/edx-agent/credentials/db-password /var/lib/edx-agent /var/log/edx-agent
stat -c '%U %a keyfile' /var/lib/edx-agent/keys/current.json
readlink /etc/systemd/system/multi-user.target.wants/edx-agent.service || echo not-enabled
runuser -u edx-agent -- /opt/edx-agent/venv/bin/edx-agent --config /etc/edx-agent/agent.toml --json check
echo "--- purge"
bash "$INSTALL" --uninstall --purge
getent passwd edx-agent || echo user-gone
ls /etc/edx-agent /var/lib/edx-agent /opt/edx-agent 2>&1 | grep -c 'No such file'
"""


def test_live_install_as_root_in_a_private_mount_namespace(bundle: Path, tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare"):
        unavailable("root with unshare (mount namespaces)", PermissionError("not root"))
    probe = subprocess.run(["unshare", "--mount", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        unavailable("mount namespaces", OSError(probe.stderr.strip()))
    system_python = shutil.which("python3", path="/usr/bin:/bin")
    if not system_python or subprocess.run([system_python, "-c", "import sys, venv; sys.exit(sys.version_info < (3, 11))"]).returncode:
        unavailable("the OS's own python3 >= 3.11 in /usr/bin", FileNotFoundError("/usr/bin/python3"))
    script = tmp_path / "live.sh"
    script.write_text(LIVE_SCRIPT)
    res = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", str(script),
                          str(tmp_path), str(bundle), system_python, str(INSTALL)],
                         capture_output=True, text=True, env=offline_env(), timeout=600)
    assert res.returncode == 0, out(res)
    facts = res.stdout.split("--- facts\n", 1)[1]
    assert "edx-agent:/var/lib/edx-agent:/usr/sbin/nologin" in facts
    assert "root:edx-agent 750 /etc/edx-agent\n" in facts
    assert "root:edx-agent 640 /etc/edx-agent/agent.toml\n" in facts
    assert "root:root 700 /etc/edx-agent/credentials\n" in facts
    assert "root:root 600 /etc/edx-agent/credentials/db-password\n" in facts
    assert "edx-agent:edx-agent 700 /var/lib/edx-agent\n" in facts
    assert "edx-agent 600 keyfile" in facts  # made by `init` run as the service user
    assert "/etc/systemd/system/edx-agent.service" in facts  # enabled at boot
    assert '"ok": true' in facts  # the service user can read its config and keys
    assert "user-gone" in facts and facts.rstrip().endswith("3")
    # and the machine itself was not touched
    assert not Path("/etc/edx-agent").exists() and not Path("/opt/edx-agent").exists()
    assert subprocess.run(["getent", "passwd", "edx-agent"], capture_output=True).returncode != 0
