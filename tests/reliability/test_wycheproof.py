"""Known-answer vectors: Wycheproof through the project's crypto provider (tests/fixtures/wycheproof/).

Every vector of a group that applies to the provider's interface must pass: valid ones give exactly the
expected output, invalid ones are refused (a failed tag, a rejected signature, an exception for an
impossible HKDF length). Groups that cannot apply (another IV or tag length than the envelope's 96/128 bits)
are counted and reported, never silently dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agent.envelope import Suite, get_provider

DIR = Path(__file__).resolve().parents[1] / "fixtures" / "wycheproof"


def load(name: str) -> dict:
    return json.loads((DIR / f"{name}.json").read_text())


def h(x: str) -> bytes:
    return bytes.fromhex(x)


def report(name: str, passed: int, skipped: int, total: int) -> None:
    print(f"[wycheproof {name}] {passed} passed, {skipped} not applicable, of {total}")
    assert passed + skipped == total
    assert passed > 0


@pytest.mark.parametrize("name,suite", [("aes_gcm_test", Suite.INTL1), ("sm4_gcm_test", Suite.GM1)])
def test_aead_chunk_cipher(name, suite):
    data = load(name)
    p = get_provider(suite)
    passed = skipped = 0
    for g in data["testGroups"]:
        for t in g["tests"]:
            key, iv, aad, msg, ct, tag = (h(t[k]) for k in ("key", "iv", "aad", "msg", "ct", "tag"))
            if g["ivSize"] != 96 or g["tagSize"] != 128 or (suite == Suite.GM1 and len(key) != 16):
                skipped += 1
                continue
            ok_expected = t["result"] in ("valid", "acceptable")
            try:
                cipher = p.chunk_cipher(key)
            except ValueError:
                assert not ok_expected, t["tcId"]
                passed += 1
                continue
            opened = memoryview(bytearray(len(ct) + 16))
            ok = cipher.open_into(iv, aad, memoryview(ct + tag), opened)
            assert ok == ok_expected, (name, t["tcId"], t["comment"])
            if ok:
                assert bytes(opened[:len(msg)]) == msg, t["tcId"]
                out = memoryview(bytearray(len(msg) + 16 + 16))
                cipher.seal_into(iv, aad, memoryview(msg), out)
                assert bytes(out[:len(msg) + 16]) == ct + tag, t["tcId"]
            passed += 1
    report(name, passed, skipped, data["numberOfTests"])


def test_ed25519_verify_and_sign():
    data = load("ed25519_test")
    p = get_provider(Suite.INTL1)
    passed = 0
    for g in data["testGroups"]:
        pk = h(g["publicKey"]["pk"])
        sk = h(g["privateKey"]["sk"]) if "privateKey" in g else None
        for t in g["tests"]:
            msg, sig = h(t["msg"]), h(t["sig"])
            assert p.verify(pk, msg, sig) == (t["result"] == "valid"), (t["tcId"], t["comment"])
            if t["result"] == "valid" and sk is not None:
                assert p.sign(sk, pk, msg) == sig, t["tcId"]
            passed += 1
    report("ed25519_test", passed, 0, data["numberOfTests"])


def test_hkdf_sha256():
    data = load("hkdf_sha256_test")
    p = get_provider(Suite.INTL1)
    passed = 0
    for g in data["testGroups"]:
        for t in g["tests"]:
            args = (h(t["ikm"]), h(t["salt"]), h(t["info"]), t["size"])
            if t["result"] == "invalid":
                with pytest.raises(ValueError):
                    p.hkdf(*args)
            else:
                assert p.hkdf(*args) == h(t["okm"]), t["tcId"]
            passed += 1
    report("hkdf_sha256_test", passed, 0, data["numberOfTests"])


def test_x25519():
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    data = load("x25519_test")
    p = get_provider(Suite.INTL1)
    passed = 0
    for g in data["testGroups"]:
        for t in g["tests"]:
            priv = X25519PrivateKey.from_private_bytes(h(t["private"]))
            pub = h(t["public"])
            try:
                shared = priv.exchange(X25519PublicKey.from_public_bytes(pub))
            except ValueError:  # OpenSSL refuses an all-zero shared secret (low-order point)
                assert t["result"] != "valid" and not any(h(t["shared"])), t["tcId"]
                if not any(pub):  # the one low-order point the provider refuses up front
                    with pytest.raises(ValueError):
                        p.check_public(pub, "kem")
                passed += 1
                continue
            if t["result"] == "invalid":
                assert shared != h(t["shared"]) or not any(shared), t["tcId"]
            else:
                assert shared == h(t["shared"]), (t["tcId"], t["comment"])
            assert p.kem_public(h(t["private"])) == priv.public_key().public_bytes_raw()
            passed += 1
    report("x25519_test", passed, 0, data["numberOfTests"])


def test_hmac_sm3():
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, hmac

    data = load("hmac_sm3_test")
    passed = 0
    for g in data["testGroups"]:
        for t in g["tests"]:
            m = hmac.HMAC(h(t["key"]), hashes.SM3())
            m.update(h(t["msg"]))
            full = m.finalize()
            tag = h(t["tag"])
            ok = full[:len(tag)] == tag and len(tag) * 8 == g["tagSize"]
            assert ok == (t["result"] == "valid"), (t["tcId"], t["comment"])
            if len(tag) == 32:
                v = hmac.HMAC(h(t["key"]), hashes.SM3())
                v.update(h(t["msg"]))
                try:
                    v.verify(tag)
                    assert t["result"] == "valid"
                except InvalidSignature:
                    assert t["result"] != "valid"
            passed += 1
    report("hmac_sm3_test", passed, 0, data["numberOfTests"])
