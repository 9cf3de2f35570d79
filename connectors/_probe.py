"""Probe placeholder (filled in later)."""
from __future__ import annotations
from typing import Any


def run_probe(connector: Any, schema_name: str | None) -> list:
    return []
