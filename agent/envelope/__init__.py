"""Envelope v1: the signed, chunked, streaming-encrypted container a batch travels in (docs/envelope.md).

This package is pure: no I/O beyond the streams it is given. Hub and agent both use it.

Public API (the rest of the project uses only these names):

    Suite                 IntEnum: INTL1 = 1 (X25519/Ed25519/AES-256-GCM/SHA-256), GM1 = 2 (SM2/SM4-GCM/SM3)
    AgentKeys             an agent's private keys for one suite (encryption + signing), with .public()
    AgentPublicKeys       the public half sent at enrolment: suite, enc_public, sign_public, key_id
    SignerKey             the hub's private signing key for one suite, with .public() -> VerifyKey
    VerifyKey             a public signing key with .key_id (16 bytes)
    generate_agent_keys(suite) -> AgentKeys; generate_signer_key(suite) -> SignerKey
    keys serialise with .to_dict()/.from_dict() (JSON-safe; private parts only in AgentKeys/SignerKey)

    PayloadInfo           (uncompressed_len, payload_len, content_digest) of a compressed payload
    compress_payload(src, dst, suite, level=3) -> PayloadInfo       zstd-compress + hash, streaming
    BatchHeader           the parsed, signature-checked header; .hh (32-byte batch identity), .hh_hex
    seal(dst, compressed, info, *, suite, signer, recipient_id, recipient, dataset_id, batch_seq,
         prev_hh, kind, schema_version, schema_hash, row_count, created_at_ms, expires_at_ms=0,
         chunk_size=1 MiB, extensions=None) -> BatchHeader
    read_header(src, *, trusted: Iterable[VerifyKey], allowed_suites) -> BatchHeader
    check_context(header, *, recipient_id, recipient_keys, dataset_id, now_ms, limits) -> None
    verify_stream(src, header, recipient_keys) -> None      pass 1: every chunk and the digest, no output
    open_payload(src, header, recipient_keys) -> PayloadStream   pass 2: readable decompressed bytes;
                                                             .finish() raises unless fully read+verified
    sign_receipt / verify_receipt                           agent receipts over hh, counts and checksum
    check_sequence(header, last_seq, last_hh, known_hh_for_seq) -> 'apply' | 'duplicate'   replay/gap/fork
    sign_trust_update / verify_trust_update -> TrustUpdate (.apply(trusted))   platform key rotation
    Limits                limits for check_context (sizes, clock-skew allowance); get_provider/register_provider
    Errors: subclasses of agent.errors.IntegrityError, each with its own code (envelope-*).
"""

from __future__ import annotations

from .errors import (
    BadMagic,
    ChainFork,
    ChunkInvalid,
    ChunkTruncated,
    DecompressionBomb,
    DigestMismatch,
    EnvelopeError,
    Expired,
    HeaderMalformed,
    KeyUnwrapFailed,
    LengthMismatch,
    PayloadCorrupt,
    PayloadIncomplete,
    ReceiptInvalid,
    Replayed,
    SequenceGap,
    SignatureInvalid,
    SignerNotValid,
    SignerUnknown,
    SuiteNotAllowed,
    TooLarge,
    TrailingData,
    TrustUpdateInvalid,
    UnknownCriticalTag,
    UnsupportedVersion,
    WrongDataset,
    WrongRecipient,
)
from .header import DEFAULT_CHUNK, MAGIC, BatchHeader, read_header
from .keys import (
    AgentKeys,
    AgentPublicKeys,
    SignerKey,
    VerifyKey,
    generate_agent_keys,
    generate_signer_key,
    key_id_for,
)
from .policy import ZERO_HH, Limits, check_context, check_sequence
from .provider import Suite, get_provider, register_provider
from .receipt import (
    TrustUpdate,
    sign_receipt,
    sign_trust_update,
    verify_receipt,
    verify_trust_update,
)
from .stream import (
    PayloadInfo,
    PayloadStream,
    compress_payload,
    open_payload,
    seal,
    verify_stream,
)

__all__ = [
    "DEFAULT_CHUNK",
    "MAGIC",
    "ZERO_HH",
    "AgentKeys",
    "AgentPublicKeys",
    "BadMagic",
    "BatchHeader",
    "ChainFork",
    "ChunkInvalid",
    "ChunkTruncated",
    "DecompressionBomb",
    "DigestMismatch",
    "EnvelopeError",
    "Expired",
    "HeaderMalformed",
    "KeyUnwrapFailed",
    "LengthMismatch",
    "Limits",
    "PayloadCorrupt",
    "PayloadIncomplete",
    "PayloadInfo",
    "PayloadStream",
    "ReceiptInvalid",
    "Replayed",
    "SequenceGap",
    "SignatureInvalid",
    "SignerKey",
    "SignerNotValid",
    "SignerUnknown",
    "Suite",
    "SuiteNotAllowed",
    "TooLarge",
    "TrailingData",
    "TrustUpdate",
    "TrustUpdateInvalid",
    "UnknownCriticalTag",
    "UnsupportedVersion",
    "VerifyKey",
    "WrongDataset",
    "WrongRecipient",
    "check_context",
    "check_sequence",
    "compress_payload",
    "generate_agent_keys",
    "generate_signer_key",
    "get_provider",
    "key_id_for",
    "open_payload",
    "read_header",
    "register_provider",
    "seal",
    "sign_receipt",
    "sign_trust_update",
    "verify_receipt",
    "verify_stream",
    "verify_trust_update",
]
