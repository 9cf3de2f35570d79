"""Fixtures for the hub tests: the real `edx-hub serve` process over real TLS (trustme), on SQLite or PostgreSQL.

`hub` is one server per test module (a fresh data dir and store); `store_url` picks the backend. Admin
commands run through `hub.cli.main` in this process against the same data dir and store, exactly as an
operator's shell would beside the running server; a few tests also run them as real subprocesses.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest
import trustme

from tests.conftest import fresh_pg_database

from .agentsim import SimAgent

SCHEMA = {"columns": [{"name": "id", "type": "int64", "nullable": False},
                      {"name": "name", "type": "string(20)"},
                      {"name": "score", "type": "decimal(5,2)"}],
          "primary_key": ["id"]}


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    paths = {"ca": d / "ca.pem", "cert": d / "cert.pem", "key": d / "key.pem"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    cert.private_key_pem.write_to_path(str(paths["key"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for blob in cert.cert_chain_pems[1:]:
        with open(paths["cert"], "ab") as f:
            f.write(blob.bytes())
    return paths


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    url, drop = fresh_pg_database("edx_hub_t_")
    yield url
    drop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubProcess:
    """A running `edx-hub serve` and the means to administer it."""

    def __init__(self, data_dir: Path, db_url: str | None, tls: dict[str, Path] | None) -> None:
        self.data_dir = data_dir
        self.db_url = db_url
        self.tls = tls
        self.port = free_port()
        scheme = "https" if tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, EDX_HUB_DATA_DIR=str(self.data_dir))
        if self.db_url:
            env["EDX_HUB_DB_URL"] = self.db_url
        else:
            env.pop("EDX_HUB_DB_URL", None)
        return env

    def start(self, *extra: str) -> None:
        # 1 s grace: the tests leave keep-alive clients open, which uvicorn would otherwise wait for
        cmd = [sys.executable, "-m", "hub.cli", "serve", "--listen", f"127.0.0.1:{self.port}",
               "--graceful-timeout", "1", *extra]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls["cert"]), "--tls-key", str(self.tls["key"])]
        self.log = open(self.data_dir.parent / f"hub-{self.port}.log", "wb")
        self.proc = subprocess.Popen(cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited: {self.log_text()}")
            try:
                with self.client() as c:
                    if c.get("/v1/hello").status_code == 200:
                        return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"hub did not start: {self.log_text()}")

    def log_text(self) -> str:
        return (self.data_dir.parent / f"hub-{self.port}.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc:
            self.log.close()

    def client(self, **kw: Any) -> httpx.Client:
        verify = ssl.create_default_context(cafile=str(self.tls["ca"])) if self.tls else False
        return httpx.Client(base_url=self.url, verify=verify,
                            timeout=30, **kw)

    def cli(self, *args: str) -> tuple[int, str, str]:
        """Run an admin command in-process (same data dir and store as the server)."""
        from hub.cli import main

        out, err = io.StringIO(), io.StringIO()
        old = dict(os.environ)
        os.environ.update(self.env)
        if not self.db_url:
            os.environ.pop("EDX_HUB_DB_URL", None)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main(list(args))
        finally:
            os.environ.clear()
            os.environ.update(old)
        return code, out.getvalue(), err.getvalue()

    def ok(self, *args: str) -> str:
        code, out, err = self.cli(*args)
        assert code == 0, f"edx-hub {' '.join(args)} exited {code}: {err}"
        return out

    def cli_process(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hub.cli", *args], env=self.env, capture_output=True,
                              text=True, timeout=60)

    def admin(self) -> httpx.Client:
        token = self.ok("admin-token").strip()
        return self.client(headers={"Authorization": f"Bearer {token}"})

    # --- helpers used across tests -------------------------------------------------------------

    def publish_rows(self, dataset: str, rows: list[dict[str, Any]], kind: str,
                     schema: dict[str, Any] | None = None) -> dict[str, Any]:
        d = self.data_dir.parent / f"in-{uuid.uuid4().hex[:6]}"
        d.mkdir()
        (d / "rows.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        args = ["publish", dataset, str(d / "rows.jsonl"), "--kind", kind]
        if schema is not None:
            (d / "schema.json").write_text(json.dumps(schema))
            args += ["--schema", str(d / "schema.json")]
        return json.loads(self.ok(*args))

    def enrol(self, unit: str, datasets: list[str], suite: str = "INTL1") -> SimAgent:
        token = self.ok("token", "create", "--unit", unit, "--datasets", ",".join(datasets)).strip()
        agent = SimAgent(self.client(), suite)
        agent.enrol(token)
        return agent


def students(n: int, start: int = 1) -> list[dict[str, Any]]:
    return [{"id": i, "name": f"学生{i}", "score": f"{i % 100}.50"} for i in range(start, start + n)]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    if request.param == "sqlite":
        return None
    return request.getfixturevalue("pg_server_url")


def _pg_schema_reset(url: str) -> None:
    """Drop the hub's tables so each module starts from an empty store on the shared test database."""
    import sqlalchemy as sa

    from hub.store import metadata, normalise_url

    eng = sa.create_engine(normalise_url(url))
    metadata.drop_all(eng)
    eng.dispose()


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, tls: dict[str, Path], store_url: str | None) -> Iterator[HubProcess]:
    if store_url:
        _pg_schema_reset(store_url)
    base = tmp_path_factory.mktemp("hub")
    h = HubProcess(base / "data", store_url, tls)
    h.start()
    yield h
    h.stop()
