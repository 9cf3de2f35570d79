"""The platform team's HTTP admin surface under /admin/v1 (bearer admin token): catalog, grants, tokens, agents, commands.

The CLI does the same through the data directory; this is for tools and dashboards on the platform side.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ..errors import AgentNotFound
from .. import catalog, enrolment, grants, status
from ..context import HubContext
from .agent_routes import ERRORS
from .auth import admin_auth

router = APIRouter(prefix="/admin/v1", tags=["admin"], dependencies=[Depends(admin_auth)], responses=ERRORS)


def _ctx(request: Request) -> HubContext:
    return request.app.state.ctx


class TokenCreate(BaseModel):
    unit: str = Field(..., min_length=1, max_length=200)
    datasets: list[str] = Field(default_factory=list, max_length=1000)
    ttl_s: int = Field(1800, ge=60, le=7 * 86400)


class GrantChange(BaseModel):
    unit: str = Field(..., min_length=1, max_length=200)
    dataset: str = Field(..., min_length=1, max_length=63)
    start_ms: Optional[int] = Field(None, ge=0, le=2**62)
    end_ms: Optional[int] = Field(None, ge=0, le=2**62)


class CommandCreate(BaseModel):
    type: str = Field(..., pattern=r"^(resync|doctor|diagnostics)$")
    dataset: Optional[str] = Field(None, max_length=63)


def _public_agent(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("keys_json", "heartbeat_json")}


@router.get("/datasets", summary="The catalog")
def list_datasets(request: Request) -> dict[str, Any]:
    with _ctx(request).engine.connect() as conn:
        return {"datasets": [d.to_dict() for d in catalog.list_datasets(conn)]}


@router.get("/datasets/{name}", summary="One catalog entry with its schema history")
def show_dataset(request: Request, name: str) -> dict[str, Any]:
    with _ctx(request).engine.connect() as conn:
        return catalog.get_dataset(conn, name).to_dict() | {"schemas": catalog.schema_history(conn, name)}


@router.post("/tokens", summary="Create a one-time enrolment token (grants the datasets)")
def create_token(request: Request, body: TokenCreate) -> dict[str, Any]:
    ctx = _ctx(request)
    with ctx.engine.begin() as conn:
        token = enrolment.create_token(conn, body.unit, body.datasets, body.ttl_s)
    return {"token": token, "unit": body.unit, "datasets": body.datasets, "ttl_s": body.ttl_s}


@router.get("/grants", summary="All grants")
def list_grants(request: Request, unit: Optional[str] = None) -> dict[str, Any]:
    with _ctx(request).engine.connect() as conn:
        return {"grants": grants.list_grants(conn, unit)}


@router.post("/grants", summary="Grant a dataset to a unit (refused for 不予共享)")
def add_grant(request: Request, body: GrantChange) -> dict[str, Any]:
    with _ctx(request).engine.begin() as conn:
        return grants.add_grant(conn, body.unit, body.dataset, start_ms=body.start_ms, end_ms=body.end_ms)


@router.post("/grants/revoke", summary="Revoke a grant: delivery stops, agents apply retention")
def revoke_grant(request: Request, body: GrantChange) -> dict[str, Any]:
    with _ctx(request).engine.begin() as conn:
        return grants.revoke_grant(conn, body.unit, body.dataset)


@router.get("/agents", summary="Enrolled agents")
def list_agents(request: Request, unit: Optional[str] = None) -> dict[str, Any]:
    with _ctx(request).engine.connect() as conn:
        return {"agents": [_public_agent(a) for a in enrolment.list_agents(conn, unit)]}


@router.post("/agents/{agent_id}/commands", summary="Queue a command for the agent's next heartbeat")
def queue_command(request: Request, agent_id: str, body: CommandCreate) -> dict[str, Any]:
    with _ctx(request).engine.begin() as conn:
        enrolment.get_agent(conn, agent_id, AgentNotFound)
        return {"id": status.queue_command(conn, agent_id, body.type, body.dataset)}


@router.post("/agents/{agent_id}/{action}", summary="disable, enable or revoke an agent")
def agent_action(request: Request, agent_id: str, action: str) -> dict[str, Any]:
    from ..errors import RequestInvalid

    states = {"disable": "disabled", "enable": "active", "revoke": "revoked"}
    if action not in states:
        raise RequestInvalid(f"action {action!r}: one of disable, enable, revoke")
    with _ctx(request).engine.begin() as conn:
        return _public_agent(enrolment.set_agent_state(conn, agent_id, states[action]))


@router.get("/messages", summary="Feedback, data requests, test reports and diagnostics received")
def list_messages(request: Request, kind: Optional[str] = None, agent_id: Optional[str] = None) -> dict[str, Any]:
    with _ctx(request).engine.connect() as conn:
        return {"messages": status.list_messages(conn, agent_id=agent_id, kind=kind)}
