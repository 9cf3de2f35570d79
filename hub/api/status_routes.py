"""The agent-facing status endpoints: heartbeat (with commands), command results, feedback, requests, reports, diagnostics.

Everything here is written under the authenticated agent's id and unit only; feedback about a dataset
is accepted only from a unit that holds (or held) a grant for it, so no agent can write into another
unit's records or learn which datasets exist.
"""

from __future__ import annotations

import pathlib
import tempfile
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Path, Request
from starlette.concurrency import run_in_threadpool

from agent import reqsign

from .. import status
from ..context import HubContext
from ..errors import RequestInvalid
from ..grants import grant_row
from ..store import now_ms
from .agent_routes import ERRORS
from .auth import agent_auth, authenticate, cleanup_nonces, nonce_expiry, path_with_query
from .models import (CommandDone, CommandResult, FeedbackRequest, HeartbeatRequest, HeartbeatResponse,
                     RequestForData, Stored, TestReport)

router = APIRouter(prefix="/v1", tags=["status"])


def _ctx(request: Request) -> HubContext:
    return request.app.state.ctx


@router.post("/heartbeat", response_model=HeartbeatResponse, responses=ERRORS,
             summary="Report status; the reply carries pending commands")
async def heartbeat(request: Request, body: HeartbeatRequest) -> dict[str, Any]:
    # The hot path (every agent, every 30 s): authentication, nonce, status and commands share one
    # transaction, and the validated body is stored as sent instead of being re-serialised.
    raw = await request.body()
    return await run_in_threadpool(_heartbeat, _ctx(request), request.headers, path_with_query(request), raw, body)


def _heartbeat(ctx: HubContext, headers: Any, target: str, raw: bytes, body: HeartbeatRequest) -> dict[str, Any]:
    if ctx.engine.dialect.name == "postgresql":
        # two round trips in autocommit: read the agent, then one statement that records the nonce,
        # stores the status and takes the pending commands (atomic as one statement). Each round trip
        # costs a context switch, which is what limits a loaded machine.
        with ctx.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            agent = authenticate(ctx, headers, "POST", target, raw, conn, record_nonce=False)
            now = now_ms()
            t, nonce = reqsign.parse_headers(headers)[1:3]
            cmds = status.record_heartbeat_pg(conn, agent, nonce, nonce_expiry(t, now), raw.decode(),
                                              body.agent_version, body.hostname, now)
            cleanup_nonces(conn, now)
    else:
        with ctx.engine.begin() as conn:
            agent = authenticate(ctx, headers, "POST", target, raw, conn)
            cmds = status.record_heartbeat(conn, agent, raw.decode(), body.agent_version, body.hostname)
    return {"server_time_ms": now_ms(), "commands": cmds}


@router.post("/commands/{command_id}/result", response_model=CommandDone, responses=ERRORS,
             summary="Report the outcome of a command")
def command_result(request: Request, body: CommandResult, command_id: str = Path(..., max_length=40),
                   agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    with _ctx(request).engine.begin() as conn:
        return status.command_result(conn, agent["agent_id"], command_id, body.ok, body.detail, body.report)


@router.post("/feedback", response_model=Stored, responses=ERRORS,
             summary="Data-quality feedback to the provider (问题反馈)")
def feedback(request: Request, body: FeedbackRequest,
             agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    with _ctx(request).engine.begin() as conn:
        grant_row(conn, agent["unit"], body.dataset)  # a revoked grant still allows reporting on past data
        mid = status.add_message(conn, agent, "feedback", body.model_dump(mode="json"),
                                 dataset=body.dataset, seq=body.seq)
    return {"id": mid, "stored": True}


@router.post("/requests", response_model=Stored, responses=ERRORS, summary="Ask for new data (需求征集)")
def data_request(request: Request, body: RequestForData,
                 agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    with _ctx(request).engine.begin() as conn:
        return {"id": status.add_message(conn, agent, "request", body.model_dump(mode="json")), "stored": True}


@router.post("/test-reports", response_model=Stored, responses=ERRORS,
             summary="A joint-debug (联调) report, shown on the agent's fleet page")
def test_report(request: Request, body: TestReport,
                agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    with _ctx(request).engine.begin() as conn:
        return {"id": status.add_message(conn, agent, "test-report", body.model_dump(mode="json")), "stored": True}


@router.post("/diagnostics", response_model=Stored, responses=ERRORS,
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/zip": {"schema": {"type": "string", "format": "binary"}}}}},
             summary="Upload a redacted diagnostics bundle (zip, at most 20 MiB)")
async def diagnostics(request: Request, agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    body = await request.body()
    if not (body.startswith(b"PK\x03\x04") or body.startswith(b"PK\x05\x06")):
        raise RequestInvalid("the diagnostics bundle is not a zip file")
    return await run_in_threadpool(_store_diagnostics, _ctx(request), agent, body)


def _store_diagnostics(ctx: HubContext, agent: dict[str, Any], body: bytes) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(dir=ctx.tmp_dir, delete=False) as f:
        f.write(body)
    key = f"diagnostics/{agent['agent_id']}/{uuid.uuid4().hex}.zip"
    ctx.blobs.put_file(key, pathlib.Path(f.name))
    with ctx.engine.begin() as conn:
        mid = status.add_message(conn, agent, "diagnostics", {"size": len(body)}, blob_key=key)
    return {"id": mid, "stored": True}
