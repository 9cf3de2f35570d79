"""Fuzzing the three parsers that read untrusted or hand-written input: every input either parses or raises
an AgentError subclass, never another exception (no crash, no hang).

Targets: the envelope header parser (``envelope.read_header``), the payload parser (``Manifest.read_from``
+ ``iter_records`` over the whole payload), the configuration loader (``config.load``). Inputs are valid
seeds mutated by Hypothesis (byte flips, inserts, deletes, splices, truncation) plus free-form bytes.

Default run: a few hundred examples per target. Long run (documented in docs/reliability.md):

    EDX_FUZZ_EXAMPLES=200000 pytest tests/reliability/test_fuzz.py --run-slow -k long -s

Findings are kept as a regression corpus under tests/fixtures/fuzz/<target>/ (one file per input) and
replayed by ``test_corpus_replays`` in every run; a new failure found by Hypothesis is written there first.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent import envelope, sample
from agent.envelope.testing import KeyRing, seal_bytes
from agent.errors import AgentError
from agent.payload import Manifest, iter_records, write_payload
from agent.schema import Schema

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "fuzz"
EXAMPLES = int(os.environ.get("EDX_FUZZ_EXAMPLES", "1500"))
RING = KeyRing.generate()
SCHEMA = Schema.from_dict(sample.SCHEMA)


def _payload() -> bytes:
    out = io.BytesIO()
    recs = [("I", [str(v) if v is not None else None for v in r.values()]) for r in sample.snapshot(5)]
    recs = [(op, [None if f == "None" else f for f in fields]) for op, fields in recs]
    recs += [("D", ["G00110101000001"] + [None] * 11), ("U", ["x", "王\"伟,\n", None, "2010-01-01", "1", "s", "NULL",
                                                              "3", "2019-09-01", "99.5", "true", "2026-09-01 08:00:00"])]
    write_payload(out, "student", "changes", SCHEMA, recs, len(recs))
    return out.getvalue()


SEEDS = {
    "header": seal_bytes(RING, _payload(), dataset_id="student", row_count=7)[0],
    "payload": _payload(),
    "config": b"""[agent]
state_dir = "state"
[hub]
url = "https://hub.example.cn"
read_timeout = 30
[database]
url = "sqlite:///data.db"
password_env = "EDX_DB_PW"
[sync]
interval = "5m"
quarantine_limit = 0.01
[datasets.student]
table = "xs_student"
interval = "1h"
""",
}


def parse_header(data: bytes) -> None:
    envelope.read_header(io.BytesIO(data), trusted=[RING.signer.public()], allowed_suites=[1, 2])


def parse_payload(data: bytes) -> None:
    stream = io.BytesIO(data)
    Manifest.read_from(stream)
    for _ in iter_records(stream):
        pass


def parse_config(data: bytes, tmp: Path) -> None:
    from agent.config import load

    p = tmp / "agent.toml"
    p.write_bytes(data)
    load(p)


def run_target(target: str, data: bytes, tmp: Path) -> None:
    try:
        if target == "header":
            parse_header(data)
        elif target == "payload":
            parse_payload(data)
        else:
            parse_config(data, tmp)
    except AgentError:
        return
    except Exception as e:  # noqa: BLE001 - the finding: keep it in the corpus, then fail
        d = CORPUS / target
        d.mkdir(parents=True, exist_ok=True)
        (d / f"finding-{hashlib.sha256(data).hexdigest()[:16]}.bin").write_bytes(data)
        raise AssertionError(f"{target}: untyped {type(e).__name__}: {e}") from e


@st.composite
def mutated(draw, seed: bytes):
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice", "dup"]))
        if not data:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        i = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[i] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, ord('"'), ord(","), ord("\n"), ord("=")]))
        elif op == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=32))
        elif op == "delete":
            del data[i:i + draw(st.integers(1, 32))]
        elif op == "truncate":
            del data[i:]
        elif op == "splice":
            j = draw(st.integers(0, len(data) - 1))
            data[i:i] = data[j:j + draw(st.integers(1, 64))]
        else:
            data[i:i] = data[i:i + draw(st.integers(1, 16))] * draw(st.integers(2, 50))
    return bytes(data)


def fuzz(target: str, examples: int, tmp_path_factory) -> None:
    tmp = tmp_path_factory.mktemp(f"fuzz-{target}")

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(st.one_of(mutated(SEEDS[target]), st.binary(max_size=2048)))
    def prop(data: bytes) -> None:
        run_target(target, data, tmp)
    prop()


@pytest.mark.parametrize("target", sorted(SEEDS))
def test_fuzz_short(target, tmp_path_factory):
    fuzz(target, EXAMPLES, tmp_path_factory)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(SEEDS))
def test_fuzz_long(target, tmp_path_factory):
    fuzz(target, int(os.environ.get("EDX_FUZZ_EXAMPLES", "200000")), tmp_path_factory)


def test_seeds_parse(tmp_path):
    """The seeds themselves are valid, so the mutations start from inputs that reach deep into each parser."""
    parse_header(SEEDS["header"])
    parse_payload(SEEDS["payload"])
    parse_config(SEEDS["config"], tmp_path)


def test_corpus_replays(tmp_path):
    files = sorted(p for p in CORPUS.glob("*/*") if p.is_file() and p.parent.name in SEEDS and p.name != "README.md")
    for p in files:
        run_target(p.parent.name, p.read_bytes(), tmp_path)
    print(f"[fuzz corpus] {len(files)} inputs replayed")
    assert files, "the regression corpus is empty"
