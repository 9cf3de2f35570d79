"""Agent receipts and platform signing-key rotation messages, both suites."""

from __future__ import annotations

import copy
import io
import json

import pytest

from agent.envelope import (
    ReceiptInvalid,
    SignerNotValid,
    Suite,
    TrustUpdateInvalid,
    generate_agent_keys,
    generate_signer_key,
    read_header,
    sign_receipt,
    sign_trust_update,
    verify_receipt,
    verify_trust_update,
)
from agent.envelope.testing import KeyRing, seal_bytes
from agent.payload import Checksum


@pytest.fixture(scope="module", params=[Suite.INTL1, Suite.GM1], ids=lambda s: s.label)
def ring(request: pytest.FixtureRequest) -> KeyRing:
    return KeyRing.generate(request.param)


def _receipt(ring: KeyRing) -> dict:
    ck = Checksum()
    ck.add(["S0001", "张三", None])
    return sign_receipt(ring.agent, b"\x11" * 32, "ds.students", 4, {"applied": 1, "quarantined": 0},
                        ck.to_dict(), 1_700_000_000_123)


def test_receipt_round_trip_through_json(ring: KeyRing) -> None:
    r = json.loads(json.dumps(_receipt(ring)))
    verify_receipt(r, ring.agent.public())
    verify_receipt(r, ring.agent)
    assert r["hh"] == "11" * 32 and r["agent_key_id"] == ring.agent.key_id.hex()


@pytest.mark.parametrize("field,value", [
    ("seq", 5), ("dataset", "ds.other"), ("hh", "22" * 32), ("applied_at_ms", 1),
    ("counts", {"applied": 2, "quarantined": 0}), ("checksum", {"rows": 1, "sum64": "0" * 16}),
])
def test_receipt_any_change_breaks_it(ring: KeyRing, field: str, value: object) -> None:
    r = _receipt(ring)
    r[field] = value
    with pytest.raises(ReceiptInvalid):
        verify_receipt(r, ring.agent.public())


def test_receipt_malformed_and_foreign(ring: KeyRing) -> None:
    r = _receipt(ring)
    with pytest.raises(ReceiptInvalid):
        verify_receipt(r, generate_agent_keys(ring.suite).public())
    for mutate in (lambda d: d.pop("signature"), lambda d: d.update(extra=1), lambda d: d.update(seq="4"),
                   lambda d: d.update(signature="zz"), lambda d: d.update(signature=d["signature"].upper()),
                   lambda d: d.update(seq=True), lambda d: d["counts"].update(x=1.5)):
        bad = copy.deepcopy(r)
        mutate(bad)
        with pytest.raises(ReceiptInvalid):
            verify_receipt(bad, ring.agent.public())
    with pytest.raises(ReceiptInvalid):
        verify_receipt([1, 2], ring.agent.public())
    sig = bytearray(bytes.fromhex(r["signature"]))
    sig[5] ^= 1
    with pytest.raises(ReceiptInvalid):
        verify_receipt({**r, "signature": sig.hex()}, ring.agent.public())


def test_receipt_refuses_values_json_would_round() -> None:
    ring = KeyRing.generate(Suite.INTL1)
    with pytest.raises(ValueError):
        sign_receipt(ring.agent, b"\x00" * 32, "d", 1, {"applied": 1.0}, {}, 0)
    with pytest.raises(ValueError):
        sign_receipt(ring.agent, b"\x00" * 32, "d", 1, {"applied": 1 << 70}, {}, 0)


def test_signer_rotation_with_overlap(ring: KeyRing) -> None:
    old = ring.signer
    new = generate_signer_key(ring.suite)
    msg = json.loads(json.dumps(sign_trust_update(old, new.public(), 10_000, 20_000)))
    trusted = [old.public()]
    upd = verify_trust_update(msg, trusted, now_ms=9_000)
    store = upd.apply(trusted)
    assert {k.key_id for k in store} == {old.key_id, new.key_id}

    def header(signer_ring: KeyRing, at: int):
        env, _ = seal_bytes(signer_ring, b"x", created_at_ms=at)
        return read_header(io.BytesIO(env), trusted=store, allowed_suites=[ring.suite])

    new_ring = KeyRing(ring.suite, new, ring.agent, ring.agent_id)
    assert header(ring, 15_000).signer_key_id == old.key_id      # old key inside the overlap
    assert header(new_ring, 15_000).signer_key_id == new.key_id  # new key after not_before
    with pytest.raises(SignerNotValid):
        header(ring, 20_001)  # old key after the overlap
    with pytest.raises(SignerNotValid):
        header(new_ring, 9_999)  # new key before it is announced valid


def test_trust_update_refusals(ring: KeyRing) -> None:
    old = ring.signer
    new = generate_signer_key(ring.suite)
    msg = sign_trust_update(old, new.public(), 10_000, 20_000)
    with pytest.raises(TrustUpdateInvalid):
        verify_trust_update(msg, [new.public()])  # signer not trusted
    with pytest.raises(TrustUpdateInvalid):
        verify_trust_update(msg, [old.public(0, 5_000)], now_ms=6_000)  # signer already retired
    for field, value in (("overlap_until_ms", 99_999), ("new_public", generate_signer_key(ring.suite)
                                                         .public_bytes.hex()), ("not_before_ms", 0)):
        with pytest.raises(TrustUpdateInvalid):
            verify_trust_update({**msg, field: value}, [old.public()])
    with pytest.raises(TrustUpdateInvalid):
        verify_trust_update({k: v for k, v in msg.items() if k != "new_key_id"}, [old.public()])
    with pytest.raises(ValueError):
        sign_trust_update(old, new.public(), 20_000, 10_000)


def test_rotation_to_the_other_suite() -> None:
    old = generate_signer_key(Suite.INTL1)
    new = generate_signer_key(Suite.GM1)
    upd = verify_trust_update(sign_trust_update(old, new.public(), 1, 2), [old.public()])
    assert upd.new_key.suite == Suite.GM1 and upd.new_key.key_id == new.key_id
