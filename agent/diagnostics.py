"""The diagnostics bundle: a redacted zip of versions, OS facts, config, status and recent log lines.

It is built for the platform team (a heartbeat ``diagnostics`` command uploads it) and for the unit's
own support tickets, so it must never carry a secret: secret bundles are a recurring failure of
peer agents (elastic-agent#241, #1907, #15896). Two layers make sure of it. First, only what is
needed goes in: config key names with non-secret values, environment variable *names*, spool file
names and sizes, never key material or row data. Second, every file is scrubbed of every secret
value the agent can know of (the database password, the proxy password, URL passwords, secret-looking
environment variables, the private key files' contents) before it is written into the zip.
"""

from __future__ import annotations

import io
import json
import os
import platform
import sys
import time
import zipfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable

from . import __version__
from .logs import REDACTED, SECRET_KEYS, redact_text, redact_value

PACKAGES = ("edx-agent", "cryptography", "sqlalchemy", "apscheduler", "structlog", "requests", "pydantic",
            "prometheus-client", "gmssl", "zstandard", "pymysql", "psycopg", "oracledb", "pyodbc")
ENV_VALUES_SHOWN = ("LANG", "LC_ALL", "TZ")   # harmless and often the cause of a problem
PRIVATE_FIELD = ("priv", "secret", "seed")   # names of private-key fields in the state's key files


def _versions() -> dict[str, Any]:
    pkgs = {}
    for name in PACKAGES:
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    try:
        import connectors
        known = connectors.available()
    except Exception:  # noqa: BLE001 - a broken plugin must not stop the bundle
        known = []
    return {"agent": __version__, "python": sys.version, "implementation": platform.python_implementation(),
            "packages": pkgs, "connectors": known}


def _os_facts(cfg: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"uname": platform.uname()._asdict(), "cpus": os.cpu_count(),
                             "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "uid": os.getuid()}
    try:
        rel = Path("/etc/os-release").read_text()
        facts["os_release"] = dict(line.split("=", 1) for line in rel.splitlines() if "=" in line)
    except OSError:
        pass
    try:
        mem = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines()[:3])
        facts["memory"] = {k: v.strip() for k, v in mem.items()}
        facts["loadavg"] = os.getloadavg()
    except (OSError, ValueError):
        pass
    for name, path in (("state_dir", cfg.state_dir), ("spool", cfg.spool_dir)):
        try:
            st = os.statvfs(path)
            facts[f"disk_{name}"] = {"free_bytes": st.f_bavail * st.f_frsize, "total_bytes": st.f_blocks * st.f_frsize}
        except OSError as e:
            facts[f"disk_{name}"] = {"error": e.strerror}
    return facts


def redacted_config(cfg: Any) -> dict[str, Any]:
    """Every setting with its value, except secrets: those show only whether they are set."""
    def walk(key: str, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(key, v) for v in value]
        # *_file and *_env name where a secret is, not the secret: worth showing
        if SECRET_KEYS.search(key) and not key.endswith(("_file", "_env")):
            return "(set)" if value else "(empty)"
        return redact_text(value) if isinstance(value, str) else value
    return walk("", cfg.model_dump(mode="json", by_alias=True))


def _environment() -> dict[str, Any]:
    names = sorted(k for k in os.environ if k.startswith(("EDX_", "LC_")) or k in
                   ("LANG", "TZ", "CREDENTIALS_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "INVOCATION_ID"))
    return {"names": names, "values": {k: os.environ[k] for k in ENV_VALUES_SHOWN if k in os.environ}}


def _spool_listing(cfg: Any) -> list[dict[str, Any]]:
    root = Path(cfg.spool_dir)
    out = []
    if root.is_dir():
        for p in sorted(root.rglob("*"))[:500]:
            if p.is_file():
                out.append({"path": str(p.relative_to(root)), "bytes": p.stat().st_size})
    return out


def known_secrets(cfg: Any) -> set[str]:
    """Every secret value this agent could leak: scrubbed from the bundle whatever file it is in."""
    found: set[str] = set()
    try:
        pw = cfg.database_password()
        if pw:
            found.add(pw)
    except OSError:
        pass
    from sqlalchemy.engine import make_url
    for url in (cfg.database.url, cfg.hub.proxy, cfg.hub.url):
        try:
            if url and make_url(url).password:
                found.add(str(make_url(url).password))
        except Exception:  # noqa: BLE001 - not a SQLAlchemy URL: the text redaction handles it
            pass
    for ref in (cfg.hub.proxy_password_file,):
        if ref:
            try:
                found.add(cfg.path(os.path.expandvars(ref)).read_text(encoding="utf-8").strip())
            except OSError:
                pass
    for k, v in os.environ.items():
        if SECRET_KEYS.search(k) and v:
            found.add(v)
    keys_dir = Path(cfg.state_dir) / "keys"
    for f in keys_dir.glob("*.json") if keys_dir.is_dir() else []:
        try:
            doc = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        stack = [doc]
        while stack:
            d = stack.pop()
            for k, v in (d.items() if isinstance(d, dict) else enumerate(d) if isinstance(d, list) else []):
                if isinstance(v, (dict, list)):
                    stack.append(v)
                elif isinstance(v, str) and any(p in str(k).lower() for p in PRIVATE_FIELD):
                    found.add(v)
    return {s for s in found if len(s) >= 4}


def scrub(text: str, secrets: Iterable[str]) -> str:
    text = redact_text(text)
    for s in sorted(secrets, key=len, reverse=True):   # longest first: one secret may contain another
        for form in {s, json.dumps(s, ensure_ascii=False)[1:-1], json.dumps(s)[1:-1]}:
            text = text.replace(form, REDACTED)
    return text


def build_bundle(cfg: Any, *, status: Any = None, log_lines: Iterable[str] = (), doctor: Any = None) -> bytes:
    """The zip's bytes: every member redacted, then scrubbed of every known secret value."""
    from . import audit
    from .state import StateDir

    state = StateDir(cfg.state_dir)
    verdict = audit.verify(audit.audit_dir(cfg))
    members: dict[str, Any] = {
        "versions.json": _versions(),
        "os.json": _os_facts(cfg),
        "config.json": redacted_config(cfg),
        "environment.json": _environment(),
        "status.json": redact_value("status", status if status is not None else state.status()),
        "grants.json": [{k: g.get(k) for k in ("dataset", "state", "update_interval_s", "retention",
                                                "schema_version", "classification")} for g in state.grants()],
        "spool.json": _spool_listing(cfg),
        "audit.json": {"ok": verdict.ok, "records": verdict.records, "last_seq": verdict.last_seq,
                       "broken": verdict.broken},
        "logs.txt": "\n".join(redact_text(line.rstrip("\n")) for line in log_lines) + "\n",
    }
    if doctor is not None:
        members["doctor.json"] = redact_value("doctor", doctor)
    members["README.txt"] = ("edx-agent diagnostics bundle. Secrets are removed: settings that hold one show "
                             "(set)/(empty), environment variables only by name, no key material, no rows.\n")
    secrets = known_secrets(cfg)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, value in members.items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
            z.writestr(name, scrub(text, secrets))
    return buf.getvalue()
