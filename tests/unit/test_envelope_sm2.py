"""The SM2 wrapper: GB/T 32918 examples, and one regression test per gmssl defect it works around.

Each defect test first shows raw gmssl misbehaving (so the test would notice if a gmssl release fixed or
changed it) and then that our wrapper does not.
"""

from __future__ import annotations

import random

import pytest
from gmssl import sm2 as gm

from agent.envelope import KeyUnwrapFailed, Suite
from agent.envelope.sm2 import CURVE, GmsslSM2, N
from agent.envelope.testing import KeyRing, open_bytes, seal_bytes
from agent.selftest import SM2_ENC, SM2_SIGN, SM2_TEST_CURVE

SM2 = GmsslSM2()
MSG = b"EDU-ENV/v1 header bytes"


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    return SM2.generate_keypair()


def test_gbt_32918_annex_examples() -> None:
    s = GmsslSM2(SM2_TEST_CURVE)
    d, pub = bytes.fromhex(SM2_SIGN["d"]), bytes.fromhex(SM2_SIGN["pub"])
    sig = s.sign(d, SM2_SIGN["msg"], k=int(SM2_SIGN["k"], 16), uid=SM2_SIGN["uid"])
    assert sig.hex().upper() == SM2_SIGN["sig"]
    assert s.verify(pub, SM2_SIGN["msg"], sig, uid=SM2_SIGN["uid"])
    d, pub = bytes.fromhex(SM2_ENC["d"]), bytes.fromhex(SM2_ENC["pub"])
    ct = s.encrypt(pub, SM2_ENC["msg"], k=int(SM2_ENC["k"], 16))
    assert ct.hex().upper() == SM2_ENC["ct"]
    assert s.decrypt(d, ct) == SM2_ENC["msg"]


def test_sign_verify_encrypt_decrypt_production_curve(keypair: tuple[bytes, bytes]) -> None:
    d, pub = keypair
    sig = SM2.sign(d, MSG)
    assert len(sig) == 64 and SM2.verify(pub, MSG, sig)
    assert not SM2.verify(pub, MSG + b"!", sig)
    ct = SM2.encrypt(pub, b"k" * 16)
    assert len(ct) == 113 and SM2.decrypt(d, ct) == b"k" * 16
    assert SM2.decrypt(SM2.generate_keypair()[0], ct) is None  # another key: C3 differs


# --- defect 1: Mersenne-Twister nonces -----------------------------------------------------------

def test_defect_random_nonce_gmssl_repeats_with_the_random_seed(keypair: tuple[bytes, bytes]) -> None:
    d, pub = keypair
    raw = gm.CryptSM2(private_key=d.hex(), public_key=pub[1:].hex())
    random.seed(7)
    a = raw.sign_with_sm3(MSG)
    random.seed(7)
    b = raw.sign_with_sm3(MSG)
    assert a == b  # gmssl's k is predictable from `random`: a key-recovery risk


def test_defect_random_nonce_ours_uses_secrets(keypair: tuple[bytes, bytes]) -> None:
    d, pub = keypair
    random.seed(7)
    a = SM2.sign(d, MSG, public=pub)
    random.seed(7)
    b = SM2.sign(d, MSG, public=pub)
    assert a != b
    random.seed(7)
    c1 = SM2.encrypt(pub, b"x" * 16)
    random.seed(7)
    c2 = SM2.encrypt(pub, b"x" * 16)
    assert c1[:65] != c2[:65]


# --- defect 2: no C3 check on decrypt ------------------------------------------------------------

def test_defect_c3_gmssl_decrypts_a_tampered_ciphertext(keypair: tuple[bytes, bytes]) -> None:
    d, pub = keypair
    ct = bytearray(SM2.encrypt(pub, b"0123456789abcdef"))
    ct[-1] ^= 0x01  # C2 is last in C1C3C2
    raw = gm.CryptSM2(private_key=d.hex(), public_key=pub[1:].hex(), mode=1)
    assert raw.decrypt(bytes(ct[1:])) not in (None, b"0123456789abcdef")  # wrong bytes, no error
    assert SM2.decrypt(d, bytes(ct)) is None
    ct[-1] ^= 0x01
    ct[70] ^= 0x01  # inside C3
    assert SM2.decrypt(d, bytes(ct)) is None


def test_defect_c3_tampered_wrapped_dek_is_key_unwrap_failed() -> None:
    ring = KeyRing.generate(Suite.GM1)
    good = SM2.encrypt(ring.agent.enc_public, b"D" * 16)
    bad = bytearray(good)
    bad[-3] ^= 0x40
    # the platform signs the tampered wrap, so only our C3 check can stop it
    env, _ = seal_bytes(ring, b"payload", _dek=b"D" * 16, _wrapped_dek=bytes(bad))
    with pytest.raises(KeyUnwrapFailed):
        open_bytes(ring, env)
    env, _ = seal_bytes(ring, b"payload", _dek=b"D" * 16, _wrapped_dek=good)
    assert open_bytes(ring, env)[1] == b"payload"


# --- defect 3: lstrip("04") of public keys -------------------------------------------------------

@pytest.mark.parametrize("d", [11, 65], ids=["x-starts-04", "x-starts-40"])
def test_defect_key_prefix(d: int) -> None:
    priv = d.to_bytes(32, "big")
    pub = SM2.public_from_private(priv)
    assert pub[1] in (0x04, 0x40)
    sig = SM2.sign(priv, MSG, public=pub)
    # gmssl strips characters, not a prefix: both the 64-byte and the 04-prefixed form get mangled
    mangled_raw = gm.CryptSM2(private_key="", public_key=pub[1:].hex()).public_key
    mangled_04 = gm.CryptSM2(private_key="", public_key=pub.hex()).public_key
    assert pub[1] != 0x04 or mangled_raw != pub[1:].hex()
    assert mangled_04 != pub[1:].hex()
    assert SM2.verify(pub, MSG, sig)
    ct = SM2.encrypt(pub, b"z" * 16)
    assert SM2.decrypt(priv, ct) == b"z" * 16


# --- defect 4: unchecked r, s and points ---------------------------------------------------------

def test_defect_signature_range(keypair: tuple[bytes, bytes]) -> None:
    d, pub = keypair
    sig = SM2.sign(d, MSG, public=pub)
    r, s = sig[:32], sig[32:]
    for bad in (bytes(32) + s, r + bytes(32), N.to_bytes(32, "big") + s, r + N.to_bytes(32, "big"),
                b"\xff" * 32 + s, sig[:63]):
        assert SM2.verify(pub, MSG, bad) is False


def test_defect_invalid_curve_points(keypair: tuple[bytes, bytes]) -> None:
    d, pub = keypair
    ct = bytearray(SM2.encrypt(pub, b"k" * 16))
    ct[64] ^= 0x01  # y of C1: no longer on the curve (an invalid-curve attack probes the key this way)
    assert not SM2.on_curve(int.from_bytes(ct[1:33], "big"), int.from_bytes(ct[33:65], "big"))
    assert SM2.decrypt(d, bytes(ct)) is None
    with pytest.raises(ValueError):
        SM2.parse_public(b"\x04" + bytes(64))
    with pytest.raises(ValueError):
        SM2.parse_public(pub[1:])  # 64 bytes without the 04
    assert not SM2.verify(b"\x04" + bytes(64), MSG, SM2.sign(d, MSG, public=pub))


def test_private_key_range() -> None:
    with pytest.raises(ValueError):
        SM2.public_from_private(bytes(32))
    with pytest.raises(ValueError):
        SM2.public_from_private((N - 1).to_bytes(32, "big"))
    assert CURVE["n"] == N
