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
    Errors: subclasses of agent.errors.IntegrityError, each with its own code (envelope-*).
"""
