"""Enrolment: one-time expiring tokens that bind a unit, and the agent registry (enrol, disable, revoke).

Only the SHA-256 of a token is stored, so a copy of the database cannot enrol an agent. The token is
consumed in the same transaction that creates the agent (``used_at_ms IS NULL`` in the UPDATE), so two
agents racing with one token cannot both win, even across hub instances.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from sqlalchemy import Connection, insert, select, update

from agent.errors import AgentError

from .errors import (AgentDisabled, AgentNotFound, AgentRevoked, AgentUnknown, KeysInvalid, TokenExpired, TokenUnknown,
                     TokenUsed)
from .grants import add_grant
from .store import agents, now_ms, tokens

TOKEN_PREFIX = "edxtok_"


def _hash(token: str) -> str:
    return hashlib.sha256(token.strip().encode()).hexdigest()


def create_token(conn: Connection, unit: str, datasets: list[str], ttl_s: int = 1800) -> str:
    """A fresh one-time token for ``unit``; grants the datasets now (refusing any 不予共享 one)."""
    for d in datasets:
        add_grant(conn, unit, d)
    token = TOKEN_PREFIX + secrets.token_urlsafe(24)
    now = now_ms()
    conn.execute(insert(tokens).values(token_hash=_hash(token), unit=unit, datasets_json=json.dumps(datasets),
                                       expires_ms=now + ttl_s * 1000, created_at_ms=now))
    return token


def parse_public_keys(raw: Any) -> Any:
    """The agent's AgentPublicKeys from its JSON form, or KeysInvalid."""
    from agent.envelope import AgentPublicKeys

    try:
        return AgentPublicKeys.from_dict(raw)
    except Exception as e:  # any parse failure of any suite is one answer: the keys are unusable
        raise KeysInvalid(str(e) or type(e).__name__) from None


def enrol(conn: Connection, token: str, *, hostname: str, agent_version: str, keys: Any) -> dict[str, Any]:
    """Consume ``token`` and register the agent; returns the new agent's row."""
    public = parse_public_keys(keys)
    h = _hash(token)
    row = conn.execute(select(tokens).where(tokens.c.token_hash == h)).mappings().first()
    now = now_ms()
    if row is None:
        raise TokenUnknown("check the token")
    if row["used_at_ms"] is not None:
        raise TokenUsed(f"used at {row['used_at_ms']} by agent {row['used_by']}")
    if row["expires_ms"] <= now:
        raise TokenExpired(f"expired {(now - row['expires_ms']) // 1000} s ago")
    agent_id = "agt-" + secrets.token_hex(8)
    res = conn.execute(update(tokens).where(tokens.c.token_hash == h, tokens.c.used_at_ms.is_(None))
                       .values(used_at_ms=now, used_by=agent_id).returning(tokens.c.token_hash))
    if res.first() is None:
        raise TokenUsed("used by a concurrent enrolment")
    conn.execute(insert(agents).values(
        agent_id=agent_id, unit=row["unit"], hostname=hostname[:255], agent_version=agent_version[:64],
        suite=int(public.suite), keys_json=json.dumps(public.to_dict()), state="active",
        enrolled_at_ms=now, heartbeats=0))
    return get_agent(conn, agent_id)


def get_agent(conn: Connection, agent_id: str, missing: type[AgentError] = AgentUnknown) -> dict[str, Any]:
    """The agent's row; ``missing`` is raised when there is none (401 for callers, 404 for admins)."""
    row = conn.execute(select(agents).where(agents.c.agent_id == agent_id)).mappings().first()
    if row is None:
        raise missing(repr(agent_id))
    return dict(row)


def require_usable(row: dict[str, Any]) -> None:
    """Refuse a revoked or disabled agent with its own code."""
    if row["state"] == "revoked":
        raise AgentRevoked(f"agent {row['agent_id']} of unit {row['unit']}")
    if row["state"] == "disabled":
        raise AgentDisabled(f"agent {row['agent_id']} of unit {row['unit']}")


def set_agent_state(conn: Connection, agent_id: str, state: str) -> dict[str, Any]:
    row = get_agent(conn, agent_id, AgentNotFound)
    if row["state"] == "revoked" and state != "revoked":
        # revocation is final: a compromised key must never be trusted again; enrol anew instead
        raise AgentRevoked(f"agent {agent_id} is revoked; enrol a new agent instead")
    conn.execute(update(agents).where(agents.c.agent_id == agent_id).values(state=state))
    return get_agent(conn, agent_id)


def list_agents(conn: Connection, unit: str | None = None) -> list[dict[str, Any]]:
    q = select(agents).order_by(agents.c.unit, agents.c.agent_id)
    if unit is not None:
        q = q.where(agents.c.unit == unit)
    return [dict(r) for r in conn.execute(q).mappings()]
