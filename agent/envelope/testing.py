"""Helpers for tests of code that uses envelopes: in-memory seal/open, and a ready-made key ring.

Not used by the product; hub and agent tests import it so they need not repeat the ceremony of
compress → seal → read_header → check_context → verify_stream → open_payload.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from .header import DEFAULT_CHUNK, BatchHeader, read_header
from .keys import AgentKeys, SignerKey, generate_agent_keys, generate_signer_key
from .policy import ZERO_HH, check_context
from .provider import Suite
from .stream import compress_payload, open_payload, seal, verify_stream


@dataclass
class KeyRing:
    """One platform signer and one agent, same suite."""

    suite: Suite
    signer: SignerKey
    agent: AgentKeys
    agent_id: str = "agent-1"
    previous: list[AgentKeys] = field(default_factory=list)

    @classmethod
    def generate(cls, suite: Suite | int = Suite.INTL1, agent_id: str = "agent-1") -> "KeyRing":
        s = Suite.parse(suite)
        return cls(s, generate_signer_key(s), generate_agent_keys(s), agent_id)

    @property
    def recipient_keys(self) -> list[AgentKeys]:
        return [self.agent, *self.previous]


def seal_bytes(ring: KeyRing, payload: bytes, *, dataset_id: str = "ds.students", batch_seq: int = 1,
               prev_hh: bytes = ZERO_HH, kind: str = "changes", row_count: int = 0,
               created_at_ms: int = 1_700_000_000_000, expires_at_ms: int = 0,
               chunk_size: int = DEFAULT_CHUNK, level: int = 3, recipient: Any = None,
               recipient_id: str | None = None, **kw: Any) -> tuple[bytes, BatchHeader]:
    """Compress and seal ``payload`` in memory; returns (envelope bytes, header)."""
    comp = io.BytesIO()
    info = compress_payload(io.BytesIO(payload), comp, ring.suite, level)
    comp.seek(0)
    out = io.BytesIO()
    h = seal(out, comp, info, suite=ring.suite, signer=ring.signer,
             recipient_id=recipient_id or ring.agent_id, recipient=recipient or ring.agent.public(),
             dataset_id=dataset_id, batch_seq=batch_seq, prev_hh=prev_hh, kind=kind, schema_version=1,
             schema_hash=bytes(range(32)), row_count=row_count, created_at_ms=created_at_ms,
             expires_at_ms=expires_at_ms, chunk_size=chunk_size, **kw)
    return out.getvalue(), h


def open_bytes(ring: KeyRing, envelope: bytes, *, dataset_id: str = "ds.students",
               now_ms: int = 1_700_000_000_000, two_pass: bool = True) -> tuple[BatchHeader, bytes]:
    """The whole agent-side sequence on bytes; returns (header, decompressed payload) or raises."""
    src = io.BytesIO(envelope)
    h = read_header(src, trusted=[ring.signer.public()], allowed_suites=[ring.suite])
    check_context(h, recipient_id=ring.agent_id, recipient_keys=ring.recipient_keys, dataset_id=dataset_id,
                  now_ms=now_ms)
    if two_pass:
        verify_stream(src, h, ring.recipient_keys)
        src.seek(0)
    ps = open_payload(src, h, ring.recipient_keys)
    data = io.BufferedReader(ps).read()
    ps.finish()
    return h, data
