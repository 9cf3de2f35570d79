"""Daemon fixtures: a real hub, an enrolled agent, a real ``edx-agent run`` process and a real notify socket."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, Callable

import pytest
import requests
import sqlalchemy as sa
import tomli_w

from agent import sample
from agent.localhub import LocalHub, free_port

ROWS = 300


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll ``fn`` until it returns something truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class NotifySocket:
    """The service manager's side of sd_notify: an AF_UNIX datagram socket recording every message."""

    def __init__(self) -> None:
        # sun_path is limited to 108 bytes; pytest's tmp paths can be longer
        self.dir = tempfile.mkdtemp(prefix="edxn")
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self._stop = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, OSError):
                continue
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append((time.monotonic(), fields))

    def with_key(self, key: str, value: str | None = None) -> list[tuple[float, dict[str, str]]]:
        return [(t, m) for t, m in list(self.messages) if key in m and (value is None or m[key] == value)]

    def close(self) -> None:
        self._stop = True
        self.thread.join(2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Daemon:
    """``python -m agent --config C run`` as a child process, its JSON log lines readable by event."""

    def __init__(self, dep: "Deployment", notify: NotifySocket | None, args: list[str], env: dict[str, str]) -> None:
        self.log_path = dep.dir / f"run-{time.monotonic_ns()}.log"
        cmd = [sys.executable, "-m", "agent", "--config", str(dep.config), "run", "--stop-timeout", "10s", *args]
        full_env = {**os.environ, "LANG": "C.UTF-8", **env}
        full_env.pop("NOTIFY_SOCKET", None)
        if notify is not None:
            full_env.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="2000000")
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env, cwd=dep.dir)

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out.append(doc)
        return out

    def event(self, name: str, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        def find() -> Any:
            exited = self.proc.poll() is not None
            found = next((e for e in self.events() if e.get("event") == name
                          and all(e.get(k) == v for k, v in match.items())), None)
            if found is None and exited:
                raise AssertionError(f"daemon exited {self.proc.returncode} while waiting for {name}:\n"
                                     + self.log_path.read_text()[-3000:])
            return found
        return wait_for(f"log event {name} {match}", find, timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("daemon did not stop within the timeout after SIGTERM")
        return self.proc.returncode


class Deployment:
    """A hub with published datasets and one enrolled agent whose config uses short intervals."""

    def __init__(self, root: Path, datasets: tuple[str, ...]) -> None:
        self.dir = root / "agentdir"
        self.dir.mkdir()
        self.config = self.dir / "agent.toml"
        self.db_path = root / "edu.db"
        self.db_url = f"sqlite:///{self.db_path}"
        self.files = root / "files"
        self.files.mkdir()
        sample.write_schema(self.files / "schema.json")
        sample.write_jsonl(self.files / "snap.jsonl", sample.snapshot(ROWS))
        self.hub = LocalHub(root / "hubdata")
        self.hub.start()
        for ds in datasets:
            self.publish(ds, "snap.jsonl", "snapshot", schema=True)
        self.cli("init", "--database", self.db_url, "--hub", self.hub.url)
        token = self.hub.admin("token", "create", "--unit", "school-1", "--datasets", ",".join(datasets)).stdout.strip()
        self.cli("enrol", "--token", token)
        self.agent_id = json.loads((self.dir / "state" / "enrolment.json").read_text())["agent_id"]
        self.health_port = free_port()
        self.set_config(sync={"interval": "1s", "jitter": 0}, heartbeat={"interval": "1s"},
                        health={"listen": f"127.0.0.1:{self.health_port}"})
        self.daemons: list[Daemon] = []
        self.notify: NotifySocket | None = None

    # -- hub side
    def publish(self, dataset: str, rows: str, kind: str, schema: bool = False) -> None:
        extra = ["--schema", str(self.files / "schema.json")] if schema else []
        self.hub.admin("publish", dataset, str(self.files / rows), "--kind", kind, *extra)

    def publish_changes(self, dataset: str, n: int, seed: int) -> None:
        name = f"changes-{dataset}-{seed}.jsonl"
        sample.write_jsonl(self.files / name, sample.changes(ROWS, n, seed=seed))
        self.publish(dataset, name, "changes")

    def hub_rows(self, what: str) -> list[dict[str, Any]]:
        from hub import status
        from hub.context import HubContext

        eng = HubContext.from_args(str(self.hub.data_dir)).engine
        try:
            with eng.connect() as c:
                if what == "commands":
                    return status.list_commands(c, self.agent_id)
                return status.list_messages(c, agent_id=self.agent_id, kind=what)
        finally:
            eng.dispose()

    # -- agent side
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        res = subprocess.run([sys.executable, "-m", "agent", "--config", str(self.config), *args],
                             capture_output=True, text=True, timeout=120, cwd=self.dir,
                             env={**os.environ, "LANG": "C.UTF-8"})
        if check and res.returncode != 0:
            raise AssertionError(f"edx-agent {' '.join(args)} exited {res.returncode}\n{res.stdout}\n{res.stderr}")
        return res

    def set_config(self, **sections: dict[str, Any]) -> None:
        doc = tomllib.loads(self.config.read_text())
        for name, values in sections.items():
            if name == "datasets":
                for ds, v in values.items():
                    doc.setdefault("datasets", {}).setdefault(ds, {}).update(v)
            else:
                doc.setdefault(name, {}).update(values)
        self.config.write_text(tomli_w.dumps(doc))

    def run(self, *args: str, notify: bool = True, env: dict[str, str] | None = None) -> Daemon:
        if notify and self.notify is None:
            self.notify = NotifySocket()
        d = Daemon(self, self.notify if notify else None, list(args), env or {})
        self.daemons.append(d)
        return d

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.health_port}{path}"

    def get(self, path: str) -> requests.Response:
        return requests.get(self.url(path), timeout=10)

    def status(self, dataset: str) -> dict[str, Any]:
        doc = json.loads((self.dir / "state" / "status.json").read_text())
        return doc["datasets"].get(dataset, {})

    def checkpoint(self, dataset: str) -> int:
        eng = sa.create_engine(self.db_url)
        try:
            with eng.connect() as c:
                if not sa.inspect(c).has_table("edx_checkpoint"):
                    return 0
                seq = c.execute(sa.text("SELECT seq FROM edx_checkpoint WHERE dataset = :d"), {"d": dataset}).scalar()
                return int(seq or 0)
        finally:
            eng.dispose()

    def count(self, table: str) -> int:
        eng = sa.create_engine(self.db_url)
        try:
            with eng.connect() as c:
                if not sa.inspect(c).has_table(table):
                    return -1
                return int(c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())
        finally:
            eng.dispose()

    def audit_events(self) -> list[dict[str, Any]]:
        out = []
        for p in sorted((self.dir / "state" / "audit").glob("audit-*.jsonl")):
            out += [json.loads(x) for x in p.read_text().splitlines()]
        return out

    def close(self) -> None:
        for d in self.daemons:
            if d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()
        self.hub.stop()
        if self.notify is not None:
            self.notify.close()


@pytest.fixture
def deployment(tmp_path: Path):
    dep = Deployment(tmp_path, ("student",))
    yield dep
    dep.close()


@pytest.fixture
def two_datasets(tmp_path: Path):
    dep = Deployment(tmp_path, ("student", "course"))
    yield dep
    dep.close()
