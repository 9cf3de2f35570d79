"""A unit's first hour, as a new user drives it from an empty directory against the real hub and MariaDB:
init → check (a broken config first) → enrol → doctor → test → run under a supervisor → status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import sqlalchemy as sa

from agent.localhub import free_port
from tests.conftest import fresh_mysql_database
from tests.daemon.conftest import NotifySocket, wait_for

from .conftest import expected_state


@pytest.mark.mysql
def test_first_hour_on_mariadb(hub, agent_cli, sample_files):
    url, drop = fresh_mysql_database()
    notify = NotifySocket()
    proc = None
    try:
        # 1. init writes a commented config and keys
        out = agent_cli("init", "--database", url, "--hub", hub.url).stdout
        assert "agent.toml" in out
        good = agent_cli.config.read_text()

        # 2. a deliberately broken config: every problem with its path and a hint, exit 78
        agent_cli.config.write_text(good.replace('interval = "5m"', 'intervall = "5m"')
                                    .replace('quarantine_limit = 0.01', 'quarantine_limit = 3'))
        bad = agent_cli("check", check=False)
        assert bad.returncode == 78
        assert "sync.intervall: unknown setting (did you mean 'interval'?)" in bad.stdout
        assert "sync.quarantine_limit" in bad.stdout
        health = free_port()
        agent_cli.config.write_text(good.replace('interval = "5m"', 'interval = "1s"')
                                    + f'\n[health]\nlisten = "127.0.0.1:{health}"\n')
        assert agent_cli("check").returncode == 0

        # 3. enrol with the platform's one-time token
        token = hub.admin("token", "create", "--unit", "school-first", "--datasets", "student").stdout.strip()
        agent_cli("enrol", "--token", token)

        # 4. doctor: every step passes but what depends on this machine's setup (its NTP, and MariaDB's
        #    stock 128 MiB buffer pool, which doctor rightly flags as throttling bulk loads) — with a remedy
        doc = json.loads(agent_cli("doctor", "--json", check=False).stdout)
        failed = [s for s in doc["steps"] if not s["ok"] and not s["skipped"]]
        assert {s["name"] for s in failed} <= {"clock", "database:mysql:innodb_buffer_pool_size"}, doc
        assert all(s["remedy"] for s in failed)

        # 5. joint debugging: a real test batch into sandbox tables of MariaDB, read back, dropped
        test = json.loads(agent_cli("test", "--json", check=False).stdout)
        assert all(s["ok"] for s in test["steps"] if s["name"].startswith("test_")), test["steps"]
        assert test["sent_to_platform"]

        # 6. the service under a supervisor (sd_notify like systemd), syncing by itself
        env = {**os.environ, "LANG": "C.UTF-8", "NOTIFY_SOCKET": notify.path, "WATCHDOG_USEC": "5000000"}
        log = agent_cli.workdir / "run.log"
        with log.open("wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "agent", "--config", str(agent_cli.config), "run",
                                     "--stop-timeout", "20s"], stdout=f, stderr=subprocess.STDOUT, env=env,
                                    cwd=agent_cli.workdir)
        wait_for("READY=1", lambda: notify.with_key("READY", "1"), timeout=60)

        def last_seq() -> int:
            st = json.loads(agent_cli("status", "--json").stdout)
            return next((d.get("last_seq") or 0 for d in st["datasets"] if d["dataset"] == "student"), 0)

        wait_for("snapshot applied by the service", lambda: last_seq() >= 1, timeout=60)
        hub.admin("publish", "student", str(sample_files["changes"]), "--kind", "changes")
        wait_for("change batch applied by the service", lambda: last_seq() >= 2, timeout=60)
        assert notify.with_key("WATCHDOG", "1")

        eng = sa.create_engine(url)
        with eng.connect() as c:
            n = c.execute(sa.text("SELECT count(*) FROM student")).scalar_one()
            assert n == len(expected_state(sample_files["snapshot"], sample_files["changes"]))
            assert "edx_test_edx_selftest" not in sa.inspect(c).get_table_names()
        eng.dispose()

        # 7. a clean stop, and status says all is well
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()[-3000:]
        st = json.loads(agent_cli("status", "--json").stdout)
        (d,) = [d for d in st["datasets"] if d["dataset"] == "student"]
        assert d["state"] == "ok" and d["last_error"] is None
        human = agent_cli("status").stdout
        assert "student" in human and "school-first" in human
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
        drop()
