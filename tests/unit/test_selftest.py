"""The start-up crypto self-test: every check passes here, a broken primitive is reported, it stays fast."""

from __future__ import annotations

import time

import pytest

from agent import selftest
from agent.envelope import Suite, register_provider
from agent.envelope.provider import IntlProvider


def test_all_checks_pass_and_name_their_vectors() -> None:
    t0 = time.perf_counter()
    results = selftest.run_selftest()
    elapsed = time.perf_counter() - t0
    assert [name for name, _, _ in results] == [c[0] for c in selftest.CHECKS]
    failed = [(n, d) for n, ok, d in results if not ok]
    assert not failed, failed
    assert elapsed < 3.0  # budget: < 1 s on the reference VM, with margin for a busy CI runner


def test_without_sm2_skips_only_the_sm2_checks() -> None:
    names = [n for n, _, _ in selftest.run_selftest(include_sm2=False)]
    assert "sm2" not in names and "envelope-gm1" not in names and "sm4-gcm" in names


def test_a_wrong_vector_is_reported_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selftest, "ED25519", [(*selftest.ED25519[0][:3], "00" * 64)])
    res = {n: (ok, d) for n, ok, d in selftest.run_selftest(include_sm2=False)}
    assert res["ed25519"][0] is False and "wrong answer" in res["ed25519"][1]
    assert res["sm3"][0] is True


class _BrokenAead(IntlProvider):
    """A provider whose chunk cipher ignores the tag: the round-trip check must catch it."""

    def chunk_cipher(self, key: bytes):  # type: ignore[override]
        inner = super().chunk_cipher(key)

        class Lax:
            def seal_into(self, *a):
                inner.seal_into(*a)

            def open_into(self, nonce, aad, sealed, out):
                inner.open_into(nonce, aad, sealed, out)
                return True
        return Lax()


def test_a_broken_provider_fails_the_round_trip() -> None:
    register_provider(Suite.INTL1, _BrokenAead())
    try:
        res = {n: (ok, d) for n, ok, d in selftest.run_selftest(include_sm2=False)}
    finally:
        register_provider(Suite.INTL1, None)
    assert res["envelope-intl1"][0] is False, res["envelope-intl1"]
