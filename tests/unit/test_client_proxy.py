"""The hub client's proxy: explicit only, with its password from a credential file."""

from agent.client import HubClient
from agent.config import load


def test_proxy_password_comes_from_its_file_and_environment_proxies_are_ignored(tmp_path, monkeypatch):
    monkeypatch.setenv("https_proxy", "http://env-proxy.invalid:3128")
    pw = tmp_path / "proxy.pass"
    pw.write_text("p@ss:word\n")
    pw.chmod(0o600)
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text('[hub]\nurl = "https://platform.example:8443"\nproxy = "http://edx@proxy.local:3128"\n'
                        f'proxy_password_file = "{pw}"\n[database]\nurl = "sqlite:///x.db"\n')
    client = HubClient.from_config(load(cfg_path))
    assert client.session.trust_env is False
    assert client.session.proxies["https"] == "http://edx:p%40ss%3Aword@proxy.local:3128"


def test_no_proxy_hosts_bypass_the_proxy(tmp_path):
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text('[hub]\nurl = "https://platform.example:8443"\nproxy = "http://proxy.local:3128"\n'
                        'no_proxy = ["platform.example"]\n[database]\nurl = "sqlite:///x.db"\n')
    assert HubClient.from_config(load(cfg_path)).session.proxies == {}
