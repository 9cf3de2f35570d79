"""Agent key rotation: an enrolled agent registers a new key pair, signing the request with its current one.

From the moment the hub answers, new batches are sealed to the new key and the agent signs with it;
batches already sealed to the old key stay deliverable, and the agent keeps the old private key until
they are applied (docs/protocol.md §Key rotation). Registering the key that is already current is a
no-op, so an agent that crashed after the hub switched can simply send the same key again.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from ..enrolment import parse_public_keys
from ..errors import KeySuiteChange
from ..store import agents
from .auth import agent_auth

router = APIRouter(prefix="/v1", tags=["agent"])


class KeysRequest(BaseModel):
    keys: dict[str, Any] = Field(..., description="AgentPublicKeys.to_dict() of the agent's new keys")


class KeysResponse(BaseModel):
    agent_id: str
    key_id: str
    changed: bool


@router.post("/keys", response_model=KeysResponse, summary="Rotate this agent's keys (signed with the current key)")
def rotate_keys(request: Request, body: KeysRequest, agent: dict[str, Any] = Depends(agent_auth)) -> dict[str, Any]:
    new = parse_public_keys(body.keys)
    old = parse_public_keys(json.loads(agent["keys_json"]))
    if int(new.suite) != int(old.suite):
        raise KeySuiteChange(f"{old.suite.label} -> {new.suite.label}")
    changed = new.key_id != old.key_id
    if changed:
        ctx = request.app.state.ctx
        with ctx.engine.begin() as conn:
            conn.execute(agents.update().where(agents.c.agent_id == agent["agent_id"])
                         .values(keys_json=json.dumps(new.to_dict())))
    return {"agent_id": agent["agent_id"], "key_id": new.key_id.hex(), "changed": changed}
