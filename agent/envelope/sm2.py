"""SM2 (GB/T 32918) for the GM-1 suite: gmssl's curve arithmetic, wrapped so that its known defects cannot bite.

``cryptography`` has no SM2, so the point multiplications come from the pure-Python ``gmssl`` (about 10 ms
each; GM-1 needs one verify and one decrypt per batch). Everything around them is ours, because gmssl 3.2.2:

1. draws the signing nonce and the encryption ephemeral key from ``random`` (Mersenne Twister): we always
   pass k from ``secrets`` and never call its ``encrypt``;
2. does not check C3 on decrypt (it computes the hash and throws it away): we do the whole decryption
   ourselves and compare C3 in constant time;
3. strips a "04" *character set* from public keys (``lstrip("04")``), which mangles any key whose hex starts
   with 0/4 digits: we set the parsed key on the object ourselves, never through its constructor;
4. does not check r, s ∈ [1, n−1], nor that points are on the curve: we check both (an off-curve C1 is the
   classic invalid-curve attack on decryption).

It also hashes with pure-Python SM3 (~0.1 MB/s); we compute Z_A, e, the KDF and C3 with OpenSSL's SM3.
Encodings are fixed: public key ``04‖x‖y`` (65 B), signature ``r‖s`` (64 B), ciphertext ``C1(04‖x‖y) ‖ C3 ‖ C2``
(GM/T 0009 order), signer ID ``1234567812345678`` (GM/T 0009 default).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from gmssl import sm2 as _gm

from .provider import sm3

P = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFF", 16)
A = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC", 16)
B = int("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93", 16)
N = int("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54123", 16)
GX = int("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7", 16)
GY = int("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0", 16)
DEFAULT_ID = b"1234567812345678"

CURVE = {"p": P, "a": A, "b": B, "n": N, "gx": GX, "gy": GY}


def _table(curve: dict[str, int]) -> dict[str, str]:
    return {"n": f"{curve['n']:064X}", "p": f"{curve['p']:064X}",
            "g": f"{curve['gx']:064x}{curve['gy']:064x}", "a": f"{curve['a']:064X}",
            "b": f"{curve['b']:064X}"}


def _i2b(x: int) -> bytes:
    return x.to_bytes(32, "big")


class GmsslSM2:
    """SM2 sign/verify/encrypt/decrypt over a curve (the GB/T 32918.5 curve unless told otherwise).

    Private keys are 32-byte big-endian scalars (bytes); public keys are 65-byte ``04‖x‖y``.
    The ``curve`` parameter exists so the GB/T 32918 annex examples (on their own test curve) can run as
    known-answer tests; production always uses the default.
    """

    def __init__(self, curve: dict[str, int] | None = None) -> None:
        self.c = dict(curve or CURVE)
        self._tbl = _table(self.c)

    # -- points ---------------------------------------------------------------------------------

    def _engine(self, public_hex: str = "", private_hex: str = "") -> Any:
        eng = _gm.CryptSM2(private_key=private_hex, public_key="", ecc_table=self._tbl, mode=1)
        # defect 3: never let gmssl's lstrip("04") see the key; set the 128-hex x‖y form directly
        eng.public_key = public_hex
        return eng

    def _mul(self, k: int, x: int, y: int) -> tuple[int, int]:
        """k·(x, y) via gmssl's Jacobian ladder; raises ValueError for the point at infinity."""
        if not 0 < k < self.c["n"]:
            raise ValueError("scalar out of range")
        out = self._engine()._kg(k, f"{x:064x}{y:064x}")
        if out is None:
            raise ValueError("point at infinity")
        return int(out[:64], 16), int(out[64:128], 16)

    def on_curve(self, x: int, y: int) -> bool:
        p = self.c["p"]
        return 0 <= x < p and 0 <= y < p and (y * y - (x * x * x + self.c["a"] * x + self.c["b"])) % p == 0

    def parse_public(self, public: bytes) -> tuple[int, int]:
        """(x, y) of a 65-byte ``04‖x‖y`` key; ValueError unless it is a valid curve point."""
        if not isinstance(public, (bytes, bytearray)) or len(public) != 65 or public[0] != 0x04:
            raise ValueError("SM2 public key must be 65 bytes 04‖x‖y")
        x, y = int.from_bytes(public[1:33], "big"), int.from_bytes(public[33:], "big")
        if not self.on_curve(x, y):
            raise ValueError("SM2 public key is not a point on the curve")
        return x, y  # cofactor 1: on the curve and not infinity means in the prime-order group

    def check_public(self, public: bytes) -> None:
        self.parse_public(public)

    def _scalar(self, private: Any) -> int:
        if not isinstance(private, (bytes, bytearray)) or len(private) != 32:
            raise ValueError("SM2 private key must be 32 bytes")
        d = int.from_bytes(private, "big")
        if not 1 <= d <= self.c["n"] - 2:  # n-1 is excluded: signing inverts (1 + d)
            raise ValueError("SM2 private key out of range")
        return d

    def public_from_private(self, private: Any) -> bytes:
        x, y = self._mul(self._scalar(private), self.c["gx"], self.c["gy"])
        return b"\x04" + _i2b(x) + _i2b(y)

    def generate_keypair(self) -> tuple[bytes, bytes]:
        d = secrets.randbelow(self.c["n"] - 2) + 1
        private = _i2b(d)
        return private, self.public_from_private(private)

    # -- signatures (GB/T 32918.2) --------------------------------------------------------------

    def z_a(self, public: bytes, uid: bytes = DEFAULT_ID) -> bytes:
        c = self.c
        entl = (len(uid) * 8).to_bytes(2, "big")
        return sm3(entl + uid + _i2b(c["a"]) + _i2b(c["b"]) + _i2b(c["gx"]) + _i2b(c["gy"]) + public[1:])

    def digest(self, public: bytes, message: bytes, uid: bytes = DEFAULT_ID) -> bytes:
        """e = SM3(Z_A ‖ M), computed with OpenSSL's SM3 rather than gmssl's pure-Python one."""
        return sm3(self.z_a(public, uid) + message)

    def sign(self, private: Any, message: bytes, *, k: int | None = None, uid: bytes = DEFAULT_ID,
             public: bytes | None = None) -> bytes:
        """r‖s (64 B). ``k`` is for known-answer tests only; by default it comes from ``secrets`` (defect 1)."""
        d = self._scalar(private)
        pub = public if public is not None else self.public_from_private(private)
        e = self.digest(pub, message, uid)
        eng = self._engine(pub[1:].hex(), f"{d:064x}")
        n = self.c["n"]
        for _ in range(64):
            kk = k if k is not None else secrets.randbelow(n - 1) + 1
            sig = eng.sign(e, f"{kk:064x}")
            if sig is not None:  # gmssl returns None for r = 0, r + k = n or s = 0: draw another k
                return bytes.fromhex(sig)
            if k is not None:
                raise ValueError("the given k yields an invalid signature")
        raise RuntimeError("SM2 signing failed 64 times")  # pragma: no cover - probability ~2^-16000

    def verify(self, public: bytes, message: bytes, signature: bytes, *, uid: bytes = DEFAULT_ID) -> bool:
        if len(signature) != 64:
            return False
        try:
            self.parse_public(public)
        except ValueError:
            return False
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        n = self.c["n"]
        if not (1 <= r <= n - 1 and 1 <= s <= n - 1):  # defect 4: gmssl skips this range check
            return False
        if (r + s) % n == 0:
            return False
        e = self.digest(public, message, uid)
        try:
            return bool(self._engine(public[1:].hex()).verify(signature.hex(), e))
        except (TypeError, ValueError):  # gmssl indexes None when an intermediate sum is the point at infinity
            return False

    # -- public-key encryption (GB/T 32918.4), C1C3C2 ---------------------------------------------

    @staticmethod
    def kdf(z: bytes, klen: int) -> bytes:
        out = bytearray()
        ct = 1
        while len(out) < klen:
            out += sm3(z + ct.to_bytes(4, "big"))
            ct += 1
        return bytes(out[:klen])

    def encrypt(self, public: bytes, message: bytes, *, k: int | None = None) -> bytes:
        """C1(65) ‖ C3(32) ‖ C2; our own implementation so k comes from ``secrets`` (defect 1)."""
        px, py = self.parse_public(public)
        n = self.c["n"]
        for _ in range(64):
            kk = k if k is not None else secrets.randbelow(n - 1) + 1
            x1, y1 = self._mul(kk, self.c["gx"], self.c["gy"])
            x2, y2 = self._mul(kk, px, py)
            t = self.kdf(_i2b(x2) + _i2b(y2), len(message))
            if message and not any(t):
                if k is not None:
                    raise ValueError("the given k yields an all-zero key stream")
                continue  # pragma: no cover - probability 2^-8·len
            c2 = bytes(a ^ b for a, b in zip(message, t))
            c3 = sm3(_i2b(x2) + message + _i2b(y2))
            return b"\x04" + _i2b(x1) + _i2b(y1) + c3 + c2
        raise RuntimeError("SM2 encryption failed 64 times")  # pragma: no cover

    def decrypt(self, private: Any, ciphertext: bytes) -> bytes | None:
        """The plaintext, or None when anything is wrong (off-curve C1, C3 mismatch...): one failure mode."""
        if len(ciphertext) < 65 + 32 or ciphertext[0] != 0x04:
            return None
        try:
            d = self._scalar(private)
            x1, y1 = self.parse_public(ciphertext[:65])  # defect 4: reject invalid-curve C1
            x2, y2 = self._mul(d, x1, y1)
        except ValueError:
            return None
        c3, c2 = ciphertext[65:97], ciphertext[97:]
        t = self.kdf(_i2b(x2) + _i2b(y2), len(c2))
        if c2 and not any(t):
            return None
        m = bytes(a ^ b for a, b in zip(c2, t))
        # defect 2: gmssl computes this hash and discards it; without the check any C2 "decrypts"
        if not hmac.compare_digest(sm3(_i2b(x2) + m + _i2b(y2)), c3):
            return None
        return m
