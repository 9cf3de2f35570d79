"""Bad input at the CLI: one clear message with a stable code and a remedy, a non-zero exit, nothing written."""

from __future__ import annotations

import sqlalchemy as sa

from agent.localhub import free_port


def test_missing_config_exits_78_and_says_how_to_create_one(agent_cli):
    res = agent_cli("sync", "--once", check=False)
    assert res.returncode == 78
    assert "[config-missing]" in res.stderr and "edx-agent init" in res.stderr


def test_malformed_config_lists_problems_with_paths(agent_cli):
    agent_cli.config.write_text('[database]\nurl = "nope"\n[sync]\nintervall = "5m"\n')
    res = agent_cli("check", check=False)
    assert res.returncode == 78
    assert "database.url" in res.stdout and "sync.intervall: unknown setting (did you mean 'interval'?)" in res.stdout


def test_unreachable_hub_exits_69_with_a_remedy(agent_cli, tmp_path):
    agent_cli("init", "--database", f"sqlite:///{tmp_path / 'x.db'}")
    res = agent_cli("enrol", "--token", "t", "--hub", f"http://127.0.0.1:{free_port()}", check=False)
    assert res.returncode == 69
    assert "[hub-unreachable]" in res.stderr and "what to do:" in res.stderr


def test_wrong_token_is_refused_and_nothing_is_enrolled(hub, agent_cli, tmp_path):
    agent_cli("init", "--database", f"sqlite:///{tmp_path / 'x.db'}", "--hub", hub.url)
    res = agent_cli("enrol", "--token", "not-a-token", check=False)
    assert res.returncode == 77
    assert "enrolment-token-unknown" in res.stderr
    assert not (agent_cli.workdir / "state" / "enrolment.json").exists()
    res = agent_cli("sync", "--once", check=False)
    assert res.returncode == 78 and "[agent-not-enrolled]" in res.stderr


def test_a_dataset_lands_in_the_table_the_config_maps_it_to(hub, agent_cli, tmp_path):
    db = tmp_path / "edu.db"
    agent_cli("init", "--database", f"sqlite:///{db}", "--hub", hub.url)
    with agent_cli.config.open("a") as f:
        f.write('\n[datasets.student]\ntable = "ods_student"\n')
    token = hub.admin("token", "create", "--unit", "u1", "--datasets", "student").stdout.strip()
    agent_cli("enrol", "--token", token)
    agent_cli("sync", "--once")
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.connect() as c:
        names = sa.inspect(c).get_table_names()
        assert "ods_student" in names and "student" not in names
        assert c.execute(sa.text("SELECT count(*) FROM ods_student")).scalar_one() > 0
    eng.dispose()
