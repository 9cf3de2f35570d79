"""Signed JSON documents around the envelope: agent receipts and platform signing-key rotation messages.

Both are JSON objects whose signature covers ``label ‖ canonical JSON of every other member``. Canonical
JSON = keys sorted, no whitespace, UTF-8, integers only (RFC 8785 JCS gives the same bytes for these
documents, whose keys are ASCII), so a Java verifier reproduces the bytes without our code. A receipt is
the agent's evidence of receipt (GB/T 39786 不可否认性): it names the batch by ``hh`` and says what was applied.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from . import errors as E
from .keys import AgentKeys, AgentPublicKeys, SignerKey, VerifyKey
from .provider import Suite, get_provider

RECEIPT_LABEL = b"EDU-ENV/v1 receipt\x00"
TRUST_LABEL = b"EDU-ENV/v1 trust-update\x00"
RECEIPT_TYPE = "edx-receipt/1"
TRUST_TYPE = "edx-trust-update/1"
_MAX_INT = (1 << 63) - 1


def canonical_json(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def _plain(value: Any, where: str) -> Any:
    """Only strings, non-negative integers up to 2^63-1, and objects of them: nothing JSON could round off."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: booleans are not allowed")
    if isinstance(value, int):
        if not 0 <= value <= _MAX_INT:
            raise ValueError(f"{where}: integers must be 0..2^63-1")
        return value
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings")
            out[k] = _plain(v, f"{where}.{k}")
        return out
    raise ValueError(f"{where}: {type(value).__name__} is not allowed (strings, integers and objects only)")


def sign_receipt(agent_keys: AgentKeys, hh: bytes, dataset: str, seq: int, counts: Mapping[str, int],
                 checksum: Mapping[str, Any], applied_at_ms: int) -> dict[str, Any]:
    """The agent's signed receipt for an applied batch (JSON-safe dict).

    ``counts`` e.g. {"applied": 10, "quarantined": 1}; ``checksum`` e.g. ``Checksum.to_dict()`` of the rows
    as applied.
    """
    if len(hh) != 32:
        raise ValueError("hh is 32 bytes")
    body = {
        "type": RECEIPT_TYPE,
        "suite": agent_keys.suite.label,
        "agent_key_id": agent_keys.key_id.hex(),
        "hh": bytes(hh).hex(),
        "dataset": dataset,
        "seq": seq,
        "counts": _plain(dict(counts), "counts"),
        "checksum": _plain(dict(checksum), "checksum"),
        "applied_at_ms": applied_at_ms,
    }
    _plain(body, "receipt")
    sig = get_provider(agent_keys.suite).sign(agent_keys.sign_private, agent_keys.sign_public,
                                             RECEIPT_LABEL + canonical_json(body))
    return {**body, "signature": sig.hex()}


_RECEIPT_FIELDS = {"type": str, "suite": str, "agent_key_id": str, "hh": str, "dataset": str, "seq": int,
                   "counts": dict, "checksum": dict, "applied_at_ms": int, "signature": str}


def _unhex(value: str, n: int | None, what: str, err: type[E.IntegrityError]) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise err(f"{what} is not hex") from None
    if n is not None and len(raw) != n:
        raise err(f"{what} must be {n} bytes")
    if raw.hex() != value:
        raise err(f"{what} must be lower-case hex without spaces")  # one encoding per document
    return raw


def verify_receipt(receipt: Any, agent_public: AgentPublicKeys | AgentKeys) -> None:
    """Raise ReceiptInvalid unless ``receipt`` is well-formed and signed by ``agent_public``."""
    if isinstance(agent_public, AgentKeys):
        agent_public = agent_public.public()
    if not isinstance(receipt, Mapping):
        raise E.ReceiptInvalid("a receipt is a JSON object")
    if set(receipt) != set(_RECEIPT_FIELDS):
        raise E.ReceiptInvalid(f"members must be exactly {sorted(_RECEIPT_FIELDS)}")
    for name, typ in _RECEIPT_FIELDS.items():
        if not isinstance(receipt[name], typ) or (typ is int and isinstance(receipt[name], bool)):
            raise E.ReceiptInvalid(f"{name} must be a {typ.__name__}")
    if receipt["type"] != RECEIPT_TYPE:
        raise E.ReceiptInvalid(f"type {receipt['type']!r} is not {RECEIPT_TYPE!r}")
    if receipt["suite"] != agent_public.suite.label:
        raise E.ReceiptInvalid(f"suite {receipt['suite']!r}, the agent key is {agent_public.suite.label}")
    if _unhex(receipt["agent_key_id"], 16, "agent_key_id", E.ReceiptInvalid) != agent_public.key_id:
        raise E.ReceiptInvalid("signed by another agent key")
    _unhex(receipt["hh"], 32, "hh", E.ReceiptInvalid)
    sig = _unhex(receipt["signature"], 64, "signature", E.ReceiptInvalid)
    body = {k: v for k, v in receipt.items() if k != "signature"}
    try:
        _plain(body, "receipt")
    except ValueError as e:
        raise E.ReceiptInvalid(str(e)) from None
    if not get_provider(agent_public.suite).verify(agent_public.sign_public, RECEIPT_LABEL + canonical_json(body),
                                                   sig):
        raise E.ReceiptInvalid("signature does not verify")


# --- platform signing-key rotation -----------------------------------------------------------

@dataclass(frozen=True)
class TrustUpdate:
    """A verified rotation: trust ``new_key`` from ``not_before_ms``; the old key signs until ``overlap_until_ms``."""

    old_key_id: bytes
    new_key: VerifyKey
    not_before_ms: int
    overlap_until_ms: int

    def apply(self, trusted: Iterable[VerifyKey]) -> list[VerifyKey]:
        """The trust store after the rotation: the old key's validity ends at the overlap, the new key added."""
        out: list[VerifyKey] = []
        for k in trusted:
            if k.key_id == self.new_key.key_id:
                continue  # replaced by the announced window
            if k.key_id == self.old_key_id:
                end = self.overlap_until_ms if k.valid_until_ms == 0 else min(k.valid_until_ms, self.overlap_until_ms)
                k = k.with_validity(valid_until_ms=end)
            out.append(k)
        out.append(self.new_key)
        return out


def sign_trust_update(old_signer: SignerKey, new_verify_key: VerifyKey, not_before_ms: int,
                      overlap_until_ms: int) -> dict[str, Any]:
    """A rotation message signed by the current platform key, announcing its successor and the overlap."""
    if overlap_until_ms < not_before_ms:
        raise ValueError("the overlap must end after the new key becomes valid")
    body = {
        "type": TRUST_TYPE,
        "old_suite": old_signer.suite.label,
        "old_key_id": old_signer.key_id.hex(),
        "new_suite": new_verify_key.suite.label,
        "new_public": new_verify_key.public_bytes.hex(),
        "new_key_id": new_verify_key.key_id.hex(),
        "not_before_ms": not_before_ms,
        "overlap_until_ms": overlap_until_ms,
    }
    _plain(body, "trust update")
    sig = old_signer.sign(TRUST_LABEL + canonical_json(body))
    return {**body, "signature": sig.hex()}


_TRUST_FIELDS = {"type": str, "old_suite": str, "old_key_id": str, "new_suite": str, "new_public": str,
                 "new_key_id": str, "not_before_ms": int, "overlap_until_ms": int, "signature": str}


def verify_trust_update(update: Any, trusted: Iterable[VerifyKey], *, now_ms: int | None = None) -> TrustUpdate:
    """Check a rotation message against the trust store; returns what to apply (``TrustUpdate.apply``).

    The signer must be a trusted key, valid now when ``now_ms`` is given (a message signed by a key that
    was already retired cannot extend anything).
    """
    bad = E.TrustUpdateInvalid
    if not isinstance(update, Mapping) or set(update) != set(_TRUST_FIELDS):
        raise bad(f"members must be exactly {sorted(_TRUST_FIELDS)}")
    for name, typ in _TRUST_FIELDS.items():
        if not isinstance(update[name], typ) or (typ is int and isinstance(update[name], bool)):
            raise bad(f"{name} must be a {typ.__name__}")
    if update["type"] != TRUST_TYPE:
        raise bad(f"type {update['type']!r}")
    try:
        old_suite, new_suite = Suite.parse(update["old_suite"]), Suite.parse(update["new_suite"])
        body = _plain({k: v for k, v in update.items() if k != "signature"}, "trust update")
    except ValueError as e:
        raise bad(str(e)) from None
    old_id = _unhex(update["old_key_id"], 16, "old_key_id", bad)
    sig = _unhex(update["signature"], 64, "signature", bad)
    signer = next((k for k in trusted if k.suite == old_suite and k.key_id == old_id), None)
    if signer is None:
        raise bad(f"signed by untrusted key {old_id.hex()}")
    if now_ms is not None and not signer.valid_at(now_ms):
        raise bad(f"signing key {old_id.hex()} is no longer valid")
    if not get_provider(old_suite).verify(signer.public_bytes, TRUST_LABEL + canonical_json(body), sig):
        raise bad("signature does not verify")
    new_pub = _unhex(update["new_public"], None, "new_public", bad)
    try:
        get_provider(new_suite).check_public(new_pub, "sign")
    except ValueError as e:
        raise bad(f"new key: {e}") from None
    new_key = VerifyKey(new_suite, new_pub, valid_from_ms=update["not_before_ms"], datasets=signer.datasets)
    if new_key.key_id.hex() != update["new_key_id"]:
        raise bad("new_key_id does not match new_public")
    if update["overlap_until_ms"] < update["not_before_ms"]:
        raise bad("overlap ends before the new key starts")
    return TrustUpdate(old_id, new_key, update["not_before_ms"], update["overlap_until_ms"])
