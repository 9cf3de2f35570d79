"""Authentication of the two callers: agents by request signature (agent.reqsign), admins by bearer token.

An agent request is checked in this order: headers well-formed → agent known → signature valid for the
agent's registered key → agent neither revoked nor disabled → nonce never seen (stored with an expiry in
the store, so every hub instance refuses a replay). The signature comes before the agent's state so an
unauthenticated caller cannot probe which agents are revoked.
"""

from __future__ import annotations

import functools
import hmac
import json
import random
from typing import Any

from fastapi import Request
from sqlalchemy import Connection, bindparam, delete, select
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from starlette.concurrency import run_in_threadpool

from agent import reqsign

from ..context import HubContext
from ..enrolment import parse_public_keys, require_usable
from ..errors import AdminAuthRequired, AgentUnknown
from ..store import agents, is_postgres, nonces, now_ms


def path_with_query(request: Request) -> str:
    """The request target exactly as the client sent it (what the signature covers)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    qs = request.scope.get("query_string") or b""
    return raw.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")


# Statements of the hot path built once: constructing SQLAlchemy statements per request cost more CPU
# than executing them (measured with bench/bench_hub.py).
_GET_AGENT = select(agents).where(agents.c.agent_id == bindparam("b_aid"))
_NONCE_SQLITE = sqlite_dialect.insert(nonces).on_conflict_do_nothing().returning(nonces.c.agent_id)
_NONCE_PG = pg_dialect.insert(nonces).on_conflict_do_nothing().returning(nonces.c.agent_id)


def nonce_expiry(t: str, now: int) -> int:
    # a nonce must be remembered as long as its request could still pass the clock check
    return max(int(t), now) + reqsign.MAX_SKEW_MS


def cleanup_nonces(conn: Connection, now: int) -> None:
    if random.random() < 0.01:  # amortised clean-up of nonces nobody can replay any more
        conn.execute(delete(nonces).where(nonces.c.expires_ms < now))


@functools.lru_cache(maxsize=16384)
def _public_keys(keys_json: str) -> Any:
    # A pure function of the stored text: caching it keeps no state that matters (revocation and
    # disabling are read from the store on every request), it only saves re-parsing the keys.
    return parse_public_keys(json.loads(keys_json))


def authenticate(ctx: HubContext, headers: Any, method: str, target: str, body: bytes,
                 conn: Connection | None = None, *, record_nonce: bool = True) -> dict[str, Any]:
    """Check one signed request; inside ``conn``'s transaction when given (the hot path shares it).

    With ``record_nonce=False`` the caller records the nonce itself (``nonce_expiry`` says until when),
    in the same statement as its own writes (status.record_heartbeat_pg), and refuses a replay.
    """
    if conn is None:
        with ctx.engine.begin() as own:
            return authenticate(ctx, headers, method, target, body, own)
    agent_id, t, nonce, _sig = reqsign.parse_headers(headers)
    now = now_ms()
    row = conn.execute(_GET_AGENT, {"b_aid": agent_id}).mappings().first()
    if row is None:
        raise AgentUnknown(repr(agent_id))
    agent = dict(row)
    reqsign.verify_request(_public_keys(agent["keys_json"]), headers, method, target, body, now)
    require_usable(agent)
    if not record_nonce:
        return agent
    expires = nonce_expiry(t, now)
    stmt = _NONCE_PG if is_postgres(conn) else _NONCE_SQLITE
    if conn.execute(stmt, {"agent_id": agent_id, "nonce": nonce, "expires_ms": expires}).first() is None:
        raise reqsign.RequestReplayed(f"nonce {nonce} from agent {agent_id}")
    cleanup_nonces(conn, now)
    return agent


# The security schemes of /openapi.json (added by hub.api.app): declared there rather than as FastAPI
# Security() parameters, which would cost five dependency resolutions on every request of the hot path.
SIGNATURE_SCHEMES = {h.replace("-", ""): {"type": "apiKey", "in": "header", "name": h, "description": d}
                     for h, d in (
    (reqsign.H_AGENT, "the agent id received at enrolment"),
    (reqsign.H_TIME, "Unix time in milliseconds when signed"),
    (reqsign.H_NONCE, "32 lowercase hex characters, never reused"),
    (reqsign.H_SIGNATURE, "base64 signature over EDX-REQ/v1 (docs/protocol.md)"))}  # noqa: E131
ADMIN_SCHEME = {"AdminToken": {"type": "http", "scheme": "bearer", "description": "edx-hub admin-token"}}


async def agent_auth(request: Request) -> dict[str, Any]:
    """FastAPI dependency: the authenticated agent's row."""
    body = await request.body()
    ctx: HubContext = request.app.state.ctx
    return await run_in_threadpool(authenticate, ctx, request.headers, request.method,
                                   path_with_query(request), body)


def check_admin(ctx: HubContext, authorization: str | None) -> None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AdminAuthRequired("no bearer token")
    if not hmac.compare_digest(token.strip().encode(), ctx.admin_token.encode()):
        raise AdminAuthRequired("token does not match")


async def admin_auth(request: Request) -> None:
    """FastAPI dependency for /admin/v1 and /fleet: a bearer token, or the ``edx_admin`` cookie for browsers."""
    ctx: HubContext = request.app.state.ctx
    auth = request.headers.get("authorization")
    if not auth and request.cookies.get("edx_admin"):
        auth = "Bearer " + request.cookies["edx_admin"]
    check_admin(ctx, auth)
