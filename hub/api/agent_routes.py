"""The agent-facing delivery endpoints: hello, enrol, grants, batch listing, envelope download (Range), ack, resync.

Handlers are plain ``def`` so FastAPI runs them in its thread pool: the store and blob calls block.
Every handler scopes what it reads to the authenticated agent's unit; a dataset the unit holds no
grant for answers exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Iterator

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse

from .. import delivery
from ..context import HubContext
from ..enrolment import enrol as do_enrol
from ..errors import RangeNotSatisfiable, RequestInvalid
from ..grants import grants_for_agent
from ..store import now_ms
from .auth import agent_auth
from .models import (AckRequest, AckResponse, BatchList, EnrolRequest, EnrolResponse, ErrorBody,
                     GrantsResponse, Hello, ResyncRequest, ResyncResponse, WaitResponse)

router = APIRouter(prefix="/v1", tags=["agent"])
ERRORS: dict[int | str, dict[str, Any]] = {
    s: {"model": ErrorBody} for s in (400, 401, 403, 404, 409, 413, 415, 422)}
_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
DATASET_PATH = Path(..., max_length=63, pattern=r"^[a-z][a-z0-9_]{0,62}$")
SEQ_PATH = Path(..., ge=1, le=2**62)


def _ctx(request: Request) -> HubContext:
    return request.app.state.ctx


@router.get("/hello", response_model=Hello, summary="Hub identity and time (no auth)")
def hello(request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    return {"api_version": "1", "server_time_ms": now_ms(), "hub_keys": ctx.hub_keys()}


@router.post("/enrol", response_model=EnrolResponse, responses=ERRORS,
             summary="Register this agent's public keys with a one-time token (no request signature)")
def enrol(body: EnrolRequest, request: Request) -> dict[str, Any]:
    ctx = _ctx(request)
    with ctx.engine.begin() as conn:
        agent = do_enrol(conn, body.token, hostname=body.hostname, agent_version=body.agent_version,
                         keys=body.keys)
        grants = grants_for_agent(conn, agent["unit"])
    return {"agent_id": agent["agent_id"], "unit": agent["unit"], "hub_keys": ctx.hub_keys(),
            "grants": grants, "api_version": "1"}


@router.get("/grants", response_model=GrantsResponse, responses=ERRORS, summary="This unit's grants")
def grants(request: Request, agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    with _ctx(request).engine.connect() as conn:
        return {"grants": grants_for_agent(conn, agent["unit"])}


WAIT_MAX_S = 55.0          # below common proxy idle timeouts (60 s)
WAIT_POLL_S = 1.0
_CURSOR_RE = re.compile(r"^([a-z][a-z0-9_]{0,62}):(\d{1,19})$")


@router.get("/batches/wait", response_model=WaitResponse, responses=ERRORS,
            summary="Long-poll: answer as soon as one of the datasets has a batch after its cursor")
async def wait_batches(request: Request,
                       cursor: list[str] = Query(..., min_length=1, max_length=200,
                                                 description="DATASET:SEQ, the agent's last applied seq"),
                       wait: float = Query(25.0, ge=0, le=WAIT_MAX_S),
                       agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    """The store is polled once a second from the event loop (each check in the thread pool), so a
    waiting agent holds a connection but no worker thread; any hub instance can answer any agent."""
    cursors: dict[str, int] = {}
    for c in cursor:
        m = _CURSOR_RE.match(c)
        if m is None:
            raise RequestInvalid(f"cursor {c[:80]!r} is not DATASET:SEQ")
        cursors[m.group(1)] = int(m.group(2))
    ctx = _ctx(request)
    t0 = time.monotonic()
    while True:
        ready = await run_in_threadpool(delivery.ready_datasets, ctx, agent, cursors)
        left = wait - (time.monotonic() - t0)
        if ready or left <= 0 or await request.is_disconnected():
            return {"ready": ready, "waited_ms": int(1000 * (time.monotonic() - t0))}
        await asyncio.sleep(min(WAIT_POLL_S, left))


@router.get("/batches", response_model=BatchList, responses=ERRORS, summary="Batches after a cursor")
def batches(request: Request, dataset: str = Query(..., max_length=63, pattern=r"^[a-z][a-z0-9_]{0,62}$"),
            after: int = Query(0, ge=0, le=2**62), limit: int = Query(100, ge=1, le=1000),
            agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    return delivery.list_batches(_ctx(request), agent, dataset, after, limit)


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    m = _RANGE_RE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None  # unsupported range syntax (e.g. several ranges): RFC 9110 says send the whole body
    if m.group(1):
        start = int(m.group(1))
        end = int(m.group(2)) if m.group(2) else size - 1
    else:
        n = int(m.group(2))
        start, end = max(0, size - n), size - 1
    end = min(end, size - 1)
    if start >= size or start > end:
        raise RangeNotSatisfiable(f"{header} of {size} bytes")
    return start, end


@router.get("/batches/{dataset}/{seq}/envelope", responses={
    200: {"content": {"application/octet-stream": {}}, "description": "the whole sealed envelope"},
    206: {"content": {"application/octet-stream": {}}, "description": "the requested byte range"},
    **ERRORS, 410: {"model": ErrorBody, "description": "superseded by a later snapshot and collected: list again"},
    416: {"model": ErrorBody}}, response_class=Response, summary="Download a sealed envelope")
def envelope(request: Request, dataset: str = DATASET_PATH, seq: int = SEQ_PATH,
             agent: dict[str, Any] = Depends(agent_auth)) -> Response:
    ctx = _ctx(request)
    row = delivery.sealed_for_download(ctx, agent, dataset, seq)
    size = row["size"]
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{row["sha256"]}"', "X-EDX-HH": row["hh"]}
    rng = request.headers.get("range")
    if_range = request.headers.get("if-range")
    span = _parse_range(rng, size) if rng and (not if_range or if_range.strip('"') == row["sha256"]) else None
    if span is None:
        start, end, status = 0, size - 1, 200
    else:
        (start, end), status = span, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(end - start + 1)

    def body() -> Iterator[bytes]:
        if size:
            yield from ctx.blobs.open_range(row["blob_key"], start, end)

    return StreamingResponse(body(), status_code=status, headers=headers, media_type="application/octet-stream")


@router.post("/batches/{dataset}/{seq}/ack", response_model=AckResponse, responses=ERRORS,
             summary="Acknowledge an applied batch with a signed receipt (idempotent)")
def ack(request: Request, body: AckRequest, dataset: str = DATASET_PATH, seq: int = SEQ_PATH,
        agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    return delivery.ack(_ctx(request), agent, dataset, seq, body.receipt)


@router.post("/resync", response_model=ResyncResponse, responses=ERRORS,
             summary="Issue a fresh snapshot of the dataset's current state for this agent")
def resync(request: Request, body: ResyncRequest, agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    return {"batch": delivery.resync(_ctx(request), agent, body.dataset)}


@router.get("/test-batch", responses={200: {"content": {"application/octet-stream": {}}}, **ERRORS},
            response_class=Response, summary="A small synthetic sealed snapshot for joint debugging")
def test_batch(request: Request, agent: dict[str, Any] = Depends(agent_auth)) -> Response:
    from ..selftest import sealed_test_batch

    data, header = sealed_test_batch(_ctx(request), agent)
    return Response(data, media_type="application/octet-stream",
                    headers={"X-EDX-Dataset": header.dataset_id, "X-EDX-Seq": str(header.batch_seq),
                             "X-EDX-HH": header.hh_hex})
