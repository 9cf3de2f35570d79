"""The other fault kinds at named steps: database link cut, database restart, fsync error, disk full.

Each case holds the agent at a named step (``EDX_FAULTS=STEP:hold``), makes the fault happen from the test
at exactly that moment, releases the agent and lets it finish or fail. The agent must end with 0 or a coded
error (never an internal error, never a hang), the target must hold exactly the published state at its
checkpoint, the status file must not claim more than the checkpoint holds, and a fresh run after the fault
is removed must bring the whole stream in with each batch applied once.

* link cut: a FaultProxy between agent and MariaDB/PostgreSQL resets every connection;
* restart: the real server is restarted with the commands of tests/README (few, they disturb other users
  of the shared server; the full sweep is ``--run-slow``);
* fsync: libfiu (``fiu-run -x``; ``fiu-ctrl`` turns ``posix/io/sync/*`` failures on at the held step) -
  FsyncFailed is terminal: the daemon stops the dataset, reports it, and does not retry the write;
* disk full: the agent's state and spool on a 2 MiB tmpfs filled up at the held step.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.faults import STEPS

from .faultproxy import FaultProxy
from .harness import AGENT_TIMEOUT, Run, assert_clean_exit, wait_for

SERVER_PARAMS = [pytest.param("mysql", marks=pytest.mark.mysql),
                 pytest.param("postgresql", marks=pytest.mark.postgresql)]


def held(rig, step: str, fault, *, prefix: list[str] | None = None) -> Run:
    """Run ``sync --once`` held at ``step``, call ``fault(pid)``, release, return the finished run."""
    for f in rig.faults_dir.glob("hold.*"):
        f.unlink()
    t0 = time.monotonic()
    proc = rig.spawn("sync", "--once", faults=f"{step}:hold", prefix=prefix)
    flag = wait_for(lambda: next(iter(rig.faults_dir.glob(f"hold.{step}.*")), None) or proc.poll() is not None,
                    AGENT_TIMEOUT, f"the agent to reach {step}")
    if flag is True:
        out, err = proc.communicate()
        raise AssertionError(f"{step} was never reached (exit {proc.returncode})\n{out}\n{err}")
    fault(proc.pid)
    rig.faults_injected += 1
    flag.unlink()
    try:
        out, err = proc.communicate(timeout=AGENT_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"the agent hung after the fault at {step}\n{out[-2000:]}\n{err[-2000:]}") from None
    run = Run(("sync", "--once"), proc.returncode, out, err, time.monotonic() - t0)
    rig.runs.append(run)
    return run


def status_not_ahead(rig) -> None:
    for ds in rig.datasets:
        st = rig.status()["datasets"].get(ds, {})
        cp = rig.target.checkpoint(ds)[0]
        assert int(st.get("last_seq") or 0) <= cp, f"status claims #{st.get('last_seq')}, checkpoint is #{cp}"


def one_fault(rig, step: str, fault, codes: tuple[str, ...], prefix=None, kind: str = "changes") -> Run:
    rig.publish(kind)
    run = held(rig, step, fault, prefix=prefix)
    assert_clean_exit(run)
    if run.returncode != 0:
        assert any(c in run.stdout + run.stderr for c in codes), f"expected one of {codes}\n{run.text}"
    rig.check(allow_snapshot_ahead=rig.backend == "mysql")
    status_not_ahead(rig)
    return run


# --- database link cut ---------------------------------------------------------------------------------

CUT_STEPS_DEFAULT = ("staging_load", "checkpoint_write", "commit")


def link_cut(backend, make_rig, steps) -> int:
    with FaultProxy(0) as proxy:
        rig = make_rig(backend, db_proxy=proxy)
        rig.publish("snapshot")
        rig.recover()
        failed = 0
        for i, step in enumerate(steps):
            run = one_fault(rig, step, lambda pid: proxy.sever(), ("database-unavailable",),
                            kind="snapshot" if i % 3 == 2 else "changes")
            failed += run.returncode != 0
            rig.recover()
            rig.check(complete=True)
        return failed


@pytest.mark.parametrize("backend", SERVER_PARAMS)
def test_database_link_cut_at_steps(backend, make_rig):
    failed = link_cut(backend, make_rig, CUT_STEPS_DEFAULT)
    assert failed >= 2, "the cut inside the transaction must fail the run"


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVER_PARAMS)
def test_database_link_cut_at_every_step(backend, make_rig):
    link_cut(backend, make_rig, STEPS)


# --- database restart ----------------------------------------------------------------------------------

def restart_server(backend: str) -> None:
    if backend == "mysql":
        subprocess.run(["start-stop-daemon", "--stop", "--retry", "30", "--exec", "/usr/sbin/mariadbd"], check=False,
                       timeout=120)
        subprocess.run(["start-stop-daemon", "--start", "--oknodo", "--background", "--exec", "/usr/sbin/mariadbd"],
                       check=True, timeout=60)
        url = "mysql+pymysql://root@127.0.0.1:3306/"
    else:
        ver = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1]
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", ver, "main", "restart"], check=True,
                       timeout=120)
        url = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

    def up() -> bool:
        eng = sa.create_engine(url, poolclass=sa.pool.NullPool)
        try:
            with eng.connect() as c:
                c.exec_driver_sql("SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False
        finally:
            eng.dispose()
    wait_for(up, 120, f"{backend} to accept connections again", poll=0.5)


def restarts(backend, make_rig, steps) -> None:
    rig = make_rig(backend)
    rig.publish("snapshot")
    rig.recover()
    for step in steps:
        one_fault(rig, step, lambda pid: restart_server(backend), ("database-unavailable",))
        rig.recover()
        rig.check(complete=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVER_PARAMS)
def test_database_restart_at_commit(backend, make_rig):
    restarts(backend, make_rig, ("checkpoint_write", "committed"))


@pytest.mark.slow
@pytest.mark.parametrize("backend", SERVER_PARAMS)
def test_database_restart_at_every_step(backend, make_rig):
    restarts(backend, make_rig, STEPS)


# --- fsync errors (libfiu) -----------------------------------------------------------------------------

FIU = shutil.which("fiu-run")


def fiu_enable(pid: int) -> None:
    subprocess.run(["fiu-ctrl", "-c", "enable name=posix/io/sync/*,failinfo=5", str(pid)], check=True, timeout=30)


FSYNC_STEPS_DEFAULT = ("download_chunk", "staging_load", "commit", "acked")


def fsync_sweep(backend, make_rig, steps) -> dict[str, str]:
    rig = make_rig(backend)
    rig.publish("snapshot")
    rig.recover()
    outcome = {}
    for step in steps:
        run = one_fault(rig, step, fiu_enable, ("fsync-failed", "audit-write-failed", "database"),
                        prefix=["fiu-run", "-x"])
        outcome[step] = "ok" if run.returncode == 0 else next(
            (c for c in ("fsync-failed", "audit-write-failed", "database-unavailable", "database-error") if c in run.stdout + run.stderr), "?")
        if backend == "sqlite":
            with rig.target.engine.connect() as c:
                assert c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        rig.recover()
        rig.check(complete=True)
    print(f"[fsync {backend}] {outcome}")
    return outcome


@pytest.mark.skipif(FIU is None, reason="needs fiu-utils (apt-get install fiu-utils)")
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.slow])])
def test_fsync_error_at_steps(backend, make_rig):
    outcome = fsync_sweep(backend, make_rig, FSYNC_STEPS_DEFAULT)
    assert outcome["download_chunk"] in ("fsync-failed", "audit-write-failed"), outcome


@pytest.mark.slow
@pytest.mark.skipif(FIU is None, reason="needs fiu-utils (apt-get install fiu-utils)")
@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql),
                                     pytest.param("postgresql", marks=pytest.mark.postgresql)])
def test_fsync_error_at_every_step(backend, make_rig):
    fsync_sweep(backend, make_rig, STEPS)


@pytest.mark.skipif(FIU is None, reason="needs fiu-utils (apt-get install fiu-utils)")
def test_fsync_failure_stops_the_dataset_in_the_daemon_and_is_reported(make_rig):
    """PostgreSQL's fsyncgate lesson: after a failed fsync the write is not retried; the dataset stops and says so."""
    rig = make_rig("sqlite", datasets=["student", "other"],
                   extra_config={"sync": {"interval": "1s", "jitter": "0s"}, "heartbeat": {"interval": "1s"},
                                 "health": {"enabled": False}})
    for ds in rig.datasets:
        rig.publish("snapshot", ds)
    rig.recover()
    proc = rig.spawn("run", "--stop-timeout", "5s", prefix=["fiu-run", "-x"])
    try:
        time.sleep(3)
        assert proc.poll() is None
        # only the spool's fsync fails: the database and the status file keep working
        subprocess.run(["fiu-ctrl", "-c", "enable name=posix/io/sync/fsync,failinfo=5", str(proc.pid)],
                       check=True, timeout=30)
        rig.publish("changes", "student")
        with rig.hubctx.engine.connect() as c:
            def reported() -> dict | None:
                raw = c.execute(sa.text("SELECT heartbeat_json FROM hub_agents WHERE agent_id = :a"),
                                {"a": rig.agent_id}).scalar()
                c.rollback()
                for d in (json.loads(raw)["datasets"] if raw else []):
                    if d["dataset"] == "student" and (d.get("last_error") or {}).get("code") == "fsync-failed":
                        return d
                return None
            try:
                hb = wait_for(reported, 60, "the heartbeat to report fsync-failed", poll=0.5)
            except AssertionError as e:
                proc.send_signal(signal.SIGTERM)
                out, err = proc.communicate(timeout=60)
                raise AssertionError(f"{e}\nstatus {json.dumps(rig.status())}\n{out[-4000:]}\n{err[-2000:]}") from None
        assert hb["state"] == "stopped", hb
        status_not_ahead(rig)   # status.json itself cannot be written now (same disk): the heartbeat reports
        before = rig.target.checkpoint("student")
        time.sleep(4)   # several sync intervals and watchdog ticks: a stopped dataset is not retried
        assert rig.target.checkpoint("student") == before
        assert not list((rig.spool_path / "student").glob("*.edx")), "a batch whose fsync failed was kept as complete"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    stops = out.count('"dataset_stopped"')
    assert '"dataset_resumed"' not in out and stops == 1, f"the failed fsync was retried ({stops} stops)\n{out[-3000:]}"
    rig.check()
    rig.recover()
    rig.check(complete=True)


# --- disk full (tmpfs) ---------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    d = tmp_path / "smalldisk"
    d.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(d)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {res.stderr.strip()}")
    yield d
    subprocess.run(["umount", "-l", str(d)], check=False)


def fill(disk: Path) -> None:
    with open(disk / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass


@pytest.mark.parametrize("step", ["download_chunk", pytest.param("commit", marks=pytest.mark.slow),
                                  pytest.param("acked", marks=pytest.mark.slow)])
def test_disk_full_at_step(step, small_disk, make_rig):
    rig = make_rig("sqlite", state_dir=small_disk / "state", base_rows=300)
    rig.publish("snapshot")
    rig.recover()
    rig.publish("changes", rows=8000 if step == "download_chunk" else 50)  # > 64 KiB: a second chunk
    run = held(rig, step, lambda pid: fill(small_disk))
    assert_clean_exit(run)
    if run.returncode != 0:
        assert "spool-full" in run.stdout + run.stderr, run.text
    if step == "download_chunk":
        assert run.returncode != 0, run.text
    rig.check()
    status_not_ahead(rig)
    assert not list(small_disk.rglob("*.tmp*")), "a temporary file was left on the full disk"
    (small_disk / "filler").unlink()
    rig.recover()
    rig.check(complete=True)


def test_complete_part_file_left_by_a_crash_is_not_a_dead_end(make_rig):
    """Regression: a .part holding every byte (crash or fsync error between the last write and the rename)
    made the resume ask for ``bytes=SIZE-``; the hub's 416 was a terminal protocol error, for ever."""
    from .test_tamper_pipeline import Tamper

    rig = make_rig("sqlite")
    rig.publish("snapshot")
    rig.recover()
    rig.publish("changes")
    t = Tamper(rig)
    try:
        data = t.download(2)
    finally:
        t.close()
    part = rig.spool_path / "student" / "000000000002.edx.part"
    part.write_bytes(data)
    rig.recover(attempts=1)
    rig.check(complete=True)
