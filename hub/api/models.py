"""Pydantic models of the agent protocol's bodies: the OpenAPI document at /openapi.json is generated from these.

Request models forbid nothing extra on purpose where newer agents may send more (heartbeat, reports),
and forbid unknown fields where a typo would silently change meaning (enrol, resync, feedback).
Sizes are bounded so a valid body can never be large enough to hurt the hub.
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

DatasetName = Field(..., min_length=1, max_length=63, pattern=r"^[a-z][a-z0-9_]{0,62}$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    code: str = Field(..., examples=["auth-signature-invalid"])
    message: str
    remedy: str = ""


class ErrorBody(BaseModel):
    error: ErrorDetail


class Hello(BaseModel):
    api_version: Literal["1"] = "1"
    server_time_ms: int
    hub_keys: list[dict[str, Any]]


class EnrolRequest(Strict):
    token: str = Field(..., min_length=1, max_length=200)
    hostname: str = Field("", max_length=255)
    agent_version: str = Field("", max_length=64)
    keys: dict[str, Any] = Field(..., description="AgentPublicKeys.to_dict() of the agent's current keys")


class Retention(BaseModel):
    policy: Literal["keep", "purge_after_days", "purge_on_revoke"]
    days: Optional[int] = None


class Grant(BaseModel):
    dataset: str
    title: str
    provider_unit: str
    catalog_id: str
    schema_: dict[str, Any] = Field(..., alias="schema")
    schema_version: int
    update_interval_s: int
    retention: Retention
    sharing: str
    classification: str
    personal_info: bool
    state: Literal["active", "revoked"]
    start: int
    end: Optional[int] = None

    model_config = ConfigDict(populate_by_name=True)


class EnrolResponse(BaseModel):
    agent_id: str
    unit: str
    hub_keys: list[dict[str, Any]]
    grants: list[Grant]
    api_version: Literal["1"] = "1"


class GrantsResponse(BaseModel):
    grants: list[Grant]


class BatchDescriptor(BaseModel):
    dataset: str
    seq: int
    kind: Literal["snapshot", "changes"]
    size: int = Field(..., description="bytes of the sealed envelope")
    sha256: str = Field(..., description="hex SHA-256 of the sealed envelope")
    rows: int
    hh: str = Field(..., description="hex header hash naming this envelope")
    prev_hh: str = Field(..., description="hh of batch seq-1 sealed for this agent; zeros for its first")
    resync: bool = False
    created_at: int = Field(..., description="Unix ms when sealed")


class BatchList(BaseModel):
    batches: list[BatchDescriptor]
    latest_seq: int


class WaitResponse(BaseModel):
    ready: dict[str, int] = Field(..., description="datasets with a batch after the agent's cursor (or a "
                                                   "resync snapshot waiting), each with its latest seq")
    waited_ms: int


class AckRequest(Strict):
    receipt: dict[str, Any] = Field(..., description="envelope.sign_receipt(...) output")


class AckResponse(BaseModel):
    acked: bool
    duplicate: bool
    checksum_mismatch: bool


class ResyncRequest(Strict):
    dataset: str = DatasetName


class ResyncResponse(BaseModel):
    batch: BatchDescriptor


class DatasetError(Open):
    code: str = Field(..., max_length=100)
    message: str = Field("", max_length=2000)


class DatasetStatus(Open):
    dataset: str = Field(..., max_length=63)
    last_seq: Optional[int] = None
    last_applied_at: Optional[int | str] = None
    rows_total: Optional[int] = None
    state: Optional[str] = Field(None, max_length=32)
    freshness: Optional[str | float | int] = None
    last_error: Optional[DatasetError] = None
    progress: Optional[dict[str, Any]] = None


class HeartbeatRequest(Open):
    agent_version: str = Field("", max_length=64)
    hostname: str = Field("", max_length=255)
    config_digest: str = Field("", max_length=128)
    uptime_s: float = 0
    datasets: list[DatasetStatus] = Field(default_factory=list, max_length=1000)
    disk: dict[str, Any] = Field(default_factory=dict)
    certs: dict[str, Any] = Field(default_factory=dict)
    clock_ms: Optional[int] = None


class Command(BaseModel):
    id: str
    type: Literal["resync", "doctor", "diagnostics"]
    dataset: Optional[str] = None


class HeartbeatResponse(BaseModel):
    server_time_ms: int
    commands: list[Command]


class CommandResult(Strict):
    ok: bool
    detail: str = Field("", max_length=10000)
    report: Optional[Any] = None


class Quarantined(Strict):
    key: Any
    column: Optional[str] = Field(None, max_length=63)
    reason: str = Field(..., max_length=2000)


class FeedbackRequest(Strict):
    dataset: str = DatasetName
    seq: Optional[int] = Field(None, ge=0, le=2**62)
    message: str = Field(..., min_length=1, max_length=20000)
    keys: Optional[list[Any]] = Field(None, max_length=10000)
    quarantined: Optional[list[Quarantined]] = Field(None, max_length=10000)


class RequestForData(Strict):
    message: str = Field(..., min_length=1, max_length=20000)


class TestReport(Strict):
    report: dict[str, Any]
    correlation_id: str = Field(..., min_length=1, max_length=100)


class Stored(BaseModel):
    id: int
    stored: bool = True


class CommandDone(BaseModel):
    id: str
    state: Literal["done", "failed"]
