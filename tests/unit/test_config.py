"""Configuration loading: every problem with its path, did-you-mean hints, secrets' permissions."""

import os

import pytest

from agent.config import load, parse_duration, permission_problems
from agent.errors import ConfigError, ConfigMissing


def write(tmp_path, text):
    p = tmp_path / "agent.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_a_valid_minimal_config_loads_with_defaults(tmp_path):
    cfg = load(write(tmp_path, '[database]\nurl = "sqlite:///data.db"\n[sync]\ninterval = "2m"\n'))
    assert cfg.sync.interval == 120
    assert cfg.state_dir == tmp_path / "/var/lib/edx-agent"
    assert cfg.table_for("student") == "student"


def test_every_error_is_listed_with_its_path_and_a_hint(tmp_path):
    p = write(tmp_path, '[agent]\nstate_dri = "x"\n[hub]\nurl = "ftp://x"\nread_timout = 3\n'
                        '[sync]\ninterval = "soon"\nquarantine_limit = 2\n[datasets.student]\ntabel = "t"\n')
    with pytest.raises(ConfigError) as e:
        load(p)
    problems = e.value.problems
    joined = "\n".join(problems)
    assert e.value.exit_code == 78 and e.value.code == "config-invalid"
    assert "agent.state_dri: unknown setting (did you mean 'state_dir'?)" in joined
    assert "hub.read_timout: unknown setting (did you mean 'read_timeout'?)" in joined
    assert "hub.url" in joined and "sync.interval" in joined and "sync.quarantine_limit" in joined
    assert "datasets.student.tabel: unknown setting (did you mean 'table'?)" in joined
    assert "database: required setting is missing" in joined
    assert len(problems) == 7


def test_toml_syntax_errors_name_the_line(tmp_path):
    with pytest.raises(ConfigError, match="line 2"):
        load(write(tmp_path, '[database]\nurl = "unterminated\n'))


def test_missing_file_says_how_to_create_one(tmp_path):
    with pytest.raises(ConfigMissing) as e:
        load(tmp_path / "nope.toml")
    assert "edx-agent init" in e.value.remedy_text


def test_world_readable_secrets_are_reported(tmp_path):
    pw = tmp_path / "db.pass"
    pw.write_text("s3cret")
    os.chmod(pw, 0o644)
    cfg = load(write(tmp_path, f'[agent]\nstate_dir = "st"\n[database]\nurl = "sqlite:///x.db"\npassword_file = "{pw}"\n'))
    assert cfg.database_password() == "s3cret"
    probs = permission_problems(cfg)
    assert len(probs) == 1 and "chmod 600" in probs[0]
    os.chmod(pw, 0o600)
    assert permission_problems(cfg) == []


@pytest.mark.parametrize("text,secs", [("30", 30), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), (1.5, 1.5)])
def test_durations(text, secs):
    assert parse_duration(text) == secs


def test_a_systemd_credential_path_is_not_a_problem_outside_the_service(tmp_path, monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    cfg = load(write(tmp_path, '[agent]\nstate_dir = "st"\n[database]\nurl = "sqlite:///x.db"\n'
                               'password_file = "${CREDENTIALS_DIRECTORY}/db-password"\n'))
    assert permission_problems(cfg) == []
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db-password").write_text("pw")
    os.chmod(creds / "db-password", 0o640)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert cfg.database_password() == "pw"
    assert "chmod 600" in permission_problems(cfg)[0]
