"""Authentication of the two callers: agents by request signature (agent.reqsign), admins by bearer token.

An agent request is checked in this order: headers well-formed → agent known → signature valid for the
agent's registered key → agent neither revoked nor disabled → nonce never seen (stored with an expiry in
the store, so every hub instance refuses a replay). The signature comes before the agent's state so an
unauthenticated caller cannot probe which agents are revoked.
"""

from __future__ import annotations

import hmac
import json
import random
from typing import Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import delete
from starlette.concurrency import run_in_threadpool

from agent import reqsign

from ..context import HubContext
from ..enrolment import get_agent, parse_public_keys, require_usable
from ..errors import AdminAuthRequired
from ..store import insert_ignore, nonces, now_ms


def path_with_query(request: Request) -> str:
    """The request target exactly as the client sent it (what the signature covers)."""
    raw = request.scope.get("raw_path") or request.scope["path"].encode()
    qs = request.scope.get("query_string") or b""
    return raw.decode("latin-1") + ("?" + qs.decode("latin-1") if qs else "")


def authenticate(ctx: HubContext, headers: Any, method: str, target: str, body: bytes) -> dict[str, Any]:
    agent_id, t, nonce, _sig = reqsign.parse_headers(headers)
    now = now_ms()
    with ctx.engine.begin() as conn:
        agent = get_agent(conn, agent_id)
        public = parse_public_keys(json.loads(agent["keys_json"]))
        reqsign.verify_request(public, headers, method, target, body, now)
        require_usable(agent)
        # a nonce must be remembered as long as its request could still pass the clock check
        expires = max(int(t), now) + reqsign.MAX_SKEW_MS
        if not insert_ignore(conn, nonces, {"agent_id": agent_id, "nonce": nonce, "expires_ms": expires}):
            raise reqsign.RequestReplayed(f"nonce {nonce} from agent {agent_id}")
        if random.random() < 0.01:  # amortised clean-up of nonces nobody can replay any more
            conn.execute(delete(nonces).where(nonces.c.expires_ms < now))
    return agent


# Declared as security schemes so /openapi.json documents the four headers; auto_error is off because
# the checks (and their error codes) are ours, in ``authenticate``.
_SCHEMES = [APIKeyHeader(name=h, auto_error=False, scheme_name=h.replace("-", ""), description=d) for h, d in (
    (reqsign.H_AGENT, "the agent id received at enrolment"),
    (reqsign.H_TIME, "Unix time in milliseconds when signed"),
    (reqsign.H_NONCE, "32 lowercase hex characters, never reused"),
    (reqsign.H_SIGNATURE, "base64 signature over EDX-REQ/v1 (docs/protocol.md)"))]
_BEARER = HTTPBearer(auto_error=False, scheme_name="AdminToken", description="edx-hub admin-token")


async def agent_auth(request: Request, _a: Any = Security(_SCHEMES[0]), _t: Any = Security(_SCHEMES[1]),
                     _n: Any = Security(_SCHEMES[2]), _s: Any = Security(_SCHEMES[3])) -> dict[str, Any]:
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


async def admin_auth(request: Request, _b: HTTPAuthorizationCredentials | None = Security(_BEARER)) -> None:
    """FastAPI dependency for /admin/v1 and /fleet: a bearer token, or the ``edx_admin`` cookie for browsers."""
    ctx: HubContext = request.app.state.ctx
    auth = request.headers.get("authorization")
    if not auth and request.cookies.get("edx_admin"):
        auth = "Bearer " + request.cookies["edx_admin"]
    check_admin(ctx, auth)
