"""The hub's ASGI application: routers, body limits, content-type checks and the one error shape.

Every refusal is ``{"error": {"code", "message", "remedy"}}`` with a 4xx status; bad input never
produces a 5xx. Body limits are enforced before the body reaches a handler (1 MiB for JSON, 20 MiB for
diagnostics bundles), whether or not the client sent Content-Length.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent.errors import AgentError

from ..context import HubContext
from ..errors import ContentTypeUnsupported, RequestInvalid, RequestTooLarge, http_status

# stdlib logging for the crash handler: it must never fail itself while rendering an odd exception
log = logging.getLogger("edx.hub")

_ZIP_TYPES = ("application/zip", "application/octet-stream", "application/x-zip-compressed")


def error_response(exc: AgentError, status: int | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": exc.code, "message": exc.text, "remedy": exc.remedy_text}},
                        status_code=status or http_status(exc))


class BodyGuard:
    """Pure ASGI middleware: caps request bodies and checks content types on POST before routing."""

    def __init__(self, app: ASGIApp, ctx: HubContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        diagnostics = path == "/v1/diagnostics"
        limit = self.ctx.settings.max_diagnostics_body if diagnostics else self.ctx.settings.max_json_body
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if diagnostics:
            ok = ctype in _ZIP_TYPES
        else:
            ok = ctype == "application/json" or ctype.endswith("+json")
        if not ok:
            want = "application/zip" if diagnostics else "application/json"
            await error_response(ContentTypeUnsupported(f"{ctype or 'none'}; send {want}"))(scope, receive, send)
            return
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await error_response(RequestTooLarge(f"{declared} bytes > {limit}"))(scope, receive, send)
            return
        # read the whole (bounded) body here so chunked uploads are capped too
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await error_response(RequestTooLarge(f"more than {limit} bytes"))(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {e.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid body"


def create_app(ctx: HubContext) -> FastAPI:
    from . import admin_routes, agent_routes, key_routes, status_routes
    from ..web import fleet_pages, metrics

    app = FastAPI(
        title="edx hub: agent protocol",
        version="1",
        description=("The platform side of the data-exchange agent protocol (docs/protocol.md). Every "
                     "/v1 call except hello and enrol is authenticated by a request signature "
                     "(X-EDX-Agent, X-EDX-Time, X-EDX-Nonce, X-EDX-Signature)."),
        docs_url=None, redoc_url=None,
    )
    app.state.ctx = ctx

    @app.exception_handler(AgentError)
    async def _agent_error(_req: Request, exc: AgentError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        if any(e.get("type") == "json_invalid" for e in exc.errors()):
            return error_response(RequestInvalid("body is not valid JSON"), 400)
        return error_response(RequestInvalid(_validation_message(exc)))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_req: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
        return JSONResponse({"error": {"code": code, "message": str(exc.detail), "remedy": ""}},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _crash(_req: Request, exc: Exception) -> JSONResponse:
        log.error("hub_internal_error %s %s: %s", _req.method, _req.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse({"error": {"code": "hub-internal-error", "message": "internal error",
                                       "remedy": "Retry later; the platform team sees this in the hub's log."}},
                            status_code=500)

    app.include_router(agent_routes.router)
    app.include_router(key_routes.router)
    app.include_router(status_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(fleet_pages.router)
    app.include_router(metrics.router)
    app.add_middleware(BodyGuard, ctx=ctx)
    metrics.install(app, ctx)  # outermost: times everything, refusals included
    _merge_signature_security(app)
    return app


_UNSIGNED = {("/v1/hello", "get"), ("/v1/enrol", "post")}


def _merge_signature_security(app: FastAPI) -> None:
    """Document authentication in /openapi.json: the four signature headers together on every signed /v1
    call, the bearer token on /admin/v1 (the checks themselves are ``agent_auth`` / ``admin_auth``)."""
    from .auth import ADMIN_SCHEME, SIGNATURE_SCHEMES

    base = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = base()
            doc.setdefault("components", {}).setdefault("securitySchemes", {}).update(
                {**SIGNATURE_SCHEMES, **ADMIN_SCHEME})
            for path, ops in doc.get("paths", {}).items():
                for method, op in ops.items():
                    if path.startswith("/v1/") and (path, method) not in _UNSIGNED:
                        op["security"] = [{k: [] for k in SIGNATURE_SCHEMES}]
                    elif path.startswith("/admin/"):
                        op["security"] = [{k: [] for k in ADMIN_SCHEME}]
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
