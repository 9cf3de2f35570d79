"""Envelope v1 round trips, key serialisation and the first line of tamper checks, for both suites."""

from __future__ import annotations

import io
import json
import os

import pytest

from agent.envelope import (
    AgentKeys,
    AgentPublicKeys,
    BadMagic,
    ChainFork,
    ChunkInvalid,
    ChunkTruncated,
    Expired,
    HeaderMalformed,
    Limits,
    PayloadIncomplete,
    Replayed,
    SequenceGap,
    SignatureInvalid,
    SignerKey,
    SignerNotValid,
    SignerUnknown,
    Suite,
    SuiteNotAllowed,
    TooLarge,
    TrailingData,
    UnsupportedVersion,
    VerifyKey,
    WrongDataset,
    WrongRecipient,
    check_context,
    check_sequence,
    generate_agent_keys,
    open_payload,
    read_header,
    verify_stream,
)
from agent.envelope.testing import KeyRing, open_bytes, seal_bytes
from agent.errors import IntegrityError, KeyFileError

SUITES = [Suite.INTL1, Suite.GM1]
PAYLOAD = ("{\"format\":\"edx-csv/1\"}\n" + "".join(f'I,"S{i:05d}","张三{i}",NULL\n' for i in range(3000))).encode()


@pytest.fixture(scope="module", params=SUITES, ids=lambda s: s.label)
def ring(request: pytest.FixtureRequest) -> KeyRing:
    return KeyRing.generate(request.param)


def test_round_trip_many_chunks(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=1024, row_count=3000)
    assert h.n_chunks > 3 and len(env) == h.envelope_len
    h2, data = open_bytes(ring, env)
    assert data == PAYLOAD
    assert h2 == h and h2.hh == h.hh and len(h.hh) == 32
    assert h2.kind == "changes" and h2.row_count == 3000


def test_round_trip_single_pass_and_readline(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=4096, kind="snapshot")
    src = io.BytesIO(env)
    h2 = read_header(src, trusted=[ring.signer.public()], allowed_suites=[ring.suite])
    ps = open_payload(src, h2, ring.agent)  # directly after the header, one key instead of a list
    reader = io.BufferedReader(ps, buffer_size=4096)
    assert reader.readline() == b'{"format":"edx-csv/1"}\n'
    rest = reader.read()
    ps.finish()
    assert rest == PAYLOAD[len(b'{"format":"edx-csv/1"}\n'):]
    assert h2.kind == "snapshot"


def test_finish_refuses_a_partly_read_stream(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=1024)
    ps = open_payload(io.BytesIO(env), h, [ring.agent])
    ps.read(100)
    with pytest.raises(PayloadIncomplete):
        ps.finish()


def test_finish_accepts_a_reader_that_stopped_at_the_last_byte(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=1024)
    ps = open_payload(io.BytesIO(env), h, [ring.agent])
    buf = bytearray(len(PAYLOAD))
    view, got = memoryview(buf), 0
    while got < len(buf):
        got += ps.readinto(view[got:])
    ps.finish()
    assert bytes(buf) == PAYLOAD


def test_empty_payload(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, b"", chunk_size=64)
    assert h.uncompressed_len == 0 and h.payload_len > 0
    assert open_bytes(ring, env)[1] == b""


def test_keys_serialise_round_trip(ring: KeyRing) -> None:
    doc = json.loads(json.dumps(ring.agent.to_dict()))
    k = AgentKeys.from_dict(doc)
    assert k.key_id == ring.agent.key_id and k.enc_private == ring.agent.enc_private
    pub = AgentPublicKeys.from_dict(json.loads(json.dumps(ring.agent.public().to_dict())))
    assert pub == ring.agent.public() and pub.key_id == ring.agent.key_id and len(pub.key_id) == 16
    s = SignerKey.from_dict(json.loads(json.dumps(ring.signer.to_dict())))
    assert s.key_id == ring.signer.key_id
    v = VerifyKey.from_dict(json.loads(json.dumps(ring.signer.public(5, 10).to_dict())))
    assert v == ring.signer.public(5, 10)


def test_key_documents_refuse_edits(ring: KeyRing) -> None:
    doc = ring.agent.to_dict()
    other = generate_agent_keys(ring.suite).to_dict()
    with pytest.raises(KeyFileError):
        AgentKeys.from_dict({**doc, "enc_public": other["enc_public"]})
    with pytest.raises(KeyFileError):
        AgentKeys.from_dict({**doc, "key_id": other["key_id"]})
    with pytest.raises(KeyFileError):
        AgentPublicKeys.from_dict({**ring.agent.public().to_dict(), "sign_public": "00" * 65})
    with pytest.raises(KeyFileError):
        AgentKeys.from_dict({**doc, "kind": "edx-signer-key"})
    with pytest.raises(KeyFileError):
        SignerKey.from_dict({"kind": "edx-signer-key", "suite": "XX-9", "private": "00"})


# --- the first tamper checks ---------------------------------------------------------------------

def test_flipped_chunk_byte_is_chunk_invalid(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=1024)
    bad = bytearray(env)
    bad[h.chunks_offset + 1500] ^= 0x01
    with pytest.raises(ChunkInvalid):
        open_bytes(ring, bytes(bad))


def test_flipped_header_byte_is_refused(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=1024)
    bad = bytearray(env)
    bad[20] ^= 0x01  # inside the dataset id: parses, but the signature no longer verifies
    with pytest.raises(SignatureInvalid):
        open_bytes(ring, bytes(bad))
    bad = bytearray(env)
    bad[h.chunks_offset - 1] ^= 0x80  # the signature itself
    with pytest.raises(SignatureInvalid):
        open_bytes(ring, bytes(bad))


def test_truncation_and_trailing_data(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=1024)
    with pytest.raises(ChunkTruncated):
        open_bytes(ring, env[:h.chunks_offset + 1040])  # exactly one chunk boundary in
    with pytest.raises(ChunkTruncated):
        open_bytes(ring, env[:-1])
    with pytest.raises(TrailingData):
        open_bytes(ring, env + b"\x00")
    with pytest.raises(HeaderMalformed):
        open_bytes(ring, env[:h.chunks_offset - 3])


def test_bad_magic_and_version(ring: KeyRing) -> None:
    env, _ = seal_bytes(ring, b"x")
    with pytest.raises(BadMagic):
        open_bytes(ring, env.replace(b"\r\n", b"\n", 1))  # a text-mode transfer
    with pytest.raises(UnsupportedVersion) as ei:
        open_bytes(ring, env[:8] + b"\x02" + env[9:])
    assert "Upgrade" in ei.value.remedy_text and ei.value.code == "envelope-unsupported-version"


def test_wrong_recipient_dataset_and_expiry(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, b"x", expires_at_ms=2_000)
    other = generate_agent_keys(ring.suite)
    ctx = dict(recipient_id=ring.agent_id, recipient_keys=[ring.agent], dataset_id="ds.students", now_ms=1_000)
    check_context(h, **ctx)
    with pytest.raises(WrongRecipient):
        check_context(h, **{**ctx, "recipient_id": "agent-2"})
    with pytest.raises(WrongRecipient):
        check_context(h, **{**ctx, "recipient_keys": [other]})
    with pytest.raises(WrongRecipient):
        verify_stream(io.BytesIO(env), h, [other])
    with pytest.raises(WrongDataset):
        check_context(h, **{**ctx, "dataset_id": "ds.teachers"})
    check_context(h, **{**ctx, "now_ms": 2_000 + 299_000})  # within the clock-skew allowance
    with pytest.raises(Expired):
        check_context(h, **{**ctx, "now_ms": 2_000 + 301_000})
    with pytest.raises(TooLarge):
        check_context(h, **ctx, limits=Limits(max_uncompressed_len=0))


def test_previous_key_still_opens(ring: KeyRing) -> None:
    old = ring.agent
    env, h = seal_bytes(ring, PAYLOAD, recipient=old.public())
    new = KeyRing(ring.suite, ring.signer, generate_agent_keys(ring.suite), ring.agent_id, previous=[old])
    assert open_bytes(new, env)[1] == PAYLOAD


def test_signer_trust(ring: KeyRing) -> None:
    env, h = seal_bytes(ring, b"x", created_at_ms=5_000)
    stranger = KeyRing.generate(ring.suite)
    with pytest.raises(SignerUnknown):
        read_header(io.BytesIO(env), trusted=[stranger.signer.public()], allowed_suites=[ring.suite])
    with pytest.raises(SignerNotValid):
        read_header(io.BytesIO(env), trusted=[ring.signer.public(0, 4_999)], allowed_suites=[ring.suite])
    with pytest.raises(SignerUnknown):  # a signer-expired error is still a signer-unknown for callers
        read_header(io.BytesIO(env), trusted=[ring.signer.public(5_001)], allowed_suites=[ring.suite])
    other = Suite.GM1 if ring.suite == Suite.INTL1 else Suite.INTL1
    with pytest.raises(SuiteNotAllowed):
        read_header(io.BytesIO(env), trusted=[ring.signer.public()], allowed_suites=[other])


def test_sequence_rules(ring: KeyRing) -> None:
    _, h1 = seal_bytes(ring, b"a", batch_seq=1)
    _, h2 = seal_bytes(ring, b"b", batch_seq=2, prev_hh=h1.hh)
    assert check_sequence(h1, 0, None) == "apply"
    assert check_sequence(h2, 1, h1.hh) == "apply"
    assert check_sequence(h1, 2, h2.hh, h1.hh) == "duplicate"
    assert check_sequence(h1, 2, h2.hh, lambda seq: {1: h1.hh}.get(seq)) == "duplicate"
    with pytest.raises(Replayed):
        check_sequence(h1, 2, h2.hh, os.urandom(32))
    with pytest.raises(Replayed):
        check_sequence(h1, 2, h2.hh, None)
    with pytest.raises(SequenceGap):
        check_sequence(h2, 0, None)
    with pytest.raises(ChainFork):
        check_sequence(h2, 1, os.urandom(32))
    _, bad_first = seal_bytes(ring, b"c", batch_seq=1, prev_hh=b"\x01" * 32)
    with pytest.raises(ChainFork):
        check_sequence(bad_first, 0, None)
    _, snap = seal_bytes(ring, b"s", batch_seq=7, prev_hh=os.urandom(32), kind="snapshot")
    assert check_sequence(snap, 2, h2.hh) == "apply"  # a snapshot rebases the chain
    assert check_sequence(snap, 7, h2.hh, None) == "apply"  # a resync: the state as of the last seq again
    assert check_sequence(snap, 7, h2.hh, snap.hh) == "duplicate"
    with pytest.raises(Replayed):  # an older snapshot would move the table back in time
        check_sequence(snap, 8, h2.hh, None)


def test_every_error_is_an_integrity_error_with_a_code() -> None:
    from agent.envelope import errors as E
    codes = [cls.code for cls in E.ALL_ERRORS]
    assert len(codes) == len(set(codes))
    for cls in E.ALL_ERRORS:
        assert issubclass(cls, IntegrityError) and cls.code.startswith(("envelope-", "receipt-", "trust-"))
