"""Fixtures of the reliability suite: one parameter per target database, the seed, the rig."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from .harness import Rig, seed_from_env

BACKEND_PARAMS = [
    pytest.param("sqlite"),
    pytest.param("mysql", marks=pytest.mark.mysql),
    pytest.param("postgresql", marks=pytest.mark.postgresql),
]


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    return seed_from_env(request.node.name)


@pytest.fixture
def rng(seed: int) -> random.Random:
    return random.Random(seed)


@pytest.fixture
def make_rig(tmp_path: Path, rng: random.Random):
    """``make_rig(backend, **options)`` -> a started Rig, closed at the end of the test."""
    rigs: list[Rig] = []

    def make(backend: str, **kw) -> Rig:
        rig = Rig(backend, tmp_path / f"rig{len(rigs)}", random.Random(rng.random()), **kw)
        rigs.append(rig)
        return rig.start()

    yield make
    for r in rigs:
        r.close()
