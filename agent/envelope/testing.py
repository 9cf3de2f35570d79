"""Helpers for tests of code that uses envelopes: in-memory seal/open, and a ready-made key ring.

Not used by the product; hub and agent tests import it so they need not repeat the ceremony of
compress → seal → read_header → check_context → verify_stream → open_payload.
"""

from __future__ import annotations

import io
from collections.abc import Callable
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
    def generate(cls, suite: Suite | int = Suite.INTL1, agent_id: str = "agent-1") -> KeyRing:
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


# --- crafting deliberately wrong envelopes (tamper suite, negative golden vectors) ---------------

ChunkPlan = list[tuple[int, bool, bytes]]  # (counter in the nonce, last flag, plaintext)


def craft(ring: KeyRing, compressed: bytes, *, uncompressed_len: int, chunk_size: int = 64,
          overrides: dict[str, Any] | None = None,
          edit_fields: Callable[[list[tuple[int, bytes]]], list[tuple[int, bytes]]] | None = None,
          edit_chunks: Callable[[ChunkPlan], ChunkPlan] | None = None,
          prefix: bytes | None = None, dek: bytes | None = None, salt: bytes | None = None,
          sig_k: int | None = None, wrapped_dek: bytes | None = None) -> bytes:
    """An envelope validly signed by ``ring.signer`` whose fields, TLVs or chunks are edited at will.

    Everything the platform signs can be wrong here, which is exactly what a compromised or buggy platform
    (or a forger holding a signing key) could send: the agent must still refuse it with the right code.
    """
    from .header import (
        COMPRESSION_ZSTD,
        DST_SIG,
        PAYLOAD_EDX_CSV1,
        batch_hash,
        encode_tbs,
        encode_tlvs,
        header_fields,
    )
    from .provider import get_provider
    from .stream import PayloadInfo, derive_stream_key, wrap_info

    suite = ring.suite
    p = get_provider(suite)
    dek = dek if dek is not None else bytes(range(p.dek_len))
    salt = salt if salt is not None else bytes(32)
    info = PayloadInfo(uncompressed_len, len(compressed), p.hash(compressed))
    fields: dict[str, Any] = dict(
        suite=suite, dataset_id="ds.students", batch_seq=1, prev_hh=ZERO_HH, kind="changes",
        schema_version=1, schema_hash=bytes(range(32)), row_count=0, payload_format=PAYLOAD_EDX_CSV1,
        compression=COMPRESSION_ZSTD, uncompressed_len=info.uncompressed_len, payload_len=info.payload_len,
        chunk_size=chunk_size, salt=salt, recipient_id=ring.agent_id, recipient_key_id=ring.agent.key_id,
        wrapped_dek=b"", signer_key_id=ring.signer.key_id, content_digest=info.content_digest,
        created_at_ms=1_700_000_000_000, expires_at_ms=0, extensions={})
    fields.update(overrides or {})
    if wrapped_dek is None:
        wrapped_dek = p.wrap(ring.agent.enc_public, dek, wrap_info(suite, fields["recipient_key_id"]))
    fields["wrapped_dek"] = wrapped_dek
    tlvs = header_fields(BatchHeader(**fields))
    if edit_fields is not None:
        tlvs = edit_fields(tlvs)
    tbs = encode_tbs(suite, encode_tlvs(tlvs))
    if prefix is not None:
        tbs = prefix + tbs[len(prefix):]
    sig = ring.signer.sign(DST_SIG + tbs, _k=sig_k)
    hh = batch_hash(suite, tbs)
    key, nprefix = derive_stream_key(suite, dek, salt, hh)
    cipher = p.chunk_cipher(key)
    cs = fields["chunk_size"]
    pieces = [compressed[i:i + cs] for i in range(0, len(compressed), cs)] or [b""]
    plan: ChunkPlan = [(i, i == len(pieces) - 1, piece) for i, piece in enumerate(pieces)]
    if edit_chunks is not None:
        plan = edit_chunks(plan)
    out = bytearray(tbs + len(sig).to_bytes(2, "big") + sig)
    for counter, last, pt in plan:
        buf = memoryview(bytearray(len(pt) + 16))
        cipher.seal_into(nprefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00"), hh,
                         memoryview(pt), buf)
        out += buf
    return bytes(out)


def zstd_frame(data: bytes, *, level: int = 3, window_log: int | None = None,
               content_size: bool = True) -> bytes:
    """One zstd frame of ``data``; ``window_log``/``content_size`` let tests forge bomb-shaped frames."""
    import zstandard

    params = zstandard.ZstdCompressionParameters.from_level(
        level, **({"window_log": window_log} if window_log else {}), write_content_size=content_size)
    cctx = zstandard.ZstdCompressor(compression_params=params)
    if content_size:
        return cctx.compress(data)
    out = io.BytesIO()
    with cctx.stream_writer(out, closefd=False) as w:  # streaming: the size is not known up front
        w.write(data)
    return out.getvalue()
