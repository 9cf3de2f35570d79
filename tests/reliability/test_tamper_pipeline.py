"""Tampering and replay through the real pipeline and a real connector, for both cipher suites.

The envelope engineer's unit tests cover the parser; these go through ``agent.pipeline`` with the agent's
own context (its keys, its trust store, its checkpoint in the target database). A recording wrapper around
the real connector proves the refusal came before any database write: only reads of the checkpoint and the
lineage are allowed, and the target's rows, checkpoint and lineage are compared before and after.

Batches are made by the platform's own signing key (read from the hub's data directory), so every field the
platform signs can be wrong on purpose: replay, fork, gap, another agent, another dataset, expired. Small
chunk sizes give multi-chunk envelopes for the truncation, swap, duplicate and reorder cases. A control
case (the same re-sealing with nothing wrong) must apply, so the suite cannot pass by refusing everything.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pytest

from agent import envelope
from agent.errors import IntegrityError

from .conftest import BACKEND_PARAMS
from .harness import Rig

WRITES = {"apply", "purge", "drop_table", "plan_schema"}


class Recorder:
    """The real connector, with every call recorded (the pipeline sees no difference)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*a: Any, **k: Any) -> Any:
            self.calls.append(name)
            return attr(*a, **k)
        return call

    def writes(self) -> list[str]:
        return [c for c in self.calls if c in WRITES]


class Tamper:
    """An agent context on a rig, the platform's signer, and a known-good batch to damage."""

    def __init__(self, rig: Rig) -> None:
        from agent.config import load
        from agent.runtime import build_context

        self.rig = rig
        self.ctx = build_context(load(rig.config))
        self.rec = Recorder(self.ctx.connector)
        self.ctx.connector = self.rec
        self.suite = envelope.Suite.parse(1 if rig.suite == "intl" else 2)
        self.signer = rig.hubctx.signers[int(self.suite)]
        self.dataset = rig.datasets[0]

    def close(self) -> None:
        self.rec._inner.close()
        self.ctx.client.close()

    def download(self, seq: int) -> bytes:
        listing = self.ctx.client.batches(self.dataset, seq - 1)["batches"]
        (b,) = [x for x in listing if int(x["seq"]) == seq]
        path = self.ctx.spool.fetch(self.ctx.client, b)
        data = path.read_bytes()
        path.unlink()
        return data

    def header(self, data: bytes) -> Any:
        return envelope.read_header(io.BytesIO(data), trusted=self.ctx.hub_keys, allowed_suites=[1, 2])

    def payload(self, data: bytes) -> bytes:
        src = io.BytesIO(data)
        h = envelope.read_header(src, trusted=self.ctx.hub_keys, allowed_suites=[1, 2])
        ps = envelope.open_payload(src, h, self.ctx.keys)
        out = io.BufferedReader(ps).read()
        ps.finish()
        return out

    def reseal(self, data: bytes, *, signer: Any = None, recipient: Any = None, **over: Any) -> bytes:
        """The same batch sealed again by the platform key (or ``signer``), with fields overridden."""
        h = self.header(data)
        plain = self.payload(data)
        comp = io.BytesIO()
        info = envelope.compress_payload(io.BytesIO(plain), comp, self.suite)
        comp.seek(0)
        fields = dict(recipient_id=h.recipient_id, dataset_id=h.dataset_id, batch_seq=h.batch_seq,
                      prev_hh=h.prev_hh, kind=h.kind, schema_version=h.schema_version, schema_hash=h.schema_hash,
                      row_count=h.row_count, created_at_ms=int(time.time() * 1000), expires_at_ms=0,
                      chunk_size=h.chunk_size, extensions=dict(h.extensions))
        fields.update(over)
        out = io.BytesIO()
        envelope.seal(out, comp, info, suite=self.suite, signer=signer or self.signer,
                      recipient=recipient or self.ctx.keys[0].public(), **fields)
        return out.getvalue()

    def state(self) -> tuple[Any, ...]:
        t = self.rig.target
        return (t.rows(self.dataset), t.checkpoint(self.dataset), t.lineage(self.dataset))

    def attempt(self, data: bytes, seq: int) -> str | None:
        """Put ``data`` in the spool as batch ``seq`` and run the pipeline on it; the error code or None."""
        from agent.pipeline import apply_file

        path = self.ctx.spool.path(self.dataset, seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.rec.calls.clear()
        try:
            apply_file(self.ctx, path, self.dataset)
        except IntegrityError as e:
            return e.code
        finally:
            path.unlink(missing_ok=True)
        return None

    def refuse(self, data: bytes, seq: int, code: str | tuple[str, ...] | None = None) -> str:
        before = self.state()
        got = self.attempt(data, seq)
        assert got is not None, "a damaged batch was accepted"
        assert not self.rec.writes(), f"database written before the refusal: {self.rec.calls}"
        if code is not None:
            codes = (code,) if isinstance(code, str) else code
            assert got in codes, f"expected {codes}, got {got}"
        assert self.state() == before
        return got


def chunks_of(t: Tamper, data: bytes) -> tuple[int, list[tuple[int, int]]]:
    """(header length, [(start, end) of each encrypted chunk])."""
    h = t.header(data)
    start = len(h.tbs) + 2 + len(h.signature)
    spans, pos, step = [], start, h.chunk_size + 16
    while pos < len(data):
        spans.append((pos, min(pos + step, len(data))))
        pos += step
    return start, spans


@pytest.fixture(params=["intl", pytest.param("gm", marks=pytest.mark.slow)])
def tamper(request, make_rig):
    rig = make_rig("sqlite", suite=request.param, datasets=["student", "other"], base_rows=30)
    for ds in rig.datasets:
        rig.publish("snapshot", ds)
    rig.recover()
    rig.publish("changes", "student", rows=12)
    t = Tamper(rig)
    t.good = t.download(2)
    yield t
    t.close()


@pytest.mark.parametrize("suite", ["gm"])
def test_every_byte_flipped_gm(suite, make_rig):
    """The GM-1 suite in the default run too: every byte of a small batch (the intl twin is below)."""
    rig = make_rig("sqlite", suite=suite, base_rows=20)
    rig.publish("snapshot")
    rig.recover()
    rig.publish("changes", rows=8)
    t = Tamper(rig)
    try:
        good = t.download(2)
        for i in range(len(good)):
            bad = bytearray(good)
            bad[i] ^= 0x01 << (i % 8)
            t.refuse(bytes(bad), 2)
        assert t.attempt(good, 2) is None
    finally:
        t.close()


def test_every_byte_flipped_is_refused_before_any_write(tamper):
    t = tamper
    data = t.good
    codes: dict[str, int] = {}
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01 << (i % 8)
        code = t.refuse(bytes(bad), 2)
        codes[code] = codes.get(code, 0) + 1
    print(f"[flip-every-byte {t.rig.suite}] {len(data)} flips -> {codes}")
    assert all(c.startswith("envelope-") for c in codes)
    assert t.attempt(data, 2) is None, "the undamaged batch must apply (control)"


def test_big_batch_sampled_flips_truncations_and_chunk_surgery(tamper, rng):
    t = tamper
    big = t.reseal(t.good, chunk_size=256)
    start, spans = chunks_of(t, big)
    assert len(spans) >= 4, f"need several chunks, got {len(spans)}"
    seen: dict[str, int] = {}

    def refuse(bad: bytes, code: Any = None) -> None:
        c = t.refuse(bad, 2, code)
        seen[c] = seen.get(c, 0) + 1

    for i in rng.sample(range(len(big)), min(300, len(big))):
        bad = bytearray(big)
        bad[i] ^= 1 << rng.randrange(8)
        refuse(bytes(bad))
    # truncated at every chunk boundary and every 8 bytes of the last chunk
    for s, _ in spans:
        refuse(big[:s], "envelope-chunk-truncated")
    last_s, last_e = spans[-1]
    for cut in range(last_s + 8, last_e, 8):
        refuse(big[:cut], ("envelope-chunk-truncated", "envelope-chunk-invalid"))
    pieces = [big[s:e] for s, e in spans]
    head = big[:start]
    full = [p for p in pieces if len(p) == len(pieces[0])]
    refuse(head + pieces[1] + pieces[0] + b"".join(pieces[2:]), "envelope-chunk-invalid")          # swap
    refuse(head + pieces[0] + pieces[0] + b"".join(pieces[1:]), "envelope-chunk-invalid")          # duplicate
    refuse(head + b"".join(pieces[:1] + pieces[2:]), "envelope-chunk-invalid")                      # drop one
    order = list(range(len(full)))
    rng.shuffle(order)
    if order != sorted(order):
        refuse(head + b"".join(full[i] for i in order) + b"".join(pieces[len(full):]),
               "envelope-chunk-invalid")                                                            # reorder
    refuse(big + b"\x00", "envelope-trailing-data")
    refuse(big + pieces[-1], ("envelope-trailing-data", "envelope-chunk-invalid"))
    print(f"[chunk-surgery {t.rig.suite}] {len(spans)} chunks, {sum(seen.values())} refusals {seen}")
    assert t.attempt(big, 2) is None, "the re-sealed control batch must apply"


def test_sequence_identity_and_trust_refusals(tamper):
    t = tamper
    h2 = t.header(t.good)
    other_agent = envelope.generate_agent_keys(t.suite)
    stranger = envelope.generate_signer_key(t.suite)
    cases = {
        "fork": (t.reseal(t.good, prev_hh=bytes(32 * [7])), 2, "envelope-fork"),
        "skip": (t.reseal(t.good, batch_seq=3, prev_hh=h2.hh), 3, "envelope-gap"),
        "another agent": (t.reseal(t.good, recipient_id="agent-someone-else", recipient=other_agent.public()),
                          2, "envelope-wrong-recipient"),
        "another agent's key": (t.reseal(t.good, recipient=other_agent.public()), 2,
                                "envelope-wrong-recipient"),
        "another dataset": (t.reseal(t.good, dataset_id="other"), 2, "envelope-wrong-dataset"),
        "expired": (t.reseal(t.good, created_at_ms=int(time.time() * 1000) - 7200_000,
                             expires_at_ms=int(time.time() * 1000) - 3600_000), 2, "envelope-expired"),
        "unknown signing key": (t.reseal(t.good, signer=stranger), 2, "envelope-signer-unknown"),
        "unknown version": (t.good[:8] + b"\x02" + t.good[9:], 2, "envelope-unsupported-version"),
        "not an envelope": (b"PK\x03\x04" + t.good[4:], 2, "envelope-bad-magic"),
    }
    codes = {}
    for name, (data, seq, code) in cases.items():
        codes[name] = t.refuse(data, seq, code)
    assert len(set(codes.values())) == len(codes) - 1, codes  # one shared code: the two recipient cases
    # the genuine batch applies; then the same batch again is a duplicate (no write), a different
    # batch under an applied sequence is a replay
    assert t.attempt(t.good, 2) is None
    before = t.state()
    assert t.attempt(t.good, 2) is None and not t.rec.writes(), t.rec.calls
    assert t.state() == before
    t.refuse(t.reseal(t.good), 2, "envelope-replayed")
    t.rig.publish("changes", "student", rows=5)
    good3 = t.download(3)
    assert t.attempt(good3, 3) is None
    t.refuse(t.reseal(t.good), 2, "envelope-replayed")                     # an old seq, new content
    t.refuse(t.reseal(good3, batch_seq=2), 2, "envelope-replayed")         # a newer batch relabelled


def test_refused_batch_is_reported_and_other_datasets_keep_flowing(tamper):
    """The real CLI: one dataset's batch is damaged in the spool, the other dataset applies in the same run."""
    t = tamper
    rig = t.rig
    bad = bytearray(t.good)
    bad[len(bad) - 5] ^= 0x40
    path = t.ctx.spool.path("student", 2)
    path.write_bytes(bytes(bad))
    rig.publish("changes", "other", rows=6)
    before = t.state()
    run = rig.sync()
    assert run.returncode == 65, run.text
    assert "envelope-chunk-invalid" in run.stdout, run.text
    assert rig.target.checkpoint("other")[0] == 2, "the other dataset must keep flowing"
    assert t.state() == before
    st = rig.status()["datasets"]
    assert st["student"]["last_error"]["code"] == "envelope-chunk-invalid"
    assert st["other"]["state"] == "ok"
    kept = list((rig.spool_path / "rejected" / "student").glob("*.edx"))
    assert kept and "envelope-chunk-invalid" in kept[0].name
    rig.recover()
    rig.check(complete=True)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [p for p in BACKEND_PARAMS if p.values[0] != "sqlite"])
def test_flips_refused_on_server_databases(backend, make_rig, rng):
    """A sample of flips and the sequence refusals with MariaDB/PostgreSQL behind the pipeline."""
    rig = make_rig(backend, base_rows=20)
    rig.publish("snapshot")
    rig.recover()
    rig.publish("changes", rows=8)
    t = Tamper(rig)
    try:
        good = t.download(2)
        for i in rng.sample(range(len(good)), 120):
            bad = bytearray(good)
            bad[i] ^= 0x80
            t.refuse(bytes(bad), 2)
        t.refuse(t.reseal(good, prev_hh=bytes(32)), 2, "envelope-fork")
        t.refuse(t.reseal(good, batch_seq=3, prev_hh=t.header(good).hh), 3, "envelope-gap")
        assert t.attempt(good, 2) is None
        t.refuse(t.reseal(good), 2, "envelope-replayed")
    finally:
        t.close()
