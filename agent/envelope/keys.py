"""Agent and platform key pairs for the envelope: generation, key ids and JSON-safe serialisation.

An agent holds, per suite, an encryption key pair (X25519 or SM2) that batch data keys are wrapped to and a
signing key pair (Ed25519 or SM2) for receipts; the pair rotates together and is named by one key id.
The platform (hub) holds a signing key; agents trust its public half (``VerifyKey``) with a validity window.

Key id = the first 16 bytes of H(suite byte ‖ raw public key bytes), H = SHA-256 (INTL-1) or SM3 (GM-1),
where the raw bytes are ``enc_public ‖ sign_public`` for an agent and the signing key for the platform.
Raw bytes rather than SPKI DER because SM2 keys have no DER form in ``cryptography`` and the Java side
then needs no ASN.1 to compute an id; the suite byte keeps ids of the two suites apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ..errors import KeyFileError
from .provider import Suite, get_provider

KEY_ID_LEN = 16


def key_id_for(suite: Suite, *publics: bytes) -> bytes:
    return get_provider(suite).hash(bytes([suite]) + b"".join(publics))[:KEY_ID_LEN]


def _hex(data: Any, what: str) -> bytes:
    if not isinstance(data, str):
        raise KeyFileError(f"{what}: expected a hex string")
    try:
        return bytes.fromhex(data)
    except ValueError:
        raise KeyFileError(f"{what}: not valid hex") from None


def _suite(doc: Any) -> Suite:
    if not isinstance(doc, dict):
        raise KeyFileError("a key document must be a JSON object")
    try:
        return Suite.parse(doc.get("suite"))
    except ValueError as e:
        raise KeyFileError(str(e)) from None


def _check_kind(doc: dict[str, Any], kind: str) -> None:
    if doc.get("kind") != kind:
        raise KeyFileError(f"expected a {kind!r} document, got kind={doc.get('kind')!r}")


def _check_id(doc: dict[str, Any], key_id: bytes) -> None:
    if "key_id" in doc and doc["key_id"] != key_id.hex():
        raise KeyFileError("key_id does not match the keys in the document (edited or corrupted)")


@dataclass(frozen=True)
class AgentPublicKeys:
    """The public half an agent sends at enrolment: what the hub seals to and checks receipts with."""

    suite: Suite
    enc_public: bytes
    sign_public: bytes
    key_id: bytes = field(default=b"", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite.parse(self.suite))
        kid = key_id_for(self.suite, self.enc_public, self.sign_public)
        if self.key_id and self.key_id != kid:
            raise KeyFileError("key_id does not match the public keys")
        object.__setattr__(self, "key_id", kid)

    def validate(self) -> AgentPublicKeys:
        """Check both keys are well-formed points/keys for the suite (the hub calls this at enrolment)."""
        p = get_provider(self.suite)
        try:
            p.check_public(self.enc_public, "enc")
            p.check_public(self.sign_public, "sign")
        except ValueError as e:
            raise KeyFileError(f"invalid agent public key: {e}") from None
        return self

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "edx-agent-public", "suite": self.suite.label, "key_id": self.key_id.hex(),
                "enc_public": self.enc_public.hex(), "sign_public": self.sign_public.hex()}

    @classmethod
    def from_dict(cls, doc: Any) -> AgentPublicKeys:
        suite = _suite(doc)
        _check_kind(doc, "edx-agent-public")
        k = cls(suite, _hex(doc.get("enc_public"), "enc_public"), _hex(doc.get("sign_public"), "sign_public"))
        _check_id(doc, k.key_id)
        return k.validate()


@dataclass(frozen=True)
class AgentKeys:
    """An agent's private keys for one suite. Private parts are opaque to the envelope (bytes in software)."""

    suite: Suite
    enc_private: Any = field(repr=False)
    enc_public: bytes
    sign_private: Any = field(repr=False)
    sign_public: bytes
    created_at_ms: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite.parse(self.suite))

    @property
    def key_id(self) -> bytes:
        return key_id_for(self.suite, self.enc_public, self.sign_public)

    def public(self) -> AgentPublicKeys:
        return AgentPublicKeys(self.suite, self.enc_public, self.sign_public)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, private parts included: store it like a password (mode 0600, keyring, credential)."""
        if not isinstance(self.enc_private, bytes) or not isinstance(self.sign_private, bytes):
            raise KeyFileError("keys held by a hardware module cannot be exported")
        return {"kind": "edx-agent-keys", "suite": self.suite.label, "key_id": self.key_id.hex(),
                "enc_private": self.enc_private.hex(), "enc_public": self.enc_public.hex(),
                "sign_private": self.sign_private.hex(), "sign_public": self.sign_public.hex(),
                "created_at_ms": self.created_at_ms}

    @classmethod
    def from_dict(cls, doc: Any) -> AgentKeys:
        suite = _suite(doc)
        _check_kind(doc, "edx-agent-keys")
        p = get_provider(suite)
        enc_priv = _hex(doc.get("enc_private"), "enc_private")
        sign_priv = _hex(doc.get("sign_private"), "sign_private")
        try:
            # recompute the publics: a file whose halves do not match would seal/sign to the wrong key
            enc_pub, sign_pub = p.kem_public(enc_priv), p.sign_public(sign_priv)
        except ValueError as e:
            raise KeyFileError(f"invalid private key: {e}") from None
        for name, derived in (("enc_public", enc_pub), ("sign_public", sign_pub)):
            if name in doc and _hex(doc[name], name) != derived:
                raise KeyFileError(f"{name} does not match its private key")
        created = doc.get("created_at_ms", 0)
        if not isinstance(created, int):
            raise KeyFileError("created_at_ms must be an integer")
        k = cls(suite, enc_priv, enc_pub, sign_priv, sign_pub, created)
        _check_id(doc, k.key_id)
        return k


@dataclass(frozen=True)
class VerifyKey:
    """A platform signing public key the agent trusts, valid for batches created in [valid_from, valid_until].

    ``valid_until_ms`` = 0 means open-ended. ``datasets`` = None means every dataset.
    """

    suite: Suite
    public_bytes: bytes
    valid_from_ms: int = 0
    valid_until_ms: int = 0
    datasets: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite.parse(self.suite))
        if self.datasets is not None:
            object.__setattr__(self, "datasets", tuple(self.datasets))

    @property
    def key_id(self) -> bytes:
        return key_id_for(self.suite, self.public_bytes)

    def valid_at(self, t_ms: int) -> bool:
        return t_ms >= self.valid_from_ms and (self.valid_until_ms == 0 or t_ms <= self.valid_until_ms)

    def allows(self, dataset_id: str) -> bool:
        return self.datasets is None or dataset_id in self.datasets

    def with_validity(self, valid_from_ms: int | None = None, valid_until_ms: int | None = None) -> VerifyKey:
        return replace(self,
                       valid_from_ms=self.valid_from_ms if valid_from_ms is None else valid_from_ms,
                       valid_until_ms=self.valid_until_ms if valid_until_ms is None else valid_until_ms)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "edx-verify-key", "suite": self.suite.label, "key_id": self.key_id.hex(),
                             "public": self.public_bytes.hex(), "valid_from_ms": self.valid_from_ms,
                             "valid_until_ms": self.valid_until_ms}
        if self.datasets is not None:
            d["datasets"] = list(self.datasets)
        return d

    @classmethod
    def from_dict(cls, doc: Any) -> VerifyKey:
        suite = _suite(doc)
        _check_kind(doc, "edx-verify-key")
        pub = _hex(doc.get("public"), "public")
        try:
            get_provider(suite).check_public(pub, "sign")
        except ValueError as e:
            raise KeyFileError(f"invalid platform public key: {e}") from None
        vf, vu = doc.get("valid_from_ms", 0), doc.get("valid_until_ms", 0)
        if not isinstance(vf, int) or not isinstance(vu, int) or vf < 0 or vu < 0:
            raise KeyFileError("valid_from_ms / valid_until_ms must be non-negative integers")
        ds = doc.get("datasets")
        if ds is not None and (not isinstance(ds, list) or not all(isinstance(x, str) for x in ds)):
            raise KeyFileError("datasets must be a list of dataset ids")
        k = cls(suite, pub, vf, vu, tuple(ds) if ds is not None else None)
        _check_id(doc, k.key_id)
        return k


@dataclass(frozen=True)
class SignerKey:
    """The platform's private signing key for one suite."""

    suite: Suite
    private: Any = field(repr=False)
    public_bytes: bytes

    def __post_init__(self) -> None:
        object.__setattr__(self, "suite", Suite.parse(self.suite))

    @property
    def key_id(self) -> bytes:
        return key_id_for(self.suite, self.public_bytes)

    def public(self, valid_from_ms: int = 0, valid_until_ms: int = 0) -> VerifyKey:
        return VerifyKey(self.suite, self.public_bytes, valid_from_ms, valid_until_ms)

    def sign(self, message: bytes, *, _k: int | None = None) -> bytes:
        return get_provider(self.suite).sign(self.private, self.public_bytes, message, _k=_k)

    def to_dict(self) -> dict[str, Any]:
        if not isinstance(self.private, bytes):
            raise KeyFileError("keys held by a hardware module cannot be exported")
        return {"kind": "edx-signer-key", "suite": self.suite.label, "key_id": self.key_id.hex(),
                "private": self.private.hex(), "public": self.public_bytes.hex()}

    @classmethod
    def from_dict(cls, doc: Any) -> SignerKey:
        suite = _suite(doc)
        _check_kind(doc, "edx-signer-key")
        priv = _hex(doc.get("private"), "private")
        try:
            pub = get_provider(suite).sign_public(priv)
        except ValueError as e:
            raise KeyFileError(f"invalid private key: {e}") from None
        if "public" in doc and _hex(doc["public"], "public") != pub:
            raise KeyFileError("public does not match its private key")
        k = cls(suite, priv, pub)
        _check_id(doc, k.key_id)
        return k


def generate_agent_keys(suite: Suite | int | str, created_at_ms: int = 0) -> AgentKeys:
    """A fresh agent key set (encryption + signing) from the OS random source."""
    s = Suite.parse(suite)
    p = get_provider(s)
    enc_priv, enc_pub = p.kem_keypair()
    sign_priv, sign_pub = p.sign_keypair()
    return AgentKeys(s, enc_priv, enc_pub, sign_priv, sign_pub, created_at_ms)


def generate_signer_key(suite: Suite | int | str) -> SignerKey:
    """A fresh platform signing key."""
    s = Suite.parse(suite)
    priv, pub = get_provider(s).sign_keypair()
    return SignerKey(s, priv, pub)
