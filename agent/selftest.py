"""Crypto known-answer tests, run by `edx-agent selftest` and at daemon start before any batch is opened.

They catch a broken or substituted library (an OpenSSL build without SM4-GCM, a gmssl release that changed
its arithmetic, a provider registered by mistake) before it can wrongly accept or refuse a batch. Vectors
are the published ones: RFC 8998 (SM4-GCM), GB/T 32905 (SM3), RFC 8032 (Ed25519), RFC 5869 (HKDF),
the GCM specification's AES-256 test case 16, GB/T 32918.2/.4 annex examples (SM2 on the annex's test
curve), plus one seal/open round trip per suite through the registered providers. INTL-1 checks take a
few milliseconds; the SM2 ones about 0.1 s in pure Python (``include_sm2=False`` skips them).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

Result = tuple[str, bool, str]

_X = bytes.fromhex

# RFC 8032 §7.1 TEST 1..3: (secret, public, message, signature)
ED25519 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]

# GB/T 32918.2-2016 / .4-2016 annex A: the 256-bit test curve over Fp (not the production curve)
SM2_TEST_CURVE = {
    "p": int("8542D69E4C044F18E8B92435BF6FF7DE457283915C45517D722EDB8B08F1DFC3", 16),
    "a": int("787968B4FA32C3FD2417842E73BBFEFF2F3C848B6831D7E0EC65228B3937E498", 16),
    "b": int("63E4C6D3B23B0C849CF84241484BFE48F61D59A5B16BA06E6E12D1DA27C5249A", 16),
    "gx": int("421DEBD61B62EAB6746434EBC3CC315E32220B3BADD50BDC4C4E6C147FEDD43D", 16),
    "gy": int("0680512BCBB42C07D47349D2153B70C4E5D7FDFCBFA36EA1A85841B9E46E09A2", 16),
    "n": int("8542D69E4C044F18E8B92435BF6FF7DD297720630485628D5AE74EE7C32E79B7", 16),
}
SM2_SIGN = {
    "d": "128B2FA8BD433C6C068C8D803DFF79792A519A55171B1B650C23661D15897263",
    "pub": "040AE4C7798AA0F119471BEE11825BE46202BB79E2A5844495E97C04FF4DF2548A"
           "7C0240F88F1CD4E16352A73C17B7F16F07353E53A176D684A9FE0C6BB798E857",
    "uid": b"ALICE123@YAHOO.COM", "msg": b"message digest",
    "za": "F4A38489E32B45B6F876E3AC2168CA392362DC8F23459C1D1146FC3DBFB7BC9A",
    "k": "6CB28D99385C175C94F94E934817663FC176D925DD72B727260DBAAE1FB2F96F",
    "sig": "40F1EC59F793D9F49E09DCEF49130D4194F79FB1EED2CAA55BACDB49C4E755D1"
           "6FC6DAC32C5D5CF10C77DFB20F7C2EB667A457872FB09EC56327A67EC7DEEBE7",
}
SM2_ENC = {
    "d": "1649AB77A00637BD5E2EFE283FBF353534AA7F7CB89463F208DDBC2920BB0DA0",
    "pub": "04435B39CCA8F3B508C1488AFC67BE491A0F7BA07E581A0E4849A5CF70628A7E0A"
           "75DDBA78F15FEECB4C7895E2C1CDF5FE01DEBB2CDBADF45399CCF77BBA076A42",
    "k": "4C62EEFD6ECFC2B95B92FD6C3D9575148AFA17425546D49018E5388D49DD7B4F",
    "msg": b"encryption standard",
    # C1 ‖ C3 ‖ C2 (the annex prints C1 ‖ C2 ‖ C3; the parts are the same)
    "ct": "04245C26FB68B1DDDDB12C4B6BF9F2B6D5FE60A383B0D18D1C4144ABF17F6252E7"
          "76CB9264C2A7E88E52B19903FDC47378F605E36811F5C07423A24B84400F01B8"
          "9C3D7360C30156FAB7C80A0276712DA9D8094A634B766D3A285E07480653426D"
          "650053A89B41C418B0C3AAD00D886C00286467",
}


def _sm3(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SM3())
    h.update(data)
    return h.finalize()


def _check_sm3() -> str:
    assert _sm3(b"abc") == _X("66c7f0f462eeedd9d1f2d46bdc10e4e24167c4875cf2f7a2297da02b8f4ba8e0")
    assert _sm3(b"abcd" * 16) == _X("debe9ff92275b8a138604889c18e5a4d6fdb70e5387e5765293dcba39c0c5732")
    return "GB/T 32905 A.1, A.2"


def _check_sm4_gcm() -> str:
    key = _X("0123456789ABCDEFFEDCBA9876543210")
    iv = _X("00001234567800000000ABCD")
    aad = _X("FEEDFACEDEADBEEFFEEDFACEDEADBEEFABADDAD2")
    pt = _X("AAAAAAAAAAAAAAAABBBBBBBBBBBBBBBBCCCCCCCCCCCCCCCCDDDDDDDDDDDDDDDD"
            "EEEEEEEEEEEEEEEEFFFFFFFFFFFFFFFFEEEEEEEEEEEEEEEEAAAAAAAAAAAAAAAA")
    ct = _X("17F399F08C67D5EE19D0DC9969C4BB7D5FD46FD3756489069157B282BB200735"
            "D82710CA5C22F0CCFA7CBF93D496AC15A56834CBCF98C397B4024A2691233B8D")
    tag = _X("83DE3541E4C2B58177E065A9BF7B62EC")
    enc = Cipher(algorithms.SM4(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    assert enc.update(pt) + enc.finalize() == ct and enc.tag == tag
    dec = Cipher(algorithms.SM4(key), modes.GCM(iv, tag)).decryptor()
    dec.authenticate_additional_data(aad)
    assert dec.update(ct) + dec.finalize() == pt
    return "RFC 8998 A.1 (OpenSSL SM4-GCM)"


def _check_aes_gcm() -> str:
    key = _X("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308")
    iv = _X("cafebabefacedbaddecaf888")
    aad = _X("feedfacedeadbeeffeedfacedeadbeefabaddad2")
    pt = _X("d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
            "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39")
    ct = _X("522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
            "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662")
    tag = _X("76fc6ece0f4e1768cddf8853bb2d551b")
    assert AESGCM(key).encrypt(iv, pt, aad) == ct + tag
    assert AESGCM(key).decrypt(iv, ct + tag, aad) == pt
    return "GCM spec test case 16 (AES-256)"


def _check_hkdf() -> str:
    okm = HKDF(hashes.SHA256(), 42, _X("000102030405060708090a0b0c"), _X("f0f1f2f3f4f5f6f7f8f9")).derive(b"\x0b" * 22)
    assert okm == _X("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865")
    return "RFC 5869 A.1"


def _check_ed25519() -> str:
    for sk, pk, msg, sig in ED25519:
        k = Ed25519PrivateKey.from_private_bytes(_X(sk))
        assert k.public_key().public_bytes_raw() == _X(pk)
        assert k.sign(_X(msg)) == _X(sig)
        k.public_key().verify(_X(sig), _X(msg))
    return "RFC 8032 7.1 tests 1-3"


def _check_sm2() -> str:
    from agent.envelope.sm2 import GmsslSM2

    sm2 = GmsslSM2(SM2_TEST_CURVE)
    d, pub = _X(SM2_SIGN["d"]), _X(SM2_SIGN["pub"])
    uid, msg = SM2_SIGN["uid"], SM2_SIGN["msg"]
    assert sm2.public_from_private(d) == pub
    assert sm2.z_a(pub, uid) == _X(SM2_SIGN["za"])
    sig = sm2.sign(d, msg, k=int(SM2_SIGN["k"], 16), uid=uid, public=pub)
    assert sig == _X(SM2_SIGN["sig"])
    assert sm2.verify(pub, msg, sig, uid=uid)
    assert not sm2.verify(pub, msg + b".", sig, uid=uid)
    d, pub = _X(SM2_ENC["d"]), _X(SM2_ENC["pub"])
    assert sm2.public_from_private(d) == pub
    ct = sm2.encrypt(pub, SM2_ENC["msg"], k=int(SM2_ENC["k"], 16))
    assert ct == _X(SM2_ENC["ct"])
    assert sm2.decrypt(d, ct) == SM2_ENC["msg"]
    tampered = bytearray(ct)
    tampered[-1] ^= 1
    assert sm2.decrypt(d, bytes(tampered)) is None  # our C3 check, which gmssl lacks
    return "GB/T 32918.2 A.2 sign, GB/T 32918.4 A.2 encrypt (test curve)"


def _round_trip(suite_value: int) -> Callable[[], str]:
    def run() -> str:
        from agent.envelope import Suite
        from agent.envelope.testing import KeyRing, open_bytes, seal_bytes

        suite = Suite(suite_value)
        ring = KeyRing.generate(suite)
        payload = b"selftest\n" * 1000
        env, _ = seal_bytes(ring, payload, chunk_size=1024)
        assert open_bytes(ring, env)[1] == payload
        bad = bytearray(env)
        bad[-20] ^= 1
        try:
            open_bytes(ring, bytes(bad))
        except Exception as e:  # noqa: BLE001 - only the chunk AEAD's own refusal counts as a pass
            from agent.envelope import ChunkInvalid
            # the digest would also refuse it; demanding ChunkInvalid proves the AEAD checks its tag
            assert isinstance(e, ChunkInvalid), f"tampered chunk raised {type(e).__name__}, not ChunkInvalid"
        else:
            raise AssertionError("a tampered envelope opened")
        return f"{suite.label} seal/open and tamper refusal"
    return run


CHECKS: list[tuple[str, Callable[[], str], bool]] = [
    ("sm3", _check_sm3, False),
    ("sm4-gcm", _check_sm4_gcm, False),
    ("aes-256-gcm", _check_aes_gcm, False),
    ("hkdf-sha256", _check_hkdf, False),
    ("ed25519", _check_ed25519, False),
    ("envelope-intl1", _round_trip(1), False),
    ("sm2", _check_sm2, True),
    ("envelope-gm1", _round_trip(2), True),
]


def run_selftest(include_sm2: bool = True) -> list[Result]:
    """Run every known-answer test; ``(name, ok, detail)`` per check, detail saying what or why it failed."""
    out: list[Result] = []
    for name, fn, is_sm2 in CHECKS:
        if is_sm2 and not include_sm2:
            continue
        t0 = time.perf_counter()
        try:
            what = fn()
            ok, detail = True, f"{what} ({(time.perf_counter() - t0) * 1000:.1f} ms)"
        except AssertionError as e:
            ok, detail = False, f"wrong answer: {e or 'value differs from the published vector'}"
        except Exception as e:  # noqa: BLE001 - a missing algorithm must be reported, not crash the report
            ok, detail = False, f"{type(e).__name__}: {e}"
        out.append((name, ok, detail))
    return out


def main() -> int:  # pragma: no cover - convenience for `python -m agent.selftest`
    results = run_selftest()
    for name, ok, detail in results:
        print(f"{'ok  ' if ok else 'FAIL'} {name:16} {detail}")
    return 0 if all(ok for _, ok, _ in results) else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
