"""Runs a reference hub as a real child process on loopback: for the demo and the end-to-end tests.

The hub is started exactly as an operator would start it (``edx-hub serve``), its admin commands are
run as separate processes against the same data directory, and readiness is checked over HTTP.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

HUB_MAIN = "import sys; from hub.cli import main; sys.exit(main())"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalHub:
    """``with LocalHub(data_dir) as hub:`` starts ``edx-hub serve`` and stops it on exit."""

    def __init__(self, data_dir: Path, port: int | None = None, tls: tuple[str, str] | None = None,
                 env: dict[str, str] | None = None, log_path: Path | None = None) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.tls = tls
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_path or self.data_dir / "hub.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def admin(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``edx-hub ARGS --data-dir DIR`` as a separate process, like an operator would."""
        cmd = [sys.executable, "-c", HUB_MAIN, *args, "--data-dir", str(self.data_dir)]
        res = subprocess.run(cmd, capture_output=True, text=True, env=self.env, input=input, timeout=600)
        if check and res.returncode != 0:
            raise RuntimeError(f"edx-hub {' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
        return res

    def start(self, timeout: float = 30.0) -> "LocalHub":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-c", HUB_MAIN, "serve", "--data-dir", str(self.data_dir),
               "--listen", f"127.0.0.1:{self.port}"]
        if self.tls:
            cmd += ["--tls-cert", self.tls[0], "--tls-key", self.tls[1]]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        log.close()
        deadline = time.monotonic() + timeout
        verify: Any = False if self.tls else True
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hub exited with {self.proc.returncode}; see {self.log_path}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            try:
                if requests.get(self.url + "/v1/hello", timeout=1, verify=verify).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"hub did not answer on {self.url} within {timeout}s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
