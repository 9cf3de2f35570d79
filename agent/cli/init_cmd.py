"""``edx-agent init``: write a commented configuration and generate the agent's key pairs (0600)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .. import audit, envelope
from ..config import load
from ..errors import ConfigError
from ..fsutil import atomic_write_bytes
from ..i18n import N_, _
from ..state import SUITES, StateDir

TEMPLATE = '''\
# edx-agent configuration (数据交换前置机 agent). Every key is explained in config/agent.example.toml.
# Check it offline with:  edx-agent check --config {config}

[agent]
# Free-text name of this front-end machine, shown on the platform's fleet view.
name = "{name}"
# Keys, enrolment, status and the spool live here (mode 0700). Relative paths are relative to this file.
state_dir = "{state_dir}"
# Language of messages: "auto" (from LANG), "zh" or "en".
lang = "auto"

[hub]
# The platform's agent API, given by the platform team (filled in by `edx-agent enrol`).
url = "{hub}"
# CA bundle that signed the platform's TLS certificate (leave empty to use the system store).
ca_file = ""
connect_timeout = 10
read_timeout = 60
# Proxy towards the platform, if any; environment variables such as https_proxy are never used.
proxy = ""

[database]
# SQLAlchemy URL of the local database the datasets are written to.
#   sqlite:///data.db   mysql+pymysql://edx@127.0.0.1:3306/edu   postgresql+psycopg://edx@127.0.0.1/edu
#   oracle+oracledb://edx@db:1521/?service_name=ORCL   mssql+pyodbc://edx@db/edu?driver=ODBC+Driver+18+for+SQL+Server
# Never put the password here: use password_file (systemd LoadCredential=) or password_env.
url = "{database}"
password_file = ""
password_env = ""

[keys]
# Cipher suite of this agent's keys: "intl" (X25519/Ed25519/AES-256-GCM) or "gm" (SM2/SM3/SM4).
suite = "{suite}"
# Suites accepted for incoming batches; a 国密-only deployment sets ["gm"].
allowed_suites = ["intl", "gm"]

[sync]
# How often each dataset is checked for new batches (30s, 5m, 1h...).
interval = "5m"
# Share of a batch's rows that may be set aside in edx_quarantine before the whole batch is refused.
quarantine_limit = 0.01

[spool]
# Downloaded, still-sealed batches wait here until applied and acknowledged.
quota_mb = 10240

[heartbeat]
interval = "60s"

# Per-dataset settings: by default a dataset lands in a table of the same name.
# [datasets.student]
# table = "ods_student"
'''


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="write a configuration file and generate this agent's keys")
    p.add_argument("--database", required=True, help="SQLAlchemy URL of the local database")
    p.add_argument("--hub", default="", help="URL of the platform's agent API (can be given at enrol)")
    p.add_argument("--suite", choices=sorted(SUITES), default="intl")
    p.add_argument("--state-dir", default=None, help="default: ./state next to the config file")
    p.add_argument("--name", default=os.uname().nodename)
    p.add_argument("--force", action="store_true", help="overwrite an existing configuration")
    p.set_defaults(func=run)


def run(args: Any) -> int:
    if not args.config:
        raise ConfigError("init needs --config PATH (where to write the configuration)")
    path = Path(args.config)
    if path.exists() and not args.force:
        raise ConfigError(f"{path} already exists", remedy=N_("Use --force to overwrite it, or pick another path."))
    state_dir = args.state_dir or "state"
    text = TEMPLATE.format(config=path, name=args.name, state_dir=state_dir, hub=args.hub,
                           database=args.database, suite=args.suite)
    atomic_write_bytes(path, text.encode(), mode=0o640)
    cfg = load(path)  # validate what we wrote, and resolve the state dir
    state = StateDir(cfg.state_dir)
    state.ensure()
    keys = envelope.generate_agent_keys(envelope.Suite(SUITES[args.suite]))
    kid = state.save_keys(keys)
    state.set_current_key(kid)
    audit.for_config(cfg).record("init", config=str(path), key_id=kid, suite=args.suite, overwrote=bool(args.force))
    print(_("wrote {path}").format(path=path))
    print(_("generated {suite} keys {key_id} in {keys_dir} (mode 0600)").format(
        suite=args.suite, key_id=kid, keys_dir=state.keys_dir))
    print(_("next: edx-agent enrol --config {path} --token TOKEN --hub URL").format(path=path))
    return 0
