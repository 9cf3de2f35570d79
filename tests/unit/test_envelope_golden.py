"""Golden vectors: the stored bytes are rebuilt exactly, and every stored file opens (or fails) as recorded.

The vectors are the cross-implementation contract (the platform's Java sealer must produce envelopes that
open here, and refuse the negatives with the same codes). Regenerate only after an intended format change:
``python tests/fixtures/envelopes/make_vectors.py``, and say why in the commit.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from agent.envelope import (
    AgentKeys,
    EnvelopeError,
    SignerKey,
    Suite,
    check_context,
    check_sequence,
    open_payload,
    read_header,
    verify_stream,
)

DIR = Path(__file__).resolve().parents[1] / "fixtures" / "envelopes"
MANIFEST = json.loads((DIR / "vectors.json").read_text(encoding="utf-8"))


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("edx_make_vectors", DIR / "make_vectors.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_rebuilt_vectors_are_byte_identical() -> None:
    keys, vectors = _generator().build()
    assert keys == MANIFEST["keys"]
    stored = {v["name"]: v for v in MANIFEST["vectors"]}
    assert [e["name"] for _, _, e in vectors] == [v["name"] for v in MANIFEST["vectors"]]
    for name, data, exp in vectors:
        assert {"file": name, **exp} == stored[exp["name"]]
        if data:
            assert (DIR / name).read_bytes() == data, f"{name} changed: the format or an encoder moved"


def test_deterministic_hpke_sender_interoperates() -> None:
    gen = _generator()
    sk = X25519PrivateKey.from_private_bytes(bytes(range(32)))
    ct = gen.hpke_seal_fixed(sk.public_key().public_bytes_raw(), bytes(range(1, 33)), b"info", b"k" * 32)
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
    assert len(ct) == 80
    assert suite.decrypt(ct, sk, info=b"info") == b"k" * 32


def _run(v: dict[str, Any]) -> tuple[Any, bytes]:
    kd = MANIFEST["keys"][v["suite"]]
    agent = AgentKeys.from_dict(kd["agent"])
    trusted = [SignerKey.from_dict(kd[name]).public() for name in v.get("trusted", ["signer"])]
    src = io.BytesIO((DIR / v["file"]).read_bytes())
    h = read_header(src, trusted=trusted, allowed_suites=v.get("allowed_suites", [v["suite"]]))
    check_context(h, recipient_id=v["recipient_id"], recipient_keys=[agent], dataset_id=v["dataset_id"],
                  now_ms=v["now_ms"])
    if "sequence" in v:
        s = v["sequence"]
        known = bytes.fromhex(s["known_hh"]) if "known_hh" in s else None
        result = check_sequence(h, s["last_seq"], bytes.fromhex(s["last_hh"]), known)
        assert result == s["result"]
    verify_stream(src, h, [agent])
    src.seek(0)
    ps = open_payload(src, h, [agent])
    data = io.BufferedReader(ps).read()
    ps.finish()
    return h, data


@pytest.mark.parametrize("v", MANIFEST["vectors"], ids=[v["name"] for v in MANIFEST["vectors"]])
def test_stored_vector(v: dict[str, Any]) -> None:
    if v["expect"] == "ok":
        h, data = _run(v)
        assert hashlib.sha256(data).hexdigest() == v["payload_sha256"]
        assert len(data) == v["uncompressed_len"] and h.hh_hex == v["hh"]
        if "row_count" in v:
            assert h.row_count == v["row_count"] == data.count(b"\n") - 1  # manifest line + one per row
    else:
        with pytest.raises(EnvelopeError) as ei:
            _run(v)
        assert ei.value.code == v["expect"], str(ei.value)


def test_vectors_cover_both_suites_and_every_listed_code() -> None:
    suites = {v["suite"] for v in MANIFEST["vectors"]}
    assert suites == {s.label for s in Suite}
    codes = {v["expect"] for v in MANIFEST["vectors"]}
    for code in ("envelope-bad-magic", "envelope-unsupported-version", "envelope-unknown-critical-tag",
                 "envelope-header-malformed", "envelope-suite-not-allowed", "envelope-signer-unknown",
                 "envelope-signature-invalid", "envelope-wrong-recipient", "envelope-wrong-dataset",
                 "envelope-expired", "envelope-key-unwrap-failed", "envelope-chunk-invalid",
                 "envelope-chunk-truncated", "envelope-trailing-data", "envelope-digest-mismatch",
                 "envelope-length-mismatch", "envelope-decompression-bomb", "envelope-replayed", "envelope-gap",
                 "envelope-fork"):
        assert code in codes, code
