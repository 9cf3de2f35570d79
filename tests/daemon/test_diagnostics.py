"""The diagnostics bundle leaks no secret: canaries planted in config, credential files, env, status and logs."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from agent.config import load
from agent.diagnostics import build_bundle

CANARIES = {
    "db_password_env": "CANARY-dbpw-7f3a91",
    "db_url_password": "CANARY-urlpw-22c0e4",
    "proxy_url_password": "CANARY-proxy-9d8e77",
    "proxy_password_file": "CANARY-proxyfile-51aa02",
    "env_token": "CANARY-envtoken-c4b113",
    "env_api_key": "CANARY-apikey-0e9f5d",
}


@pytest.fixture
def canary_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cfg = tmp_path / "agent.toml"
    subprocess.run([sys.executable, "-m", "agent", "--config", str(cfg), "init", "--database",
                    f"mysql+pymysql://edx:{CANARIES['db_url_password']}@127.0.0.1:3306/edu", "--hub",
                    "https://hub.example.edu.cn"], check=True, capture_output=True, text=True)
    (tmp_path / "proxy.pw").write_text(CANARIES["proxy_password_file"])
    text = cfg.read_text()
    text = text.replace('password_env = ""', 'password_env = "EDX_DB_PASSWORD"')
    text = text.replace('proxy = ""', f'proxy = "http://squid:{CANARIES["proxy_url_password"]}@10.1.2.3:3128"\n'
                                      'proxy_password_file = "proxy.pw"')
    cfg.write_text(text)
    monkeypatch.setenv("EDX_DB_PASSWORD", CANARIES["db_password_env"])
    monkeypatch.setenv("EDX_AGENT_TOKEN", CANARIES["env_token"])
    monkeypatch.setenv("MY_API_KEY", CANARIES["env_api_key"])
    return cfg


def private_key_values(state_dir: Path) -> list[str]:
    out = []
    for f in (state_dir / "keys").glob("*.json"):
        doc = json.loads(f.read_text())
        stack = [doc]
        while stack:
            d = stack.pop()
            for k, v in d.items() if isinstance(d, dict) else []:
                if isinstance(v, dict):
                    stack.append(v)
                elif isinstance(v, str) and "private" in k.lower():
                    out.append(v)
    return [v for v in out if len(v) >= 16]


def test_no_canary_leaves_in_the_bundle(canary_config: Path):
    cfg = load(canary_config)
    keys = private_key_values(cfg.state_dir)
    assert keys, "the test must see the private key material it checks for"
    status = {"datasets": [{"dataset": "student", "state": "retrying", "last_error": {
        "code": "database-unavailable",
        "message": f"cannot connect mysql://edx:{CANARIES['db_url_password']}@db/edu with "
                   f"{CANARIES['db_password_env']}"}}]}
    logs = [json.dumps({"event": "connect", "password": CANARIES["db_password_env"]}),
            f"plain text line leaking {CANARIES['env_token']} and {CANARIES['proxy_password_file']}",
            f"a key slipped into a log line: {keys[0]}"]
    data = build_bundle(cfg, status=status, log_lines=logs, doctor={"steps": [{"detail": CANARIES["env_api_key"]}]})

    z = zipfile.ZipFile(io.BytesIO(data))
    names = z.namelist()
    assert {"versions.json", "os.json", "config.json", "environment.json", "status.json", "logs.txt",
            "audit.json", "doctor.json"} <= set(names)
    blob = b"".join(z.read(n) for n in names) + " ".join(names).encode()
    for what, canary in CANARIES.items():
        assert canary.encode() not in blob, what
    for k in keys:
        assert k.encode() not in blob, "private key material"

    # ...and what is there is still useful
    config = json.loads(z.read("config.json"))
    assert config["hub"]["url"] == "https://hub.example.edu.cn"
    assert config["database"]["password_env"] == "EDX_DB_PASSWORD"    # where the secret is, not what
    assert config["database"]["url"].startswith("mysql+pymysql://edx:***@")
    assert config["sync"]["interval"] > 0
    env = json.loads(z.read("environment.json"))
    assert "EDX_DB_PASSWORD" in env["names"] and "EDX_DB_PASSWORD" not in env["values"]
    assert json.loads(z.read("versions.json"))["agent"]
    assert "database-unavailable" in z.read("status.json").decode()
    assert "plain text line leaking" in z.read("logs.txt").decode()


def test_the_bundle_of_a_running_service_reaches_the_hub_without_secrets(deployment):
    """The daemon's diagnostics command: the zip the hub stores is checked for a planted canary."""
    dep = deployment
    canary = "CANARY-daemon-5e1f0a"
    dep.set_config(database={"password_env": "EDX_DB_PASSWORD"})
    d = dep.run(notify=False, env={"EDX_DB_PASSWORD": canary, "SOME_SECRET": canary + "-2"})
    d.event("daemon_ready")
    dep.hub.admin("agent", "command", dep.agent_id, "--type", "diagnostics")
    from .conftest import wait_for
    (msg,) = wait_for("bundle stored", lambda: dep.hub_rows("diagnostics"), timeout=30)
    blobs = list(Path(dep.hub.data_dir).rglob("*"))
    stored = [p for p in blobs if p.is_file() and p.read_bytes()[:2] == b"PK"]
    assert stored, "the hub keeps the bundle as a zip"
    z = zipfile.ZipFile(stored[-1])
    content = b"".join(z.read(n) for n in z.namelist())
    assert canary.encode() not in content
    assert b"EDX_DB_PASSWORD" in content and b"daemon_ready" in content   # names and log lines, no values
    assert d.stop() == 0
    assert os.environ.get("EDX_DB_PASSWORD") is None
