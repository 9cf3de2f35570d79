"""``edx-agent diagnostics``: a redacted zip for the platform team (versions, OS, config, status, logs)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ..config import load
from ..diagnostics import build_bundle
from ..fsutil import atomic_write_bytes


def register(sub: Any) -> None:
    p = sub.add_parser("diagnostics", help="write a redacted diagnostics bundle (and optionally upload it)")
    p.add_argument("--output", default=None, help="zip file to write (default: ./edx-agent-diagnostics-TIME.zip)")
    p.add_argument("--no-doctor", action="store_true", help="do not run the online checks")
    p.add_argument("--upload", action="store_true", help="send the bundle to the platform too")
    p.set_defaults(func=run)


def recent_log_lines(n: int = 300) -> list[str]:
    """The service's last log lines from journald, where there is one."""
    if not shutil.which("journalctl"):
        return []
    try:
        res = subprocess.run(["journalctl", "-u", "edx-agent", "-n", str(n), "--no-pager", "-o", "cat"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return res.stdout.splitlines() if res.returncode == 0 else []


def run(args: Any) -> int:
    cfg = load(args.config)
    doctor = None
    if not args.no_doctor:
        from .doctor_cmd import run_doctor

        doctor = run_doctor(cfg).to_dict()
    data = build_bundle(cfg, log_lines=recent_log_lines(), doctor=doctor)
    out = Path(args.output or f"edx-agent-diagnostics-{time.strftime('%Y%m%d-%H%M%S')}.zip")
    atomic_write_bytes(out, data, mode=0o600)
    print(f"wrote {out} ({len(data)} bytes, secrets removed)")
    if args.upload:
        from .doctor_cmd import client_for

        ans = client_for(cfg).upload_diagnostics(data)
        print(f"uploaded to the platform (id {ans.get('id', '?')})")
    return 0
