"""Routes of the fleet view: /fleet and /fleet/agents/{id} (HTML), /admin/v1/fleet[/agents/{id}] (JSON).

All need the admin token: as a bearer header, or for a browser once as ``/fleet?token=…``, which sets an
HttpOnly cookie and redirects so the token does not stay in the address bar or in history.
"""

from __future__ import annotations

from typing import Any, Optional

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from .. import status
from ..api.agent_routes import ERRORS
from ..api.auth import admin_auth, check_admin
from ..context import HubContext
from ..errors import AgentNotFound
from ..fleet import fleet
from . import render

router = APIRouter(tags=["fleet"])


def _ctx(request: Request) -> HubContext:
    return request.app.state.ctx


def _one(ctx: HubContext, agent_id: str) -> dict[str, Any]:
    doc = fleet(ctx, agent_id)
    if not doc["agents"]:
        raise AgentNotFound(repr(agent_id))
    return doc


@router.get("/fleet", response_class=HTMLResponse, include_in_schema=False)
async def fleet_html(request: Request, token: Optional[str] = None) -> Response:
    ctx = _ctx(request)
    if token:
        check_admin(ctx, f"Bearer {token}")
        resp = RedirectResponse("/fleet", status_code=303)
        resp.set_cookie("edx_admin", token, httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return resp
    await admin_auth(request)
    doc = await run_in_threadpool(fleet, ctx)
    return HTMLResponse(render.fleet_page(doc))


@router.get("/fleet/agents/{agent_id}", response_class=HTMLResponse, include_in_schema=False,
            dependencies=[Depends(admin_auth)])
def agent_html(request: Request, agent_id: str) -> Response:
    ctx = _ctx(request)
    doc = _one(ctx, agent_id)
    with ctx.engine.connect() as conn:
        reports = status.list_messages(conn, agent_id=agent_id, kind="test-report", limit=20)
        msgs = [m for m in status.list_messages(conn, agent_id=agent_id, limit=100)
                if m["kind"] in ("feedback", "request")]
        cmds = status.list_commands(conn, agent_id, limit=20)
    return HTMLResponse(render.agent_page(doc["agents"][0], doc["generated_at_ms"], reports, msgs, cmds))


@router.get("/admin/v1/fleet", tags=["admin"], dependencies=[Depends(admin_auth)], responses=ERRORS,
            summary="The fleet view as JSON")
def fleet_json(request: Request) -> dict[str, Any]:
    return fleet(_ctx(request))


@router.get("/admin/v1/fleet/agents/{agent_id}", tags=["admin"], dependencies=[Depends(admin_auth)],
            responses=ERRORS,
            summary="One agent's fleet view, with its reports, feedback and commands")
def agent_json(request: Request, agent_id: str) -> dict[str, Any]:
    ctx = _ctx(request)
    doc = _one(ctx, agent_id)
    with ctx.engine.connect() as conn:
        extra = {"messages": status.list_messages(conn, agent_id=agent_id, limit=100),
                 "commands": status.list_commands(conn, agent_id, limit=50)}
    return doc["agents"][0] | extra
