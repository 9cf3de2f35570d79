"""Tamper suite: every flipped byte, every truncation, every chunk reordering fails with a typed error.

"Never partial output": with the two-pass reading the agent does (verify_stream, then open_payload), a
damaged envelope is refused before a single payload byte exists; with a single pass, the bytes released
before the failure are always a prefix of the genuine payload (only authenticated chunks are released).

INTL-1 flips every byte of a ~0.8 KiB, four-chunk envelope and cuts it at every length. GM-1 pays ~25 ms
of pure-Python SM2 for each attempt that gets past the header parse (30 s for every byte and cut), so by
default it flips a sample: every prefix and TLV framing byte, the first and last byte of every field value,
the signature, and the first/last byte of every chunk and tag; and cuts at every chunk boundary.
EDX_TAMPER_FULL_GM=1 runs every byte for GM-1 too (it passes; run it before a release).
"""

from __future__ import annotations

import io
import itertools
import os
import random

import pytest

from agent.envelope import (
    ChunkInvalid,
    ChunkTruncated,
    DecompressionBomb,
    EnvelopeError,
    HeaderMalformed,
    SignerNotValid,
    Suite,
    check_context,
    open_payload,
    read_header,
    verify_stream,
)
from agent.envelope.header import PREFIX_LEN
from agent.envelope.testing import KeyRing, craft, seal_bytes, zstd_frame

# every GM-1 byte and cut costs ~30 s here (pure-Python SM2 per attempt); EDX_TAMPER_FULL_GM=1 runs it
FULL_GM = os.environ.get("EDX_TAMPER_FULL_GM", "") == "1"
PAYLOAD = random.Random(1).randbytes(200)  # incompressible: four 64-byte chunks after zstd
CS = 64


@pytest.fixture(scope="module", params=[Suite.INTL1, Suite.GM1], ids=lambda s: s.label)
def case(request: pytest.FixtureRequest) -> tuple[KeyRing, bytes, object]:
    ring = KeyRing.generate(request.param)
    env, h = seal_bytes(ring, PAYLOAD, chunk_size=CS, dataset_id="d")
    assert h.n_chunks == 4
    return ring, env, h


def _two_pass(ring: KeyRing, env: bytes) -> bytes:
    src = io.BytesIO(env)
    h = read_header(src, trusted=[ring.signer.public()], allowed_suites=[ring.suite])
    check_context(h, recipient_id=ring.agent_id, recipient_keys=[ring.agent], dataset_id="d",
                  now_ms=h.created_at_ms)
    verify_stream(src, h, [ring.agent])
    # pass 1 passed: only now may output exist
    src.seek(0)
    ps = open_payload(src, h, [ring.agent])
    out = io.BufferedReader(ps).read()
    ps.finish()
    return out


def _single_pass_output(ring: KeyRing, env: bytes) -> tuple[bytes, EnvelopeError | None]:
    src = io.BytesIO(env)
    got = bytearray()
    try:
        h = read_header(src, trusted=[ring.signer.public()], allowed_suites=[ring.suite])
        ps = open_payload(src, h, [ring.agent])
        buf = bytearray(16)
        while n := ps.readinto(buf):
            got += buf[:n]
        ps.finish()
    except EnvelopeError as e:
        return bytes(got), e
    return bytes(got), None


def _positions(env: bytes, h: object, suite: Suite) -> list[int]:
    if suite == Suite.INTL1 or FULL_GM:
        return list(range(len(env)))
    pos = set(range(PREFIX_LEN))
    body_end = len(h.tbs)  # type: ignore[attr-defined]
    i = PREFIX_LEN
    while i < body_end:  # walk the TLVs: framing bytes plus first/last value byte
        ln = int.from_bytes(env[i + 1:i + 3], "big")
        pos.update({i, i + 1, i + 2, i + 3, i + 2 + ln})
        i += 3 + ln
    pos.update({body_end, body_end + 1, body_end + 2, body_end + 40, body_end + 65})
    off = h.chunks_offset  # type: ignore[attr-defined]
    while off < len(env):
        end = min(off + CS + 16, len(env))
        pos.update({off, end - 17, end - 16, end - 1})
        off = end
    return sorted(p for p in pos if 0 <= p < len(env))


def test_flip_every_byte(case: tuple[KeyRing, bytes, object]) -> None:
    ring, env, h = case
    codes: dict[str, int] = {}
    positions = _positions(env, h, ring.suite)
    for i in positions:
        bad = bytearray(env)
        bad[i] ^= 0x01 if i % 2 else 0x80
        with pytest.raises(EnvelopeError) as ei:
            _two_pass(ring, bytes(bad))
        codes[ei.value.code] = codes.get(ei.value.code, 0) + 1
        if i >= h.chunks_offset:  # type: ignore[attr-defined]
            out, err = _single_pass_output(ring, bytes(bad))
            assert err is not None and PAYLOAD.startswith(out)
    assert codes.get("envelope-chunk-invalid", 0) >= 4 and codes.get("envelope-signature-invalid", 0) > 0
    allowed = {"envelope-bad-magic", "envelope-unsupported-version", "envelope-suite-not-allowed",
               "envelope-header-malformed", "envelope-unknown-critical-tag", "envelope-signer-unknown",
               "envelope-signature-invalid", "envelope-chunk-invalid", "envelope-chunk-truncated",
               "envelope-trailing-data"}
    assert set(codes) <= allowed, codes
    assert len(positions) >= (len(env) if ring.suite == Suite.INTL1 else 100)


def test_truncate_everywhere(case: tuple[KeyRing, bytes, object]) -> None:
    ring, env, h = case
    off = h.chunks_offset  # type: ignore[attr-defined]
    boundaries = list(range(off, len(env), CS + 16))
    cuts = range(len(env)) if ring.suite == Suite.INTL1 or FULL_GM else [0, 5, 14, off - 1] + boundaries + [len(env) - 1]
    for cut in cuts:
        with pytest.raises(EnvelopeError) as ei:
            _two_pass(ring, env[:cut])
        expected = ChunkTruncated if cut >= off else (HeaderMalformed, ChunkTruncated)
        assert isinstance(ei.value, expected), (cut, ei.value.code)
        if cut >= off:
            out, err = _single_pass_output(ring, env[:cut])
            assert isinstance(err, ChunkTruncated) and PAYLOAD.startswith(out)


def test_reordered_and_duplicated_chunks(case: tuple[KeyRing, bytes, object]) -> None:
    ring, env, h = case
    off = h.chunks_offset  # type: ignore[attr-defined]
    chunks = [env[i:i + CS + 16] for i in range(off, len(env), CS + 16)]
    orders = list(itertools.permutations(range(4)))[1:]
    if ring.suite == Suite.GM1:
        orders = [(1, 0, 2, 3), (0, 2, 1, 3), (3, 1, 2, 0), (0, 1, 3, 2)]
    for order in orders:
        with pytest.raises(ChunkInvalid):
            _two_pass(ring, env[:off] + b"".join(chunks[j] for j in order))
    for dup in ([0, 0, 2, 3], [0, 1, 1, 3], [0, 1, 2, 2]):
        with pytest.raises((ChunkInvalid, ChunkTruncated)):
            _two_pass(ring, env[:off] + b"".join(chunks[j] for j in dup))
    with pytest.raises(EnvelopeError) as ei:  # a whole extra chunk after the final one
        _two_pass(ring, env + chunks[1])
    assert ei.value.code == "envelope-trailing-data"


def test_bomb_is_refused_within_the_declared_length() -> None:
    ring = KeyRing.generate(Suite.INTL1)
    frame = zstd_frame(bytes(64 << 20), content_size=False)  # ~2 KiB that inflate to 64 MiB
    env = craft(ring, frame, uncompressed_len=1000, chunk_size=1024)
    src = io.BytesIO(env)
    h = read_header(src, trusted=[ring.signer.public()], allowed_suites=[ring.suite])
    verify_stream(src, h, [ring.agent])  # authentic bytes: pass 1 cannot know what they inflate to
    src.seek(0)
    ps = open_payload(src, h, [ring.agent])
    buf = bytearray(1 << 20)
    with pytest.raises(DecompressionBomb):
        while ps.readinto(buf):
            pass
    assert ps.bytes_out <= 1001
    with pytest.raises(DecompressionBomb):
        ps.finish()


def test_window_bomb_refused_before_decoding() -> None:
    ring = KeyRing.generate(Suite.INTL1)
    env = craft(ring, zstd_frame(b"x" * 5000, window_log=27, content_size=False), uncompressed_len=5000)
    src = io.BytesIO(env)
    h = read_header(src, trusted=[ring.signer.public()], allowed_suites=[ring.suite])
    with pytest.raises(DecompressionBomb):
        verify_stream(src, h, [ring.agent])


def test_garbage_that_is_authentic_but_not_zstd() -> None:
    ring = KeyRing.generate(Suite.INTL1)
    env = craft(ring, b"not a zstd frame " * 20, uncompressed_len=10, overrides={"dataset_id": "d"})
    with pytest.raises(EnvelopeError) as ei:
        _two_pass(ring, env)
    assert ei.value.code == "envelope-payload-corrupt"
    # a frame header followed by nonsense blocks: decodes to nothing, so the declared length is missed
    env = craft(ring, b"\x28\xb5\x2f\xfd" + bytes(200), uncompressed_len=10, overrides={"dataset_id": "d"})
    with pytest.raises(EnvelopeError) as ei:
        _two_pass(ring, env)
    assert ei.value.code in ("envelope-payload-corrupt", "envelope-length-mismatch")


def test_signer_limited_to_other_datasets() -> None:
    ring = KeyRing.generate(Suite.INTL1)
    env, _ = seal_bytes(ring, b"x", dataset_id="d")
    vk = ring.signer.public()
    limited = type(vk)(vk.suite, vk.public_bytes, datasets=("other",))
    with pytest.raises(SignerNotValid):
        read_header(io.BytesIO(env), trusted=[limited], allowed_suites=[ring.suite])
