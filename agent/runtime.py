"""Builds the objects a command needs from the configuration: state, keys, hub client, connector."""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import make_url

from . import envelope
from .client import HubClient, RetryPolicy
from .config import AgentConfig
from .pipeline import Context
from .spool import Spool
from .state import StateDir


def database_url(cfg: AgentConfig) -> str:
    """The database URL with the password from its credential file or variable, never from the file."""
    url = cfg.database.url
    pw = cfg.database_password()
    if pw:
        url = make_url(url).set(password=pw).render_as_string(hide_password=False)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        # a relative SQLite path is relative to the config file, not to wherever the service starts
        rel = url[len("sqlite:///"):]
        if rel and rel != ":memory:":
            url = "sqlite:///" + str(cfg.path(rel))
    return url


def open_connector(cfg: AgentConfig) -> Any:
    import connectors

    # sync.reconcile = "checksum": every batch's rows are read back and hashed before the commit;
    # "count": the database's row counts only, no read-back (docs/connectors.md, Reconciliation)
    return connectors.connect(database_url(cfg), lineage_columns=cfg.database.lineage_columns,
                              reconcile="always" if cfg.sync.reconcile == "checksum" else "count")


def hub_keys(enr: Any) -> list[Any]:
    return [envelope.VerifyKey.from_dict(k) for k in enr.hub_keys]


def build_context(cfg: AgentConfig, *, retry: RetryPolicy = RetryPolicy(),
                  connector: Any = None, audit: Any = None) -> Context:
    state = StateDir(cfg.state_dir)
    enr = state.enrolment()
    keys = state.recipient_keys()
    client = HubClient.from_config(cfg, agent_id=enr.agent_id, keys=keys[0],
                                   base_url=cfg.hub.url or enr.hub_url, retry=retry)
    conn = connector or open_connector(cfg)
    conn.ensure_meta_tables()
    ctx = Context(cfg=cfg, state=state, client=client, connector=conn,
                  spool=Spool(cfg.spool_dir, cfg.spool.quota_mb << 20), agent_id=enr.agent_id,
                  keys=keys, hub_keys=hub_keys(enr), schema_name=cfg.database.schema_name or None)
    if audit is not None:
        ctx.audit = audit
    return ctx
