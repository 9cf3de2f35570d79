"""Canary secrets never appear in logs, status, heartbeats or error messages.

The database password comes from a credential file and from an environment variable, the hub proxy
carries a password in its URL; each is a random canary. The agent is then made to fail in the ways most
likely to echo a secret (database unreachable, password refused, proxy refusing, daemon reporting the
failure in its heartbeat), and every byte it printed or left on disk, plus the heartbeat the hub stored,
is searched for the canaries. (Diagnostics bundles are the daemon engineer's canary test.)
"""

from __future__ import annotations

import signal
import time
import uuid

import pytest
import sqlalchemy as sa

from .faultproxy import FaultProxy


def scan(rig, canaries: list[str], extra: list[str]) -> None:
    texts = {f"run {i} {r.args}": r.stdout + r.stderr for i, r in enumerate(rig.runs)}
    texts.update({f"extra {i}": t for i, t in enumerate(extra)})
    for p in rig.state_path.rglob("*"):
        if p.is_file():
            texts[str(p)] = p.read_bytes().decode("utf-8", "replace")
    with rig.hubctx.engine.connect() as c:
        texts["hub heartbeat"] = str(c.execute(sa.text("SELECT heartbeat_json FROM hub_agents")).all())
    for name, text in texts.items():
        for canary in canaries:
            assert canary not in text, f"canary secret leaked into {name}"
    assert any("database" in t for t in texts.values())   # the failures did produce messages


@pytest.mark.mysql
def test_canary_secrets_never_leak(make_rig, tmp_path):
    from tests.conftest import MYSQL_URL

    db_pw, env_pw, proxy_pw = (f"canary{k}{uuid.uuid4().hex}" for k in ("DB", "ENV", "PROXY"))
    user = "edx_s_" + uuid.uuid4().hex[:8]
    rig = make_rig("mysql", extra_config={"sync": {"interval": "1s", "jitter": "0s"},
                                          "heartbeat": {"interval": "1s"}, "health": {"enabled": False}})
    db = sa.engine.make_url(rig.db_url).database
    admin = sa.create_engine(MYSQL_URL, poolclass=sa.pool.NullPool)
    extra: list[str] = []
    try:
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{db_pw}'")
            c.exec_driver_sql(f"GRANT ALL ON `{db}`.* TO '{user}'@'%%'")
        pwfile = tmp_path / "db.password"
        pwfile.write_text(db_pw)
        pwfile.chmod(0o600)
        good = sa.engine.make_url(rig.db_url).set(username=user, password=None).render_as_string(hide_password=False)
        closed = sa.engine.make_url(good).set(port=1).render_as_string(hide_password=False)
        rig.write_config(database={"url": good, "password_file": str(pwfile)})
        rig.publish("snapshot")
        rig.recover()
        rig.agent("--log-level", "debug", "sync", "--once")
        # 1. the database unreachable, password from the file
        rig.write_config(database={"url": closed, "password_file": str(pwfile)})
        assert rig.agent("--log-level", "debug", "sync", "--once").returncode != 0
        # 2. the password from the environment, refused by the server
        rig.write_config(database={"url": good, "password_env": "EDX_CANARY_PW", "password_file": ""})
        assert rig.agent("--log-level", "debug", "sync", "--once", env={"EDX_CANARY_PW": env_pw}).returncode != 0
        rig.agent("status", "--json")
        rig.agent("check", env={"EDX_CANARY_PW": env_pw})
        # 3. the daemon failing on the refused password, heartbeating the error to the hub
        rig.publish("changes")
        proc = rig.spawn("--log-level", "debug", "run", "--stop-timeout", "5s", env={"EDX_CANARY_PW": env_pw})
        try:
            proc.wait(15)   # a refused password is terminal at start-up: the daemon says so and exits 77
        except Exception:  # noqa: BLE001 - still running (heartbeating the error): stop it below
            pass
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
            extra += [out, err]
        assert "database" in out + err
        # 4. a hub proxy with a password in its URL, refusing connections
        with FaultProxy(0) as proxy:
            proxy.mode = "reset"
            rig.write_config(database={"url": good, "password_file": str(pwfile)},
                             hub={"proxy": f"http://edx:{proxy_pw}@127.0.0.1:{proxy.port}"})
            assert rig.agent("--log-level", "debug", "sync", "--once").returncode != 0
            proxy.mode = "garbage"
            proxy.garbage = b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n"
            assert rig.agent("--log-level", "debug", "sync", "--once").returncode != 0
        rig.write_config(database={"url": good, "password_file": str(pwfile)})
        time.sleep(0)
        scan(rig, [db_pw, env_pw, proxy_pw], extra)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
        admin.dispose()
