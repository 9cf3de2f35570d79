"""The self-contained bundle, built for real and installed into a bare Debian root that has no Python.

packaging/build-bundle.sh builds the bundle (and its .deb) once per session; each test unpacks a fresh
minbase Debian root made by debootstrap (cached as a tarball under /var/cache/edx-bundle-test, made
from scratch when missing), asserts that no python exists in it, and runs the bundle's installer and
the frozen agent inside it with chroot. The hub runs outside the root on 127.0.0.1 (a plain chroot
shares the network namespace, so loopback is shared). Needs root, unshare and debootstrap.

Slow: the first run takes about 30 minutes on 2 cores (the build root, SQLite, CPython and the test
root are made from scratch, then cached); with warm caches the whole file, build included, takes
about 5 minutes (measured: 4 min 50 s). So there is no separate CI-sized variant (one that skipped the
build would not prove the bundle): CI runs this file with --run-slow and keeps
/var/cache/edx-bundle-build and /var/cache/edx-bundle-test between runs (its cache key: the build
script, the spec and glibc-compat.h), which keeps it near 5 minutes.
EDX_TEST_BUNDLE=path/to/edx-agent-*.tar.gz tests an already built bundle (its .sha256 and the .deb
next to it) instead of building one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from agent import __version__, sample
from agent.localhub import LocalHub, free_port
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "packaging" / "build-bundle.sh"
BUILD_CACHE = Path(os.environ.get("EDX_BUNDLE_BUILD_CACHE", "/var/cache/edx-bundle-build"))
TEST_CACHE = Path(os.environ.get("EDX_BUNDLE_TEST_CACHE", "/var/cache/edx-bundle-test"))
SUITE = os.environ.get("EDX_BUNDLE_TEST_SUITE", "bullseye")  # the oldest Debian on deb.debian.org
MIRROR = os.environ.get("EDX_BUNDLE_TEST_MIRROR", "http://deb.debian.org/debian")
ARCH = os.uname().machine
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(ARCH, ARCH)
ROWS = 400
AGENT = "/opt/edx-agent/venv/bin/edx-agent"
CONF = "/etc/edx-agent/agent.toml"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.slow


# --- the bundle ------------------------------------------------------------------------------------

@dataclass
class Built:
    tarball: Path
    deb: Path
    seconds: float


def _needs_root_tools() -> None:
    if os.geteuid() != 0:
        unavailable("root (debootstrap, chroot)", PermissionError("not root"))
    for tool in ("debootstrap", "unshare", "chroot", "objdump", "dpkg-deb"):
        if not shutil.which(tool):
            unavailable(tool, FileNotFoundError(tool))


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    _needs_root_tools()
    given = os.environ.get("EDX_TEST_BUNDLE")
    if given:
        tarball = Path(given).resolve()
        (deb,) = tarball.parent.glob(f"edx-agent_*_{DEB_ARCH}.deb")
        return Built(tarball, deb, 0.0)
    out = tmp_path_factory.mktemp("bundle-dist")
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(BUILD), "--out", str(out), "--cache", str(BUILD_CACHE), "--deb"],
                         capture_output=True, text=True, env=dict(os.environ, PYTHON=sys.executable),
                         timeout=3 * 3600)
    assert res.returncode == 0, res.stderr[-6000:]
    tarball = Path(res.stdout.strip().splitlines()[-1])
    (deb,) = out.glob(f"edx-agent_*_{DEB_ARCH}.deb")
    return Built(tarball, deb, time.monotonic() - t0)


@pytest.fixture(scope="session")
def unpacked(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("bundle-unpacked")
    with tarfile.open(built.tarball) as tf:
        tf.extractall(dest, filter="tar")
    (top,) = dest.iterdir()
    return top


def build_info(bundle_dir: Path) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in (bundle_dir / "BUILD-INFO").read_text().splitlines() if ": " in line)


def elf_files(tree: Path) -> list[Path]:
    out = []
    for p in tree.rglob("*"):
        if p.is_file() and not p.is_symlink():
            with p.open("rb") as f:
                if f.read(4) == b"\x7fELF":
                    out.append(p)
    return out


def newest_glibc(files: list[Path]) -> tuple[int, ...]:
    """The newest GLIBC_x.y symbol version any of the ELF files refers to, measured with objdump -T."""
    res = subprocess.run(["objdump", "-T", *map(str, files)], capture_output=True, text=True)
    versions = {tuple(int(x) for x in v.split(".")) for v in re.findall(r"GLIBC_(\d+(?:\.\d+)+)", res.stdout)}
    return max(versions)


def reseal_and_pack(bundle_dir: Path, dest: Path) -> Path:
    """A bundle tarball (with its .sha256) from a directory, SHA256SUMS rewritten as a build would."""
    lines = []
    for f in sorted(p for p in bundle_dir.rglob("*") if p.is_file() and not p.is_symlink() and p.name != "SHA256SUMS"):
        lines.append(f"{hashlib.sha256(f.read_bytes()).hexdigest()}  {f.relative_to(bundle_dir).as_posix()}\n")
    (bundle_dir / "SHA256SUMS").write_text("".join(lines))
    dest.mkdir(parents=True, exist_ok=True)
    tarball = dest / f"{bundle_dir.name}.tar.gz"
    with tarfile.open(tarball, "w:gz", compresslevel=1) as tf:
        tf.add(bundle_dir, arcname=bundle_dir.name)
    digest = hashlib.sha256(tarball.read_bytes()).hexdigest()
    (dest / f"{tarball.name}.sha256").write_text(f"{digest}  {tarball.name}\n")
    return tarball


# --- the bare Debian root ----------------------------------------------------------------------------

def base_root_tarball() -> Path:
    """A minbase Debian root as a tarball, made with debootstrap the first time and cached."""
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    tar = TEST_CACHE / f"{SUITE}-minbase-{DEB_ARCH}.tar.gz"
    if tar.exists():
        return tar
    work = Path(subprocess.run(["mktemp", "-d", "/var/tmp/edx-testroot.XXXXXX"], capture_output=True, text=True,
                               check=True).stdout.strip())
    try:
        res = subprocess.run(["debootstrap", "--variant=minbase", f"--arch={DEB_ARCH}", SUITE, str(work / "root"), MIRROR],
                             capture_output=True, text=True, timeout=3600)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        subprocess.run(["tar", "-C", str(work / "root"), "--numeric-owner", "-czf", f"{tar}.tmp", "."], check=True)
        os.replace(f"{tar}.tmp", tar)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tar


@pytest.fixture(scope="session")
def root_tarball() -> Path:
    _needs_root_tools()
    return base_root_tarball()


@pytest.fixture
def root(root_tarball: Path, tmp_path: Path) -> Path:
    """A fresh bare Debian root (no Python), unpacked from the cached debootstrap tarball."""
    r = tmp_path / "root"
    r.mkdir()
    subprocess.run(["tar", "-C", str(r), "--numeric-owner", "-xzf", str(root_tarball)], check=True)
    return r


# Runs a command inside the root: /proc and /dev mounted in a private mount namespace (gone when the
# command ends), a clean environment. Every exec is in place, so the command keeps the caller's pid.
IN_ROOT = r'''r=$1; shift
mount -t proc proc "$r/proc"
mount --rbind /dev "$r/dev"
exec chroot "$r" /usr/bin/env -i "$@"'''


def root_cmd(root: Path, *cmd: str, env: dict[str, str] | None = None, user: str | None = None) -> list[str]:
    envs = [f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root", *(f"{k}={v}" for k, v in (env or {}).items())]
    if user:  # setpriv execs in place (runuser would fork), so a daemon keeps the pid we signal
        cmd = ("setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", *cmd)
    return ["unshare", "--mount", "--propagation", "private", "bash", "-c", IN_ROOT, "in_root", str(root),
            *envs, *cmd]


def in_root(root: Path, *cmd: str, env: dict[str, str] | None = None, user: str | None = None,
            timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(root_cmd(root, *cmd, env=env, user=user), capture_output=True, text=True,
                          timeout=timeout)


def out(res: subprocess.CompletedProcess[str]) -> str:
    return f"exit {res.returncode}\nstdout: {res.stdout[-4000:]}\nstderr: {res.stderr[-4000:]}"


def assert_no_python(root: Path) -> None:
    res = in_root(root, "sh", "-c", "command -v python3 || command -v python || ls /usr/bin/python* /usr/local/bin/python*")
    assert res.returncode != 0 and not res.stdout.strip(), f"the root has a Python: {res.stdout}"
    found = [p for d in ("usr/bin", "usr/local/bin", "bin") for p in (root / d).glob("python*")]
    assert not found, found


def assert_untouched(root: Path) -> None:
    for p in ("opt/edx-agent", "etc/edx-agent", "var/lib/edx-agent", "etc/systemd/system/edx-agent.service",
              "usr/lib/sysusers.d/edx-agent.conf"):
        assert not (root / p).exists(), f"{p} was created although the install was refused"
    assert "edx-agent:" not in (root / "etc/passwd").read_text()


def copy_in(root: Path, *files: Path, where: str = "srv/media") -> list[str]:
    (root / where).mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, root / where / f.name)
    return [f"/{where}/{f.name}" for f in files]


def install(root: Path, tarball: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """What an operator does: unpack the bundle on the machine and run its install.sh with --bundle."""
    (inside, _sum) = copy_in(root, tarball, tarball.with_name(tarball.name + ".sha256"))
    unpacked_dir = f"/srv/media/{tarball.name.removesuffix('.tar.gz')}"
    shutil.rmtree(root / unpacked_dir.lstrip("/"), ignore_errors=True)
    res = in_root(root, "tar", "-xzf", inside, "-C", "/srv/media")
    assert res.returncode == 0, out(res)
    return in_root(root, "bash", f"{unpacked_dir}/install.sh", "--bundle", inside, *args, env=env)


def configure(root: Path, hub_url: str, health_port: int) -> None:
    conf = root / CONF.lstrip("/")
    text = conf.read_text()
    text = text.replace('[hub]\n', '[hub]\n', 1)
    text = re.sub(r'(?m)^url = ""$', f'url = "{hub_url}"', text, count=1)  # [hub] url is the first empty url
    text = text.replace('listen = "127.0.0.1:9464"', f'listen = "127.0.0.1:{health_port}"')
    assert hub_url in text and str(health_port) in text
    conf.write_text(text)


def student_rows(db: Path) -> dict[str, tuple]:
    con = sqlite3.connect(db)
    try:
        return {r[0]: r for r in con.execute("SELECT student_id, name, school_name, score FROM student")}
    finally:
        con.close()


def wait_ready(sock: socket.socket, proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Seconds until the daemon sends READY=1 on NOTIFY_SOCKET (as systemd's Type=notify waits for)."""
    t0 = time.monotonic()
    sock.settimeout(0.05)
    while time.monotonic() - t0 < timeout:
        try:
            msg = sock.recv(4096).decode()
        except TimeoutError:
            if proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {proc.returncode} before READY=1") from None
            continue
        if "READY=1" in msg.split("\n"):
            return time.monotonic() - t0
    raise AssertionError(f"no READY=1 within {timeout}s")


# --- the tests -----------------------------------------------------------------------------------------

def test_bundle_contents_checksum_and_minimum_glibc(built: Built, unpacked: Path) -> None:
    assert re.fullmatch(rf"edx-agent-{re.escape(__version__)}-linux-{ARCH}\.tar\.gz", built.tarball.name)
    line = built.tarball.with_name(built.tarball.name + ".sha256").read_text()
    assert line.split() == [hashlib.sha256(built.tarball.read_bytes()).hexdigest(), built.tarball.name]
    info = build_info(unpacked)
    assert info["kind"] == "self-contained" and info["version"] == __version__ and info["architecture"] == ARCH
    for f in ("install.sh", "edx-agent.service", "agent.example.toml", "README.txt", "docs/operations.md",
              "docs/operations.zh.md", "examples/native-db-client.conf", "edx-agent/edx-agent"):
        assert (unpacked / f).is_file(), f
    internal = unpacked / "edx-agent/_internal"
    # the catalogs, and the metadata that makes the connectors' entry points resolve when frozen
    assert (internal / "agent/locale/zh_CN/LC_MESSAGES/edx_agent.mo").is_file()
    (dist_info,) = internal.glob("edx_agent-*.dist-info")
    eps = (dist_info / "entry_points.txt").read_text()
    for name in ("sqlite", "mysql", "postgresql", "oracle", "sqlserver"):
        assert re.search(rf"(?m)^{name} = connectors\.", eps), name
    # pyodbc is in, the ODBC driver manager is not (it comes from the OS, with the vendor's driver)
    assert list(internal.glob("pyodbc*.so")) and not list(internal.rglob("libodbc*"))
    readme = (unpacked / "README.txt").read_text()
    assert "msodbcsql18" in readme and "unixODBC" in readme
    # every file is under SHA256SUMS
    listed = {ln.split("  ", 1)[1] for ln in (unpacked / "SHA256SUMS").read_text().splitlines()}
    files = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file() and not p.is_symlink()}
    assert files - {"SHA256SUMS"} == listed
    # the minimum glibc it states is what its ELF files really need, and it is not the build host's
    need = newest_glibc(elf_files(unpacked / "edx-agent"))
    assert info["glibc"] == ">= " + ".".join(map(str, need)), (info["glibc"], need)
    # 2.28: Kylin V10, UOS 20, CentOS/RHEL 8 (packaging/glibc-compat.h keeps libm's 2.29 symbols out)
    assert need <= (2, 28), f"the bundle needs glibc {need}: it would not run on Kylin V10 / UOS 20 (2.28)"
    sqlite_version = tuple(int(x) for x in info["sqlite"].split()[0].split("."))
    assert sqlite_version >= (3, 37), info["sqlite"]  # STRICT tables (the SQLite connector)


def test_installs_and_syncs_in_a_bare_debian_root_without_python(built: Built, unpacked: Path, root: Path,
                                                                tmp_path: Path) -> None:
    assert_no_python(root)
    glibc = in_root(root, "getconf", "GNU_LIBC_VERSION").stdout.split()[1]

    res = install(root, built.tarball)
    assert res.returncode == 0, out(res)
    assert "self-contained" in res.stdout and "Next steps" in res.stdout
    assert_no_python(root)  # the installer brought none either
    # the service user, the directories, the unit pointing at the bundle's executable, a key pair
    assert re.search(r"(?m)^edx-agent:x:\d+:\d+:.*:/var/lib/edx-agent:/usr/sbin/nologin$", (root / "etc/passwd").read_text())
    unit = (root / "etc/systemd/system/edx-agent.service").read_text()
    assert f"ExecStart={AGENT} --config {CONF} run" in unit
    exe = root / AGENT.lstrip("/")
    assert exe.is_file() and (exe.parent / "_internal").is_dir()
    assert os.readlink(root / "opt/edx-agent/venv").startswith("releases/")
    assert list((root / "var/lib/edx-agent/keys").glob("*.json"))
    st = os.stat(root / "var/lib/edx-agent")
    assert (st.st_mode & 0o777) == 0o700 and st.st_uid != 0

    version = in_root(root, AGENT, "version")
    assert version.returncode == 0, out(version)
    assert version.stdout.splitlines()[0] == f"edx-agent {__version__}"
    assert f"glibc{glibc}" in version.stdout  # it runs on the root's C library, not the host's

    with LocalHub(tmp_path / "hub") as hub:
        snap = tmp_path / "snap.jsonl"
        schema = tmp_path / "student.schema.json"
        sample.write_schema(schema)
        sample.write_jsonl(snap, sample.snapshot(ROWS))
        hub.admin("publish", "student", str(snap), "--kind", "snapshot", "--schema", str(schema))
        health = free_port()
        configure(root, hub.url, health)
        chk = in_root(root, AGENT, "--config", CONF, "check", env={"CREDENTIALS_DIRECTORY": "/etc/edx-agent/credentials"})
        assert chk.returncode == 0 and "configuration is valid" in chk.stdout, out(chk)
        token = hub.admin("token", "create", "--unit", "school-bundle", "--datasets", "student").stdout.strip()
        enrol = in_root(root, AGENT, "--config", CONF, "enrol", "--token", token, user="edx-agent")
        assert enrol.returncode == 0, out(enrol)

        t0 = time.monotonic()
        sync = in_root(root, AGENT, "--config", CONF, "sync", "--once", "--json", user="edx-agent")
        first_sync = time.monotonic() - t0
        assert sync.returncode == 0, out(sync)
        assert json.loads(sync.stdout)["batches"] == 1
        rows = student_rows(root / "var/lib/edx-agent/edu.db")
        expected = {r["student_id"]: r for r in sample.snapshot(ROWS)}
        assert len(rows) == ROWS and rows.keys() == expected.keys()
        for sid, (_, name, school, score) in rows.items():
            assert (name, school) == (expected[sid]["name"], expected[sid]["school_name"])
            assert (score is None) == (expected[sid]["score"] is None)
        print(f"\nfirst sync ({ROWS} rows) in the root: {first_sync:.2f}s")

        # the daemon as systemd would start it: READY=1 on $NOTIFY_SOCKET within 2 s
        name = f"edx-notify-{os.getpid()}-{time.monotonic_ns()}"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as ns:
            ns.bind("\0" + name)  # abstract: per network namespace, which the chroot shares
            t0 = time.monotonic()
            daemon = subprocess.Popen(root_cmd(root, AGENT, "--config", CONF, "run", env={"NOTIFY_SOCKET": "@" + name},
                                               user="edx-agent"),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                ready = wait_ready(ns, daemon, timeout=60)
                print(f"daemon start-up to READY=1: {ready:.2f}s")
                assert ready <= 2.0, f"the daemon took {ready:.2f}s to be ready"
                assert requests.get(f"http://127.0.0.1:{health}/healthz", timeout=5).ok

                # a failed upgrade: the running daemon and the active release stay, and it says why
                before = os.readlink(root / "opt/edx-agent/venv")
                bad_dir = tmp_path / "bad" / unpacked.name
                shutil.copytree(unpacked, bad_dir, symlinks=True)
                for so in (bad_dir / "edx-agent/_internal/cryptography/hazmat/bindings").glob("_rust*.so"):
                    so.unlink()  # a broken build: the crypto library is missing
                bad = reseal_and_pack(bad_dir, tmp_path / "bad-dist")
                res = install(root, bad)
                assert res.returncode == 1, out(res)
                assert "failed its self-test" in res.stderr and before.split("/")[-1] in res.stderr, out(res)
                # the reason: the self-test step that failed, and the agent's own error naming the module
                assert "edx-agent selftest failed" in res.stderr and "No module named 'cryptography.hazmat.bindings._rust'" \
                    in res.stderr, out(res)
                assert os.readlink(root / "opt/edx-agent/venv") == before
                assert daemon.poll() is None, "the running daemon was disturbed by the failed upgrade"
                assert requests.get(f"http://127.0.0.1:{health}/healthz", timeout=5).ok
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    rc = daemon.wait(30)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    rc = daemon.wait()
            log = daemon.stdout.read().decode(errors="replace") if daemon.stdout else ""
            assert rc == 0, log[-3000:]

        # a good upgrade (a rebuild of the same version) keeps the configuration, keys and state
        keys = {p.name: p.read_bytes() for p in (root / "var/lib/edx-agent/keys").glob("*.json")}
        conf_before = (root / CONF.lstrip("/")).read_text()
        new_dir = tmp_path / "new" / unpacked.name
        shutil.copytree(unpacked, new_dir, symlinks=True)
        (new_dir / "REBUILD").write_text("same version, rebuilt\n")
        res = install(root, reseal_and_pack(new_dir, tmp_path / "new-dist"))
        assert res.returncode == 0, out(res)
        assert "kept the existing configuration" in res.stdout and f"previous: {before.split('/')[-1]}" in res.stdout
        assert (root / CONF.lstrip("/")).read_text() == conf_before
        assert {p.name: p.read_bytes() for p in (root / "var/lib/edx-agent/keys").glob("*.json")} == keys
        again = in_root(root, AGENT, "--config", CONF, "sync", "--once", "--json", user="edx-agent")
        assert again.returncode == 0 and json.loads(again.stdout)["batches"] == 0, out(again)
        back = in_root(root, "bash", "/opt/edx-agent/share/install.sh", "--rollback")
        assert back.returncode == 0 and os.readlink(root / "opt/edx-agent/venv") == before, out(back)


def test_drivers_and_entry_points_resolve_in_the_frozen_agent(built: Built, root: Path) -> None:
    res = install(root, built.tarball)
    assert res.returncode == 0, out(res)
    conf = (root / CONF.lstrip("/")).read_text()
    urls = {"mysql": "mysql+pymysql://edx@127.0.0.1:9/edu", "postgresql": "postgresql+psycopg://edx@127.0.0.1:9/edu",
            "oracle": "oracle+oracledb://edx@127.0.0.1:9/?service_name=EDU", "sqlite": "sqlite:////var/lib/edx-agent/x.db",
            "sqlserver": "mssql+pyodbc://edx@127.0.0.1:9/edu"}
    results = {}
    for name, url in urls.items():
        p = root / f"etc/edx-agent/{name}.toml"
        p.write_text(conf.replace('url = "sqlite:////var/lib/edx-agent/edu.db"', f'url = "{url}"'))
        res = in_root(root, AGENT, "--config", f"/etc/edx-agent/{name}.toml", "check", "--json",
                      env={"CREDENTIALS_DIRECTORY": "/etc/edx-agent/credentials"})
        results[name] = (res.returncode, json.loads(res.stdout))
    # connectors found through their entry points, drivers importable (nothing connects in `check`)
    for name in ("mysql", "postgresql", "oracle", "sqlite"):
        assert results[name] == (0, {"ok": True, "problems": []}), (name, results[name])
    # SQL Server: pyodbc is bundled, the ODBC driver manager and Microsoft's driver are the OS's
    code, report = results["sqlserver"]
    assert code == 78 and len(report["problems"]) == 1, report
    assert "database.url" in report["problems"][0] and "libodbc" in report["problems"][0], report
    doc = in_root(root, AGENT, "--config", "/etc/edx-agent/sqlserver.toml", "doctor", "--json",
                  env={"CREDENTIALS_DIRECTORY": "/etc/edx-agent/credentials"})
    steps = {s["name"]: s for s in json.loads(doc.stdout)["steps"]}
    db = steps["database_connect"]
    assert not db["ok"] and "msodbcsql18" in json.dumps(db) and "unixODBC" in json.dumps(db), db
    # and the Chinese catalog is there
    zh = in_root(root, AGENT, "--lang", "zh", "--config", CONF, "check")
    assert "配置" in zh.stdout + zh.stderr, out(zh)


def test_a_bundle_whose_checksum_does_not_match_is_refused(built: Built, root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad" / built.tarball.name
    bad.parent.mkdir()
    data = bytearray(built.tarball.read_bytes())
    data[len(data) // 2] ^= 0x01
    bad.write_bytes(bytes(data))
    shutil.copy(built.tarball.with_name(built.tarball.name + ".sha256"), bad.parent)
    inside, _ = copy_in(root, bad, bad.with_name(bad.name + ".sha256"), where="srv/damaged")
    # the operator runs the installer of a good copy against the damaged tarball
    in_root(root, "mkdir", "-p", "/srv/good")
    (good,) = copy_in(root, built.tarball)[:1]
    assert in_root(root, "tar", "-xzf", good, "-C", "/srv/good").returncode == 0
    installer = f"/srv/good/{built.tarball.name.removesuffix('.tar.gz')}/install.sh"
    res = in_root(root, "bash", installer, "--bundle", inside)
    assert res.returncode == 65 and "checksum mismatch" in res.stderr and "nothing was changed" in res.stderr, out(res)
    assert_untouched(root)

    # a tarball whose own checksum matches but whose content was changed after the build
    tampered = tmp_path / "tampered" / built.tarball.name.removesuffix(".tar.gz")
    with tarfile.open(built.tarball) as tf:
        tf.extractall(tampered.parent, filter="tar")
    (tampered / "edx-agent.service").write_text((tampered / "edx-agent.service").read_text() + "\nUser=root\n")
    sums = (tampered / "SHA256SUMS").read_text()
    repacked = reseal_and_pack(tampered, tmp_path / "tampered-dist")
    (tampered / "SHA256SUMS").write_text(sums)  # the attacker could not re-sign SHA256SUMS: put the old one back
    with tarfile.open(repacked, "w:gz", compresslevel=1) as tf:
        tf.add(tampered, arcname=tampered.name)
    repacked.with_name(repacked.name + ".sha256").write_text(
        f"{hashlib.sha256(repacked.read_bytes()).hexdigest()}  {repacked.name}\n")
    inside, _ = copy_in(root, repacked, repacked.with_name(repacked.name + ".sha256"), where="srv/tampered")
    res = in_root(root, "bash", installer, "--bundle", inside)
    assert res.returncode == 65 and "do not match its SHA256SUMS" in res.stderr, out(res)
    assert "edx-agent.service" in res.stderr
    assert_untouched(root)


def test_an_unsupported_machine_is_refused_before_anything_changes(built: Built, root: Path) -> None:
    def fake(tool: str, script: str) -> None:
        p = root / "usr/local/bin" / tool
        p.write_text("#!/bin/sh\n" + script + "\n")
        p.chmod(0o755)

    fake("uname", 'if [ "$1" = -m ]; then echo mips64; else /bin/uname "$@"; fi')
    res = install(root, built.tarball)
    assert res.returncode == 69, out(res)
    assert "unsupported architecture mips64" in res.stderr and "nothing was changed" in res.stderr
    assert_untouched(root)
    res = install(root, built.tarball, env={"LANG": "zh_CN.UTF-8"})
    assert res.returncode == 69 and "不支持的处理器架构 mips64" in res.stderr, out(res)

    other = "aarch64" if ARCH == "x86_64" else "x86_64"
    fake("uname", f'if [ "$1" = -m ]; then echo {other}; else /bin/uname "$@"; fi')
    res = install(root, built.tarball)
    assert res.returncode == 69, out(res)
    assert f"this bundle is for {ARCH} but this machine is {other}" in res.stderr, out(res)
    assert_untouched(root)

    (root / "usr/local/bin/uname").unlink()
    fake("getconf", 'if [ "$1" = GNU_LIBC_VERSION ]; then echo "glibc 2.17"; else /usr/bin/getconf "$@"; fi')
    res = install(root, built.tarball)
    assert res.returncode == 69, out(res)
    assert "needs glibc >=" in res.stderr and "this machine has 2.17" in res.stderr, out(res)
    assert_untouched(root)


def test_the_deb_package_installs_runs_and_removes(built: Built, root: Path) -> None:
    assert_no_python(root)
    (deb,) = copy_in(root, built.deb)
    res = in_root(root, "dpkg", "-i", deb)
    assert res.returncode == 0, out(res)
    assert "self-contained" in res.stdout
    ver = in_root(root, AGENT, "version")
    assert ver.returncode == 0 and ver.stdout.startswith(f"edx-agent {__version__}"), out(ver)
    assert "edx-agent:" in (root / "etc/passwd").read_text()
    # the release shares the package's files (hard links), it is not a second copy
    exe = root / AGENT.lstrip("/")
    assert exe.resolve().stat().st_ino == (root / "usr/lib/edx-agent/bundle/edx-agent/edx-agent").stat().st_ino
    # the package's status says installed, with the version of the bundle
    st = in_root(root, "dpkg-query", "-W", "-f", "${Status} ${Version}", "edx-agent")
    assert st.stdout.startswith("install ok installed " + __version__), out(st)
    # remove keeps the configuration and state; purge deletes them
    res = in_root(root, "dpkg", "-r", "edx-agent")
    assert res.returncode == 0, out(res)
    assert not (root / "opt/edx-agent").exists() and (root / CONF.lstrip("/")).exists()
    assert list((root / "var/lib/edx-agent/keys").glob("*.json"))
    res = in_root(root, "dpkg", "-P", "edx-agent")
    assert res.returncode == 0, out(res)
    assert not (root / "etc/edx-agent").exists() and not (root / "var/lib/edx-agent").exists()
    assert "edx-agent:" not in (root / "etc/passwd").read_text()
