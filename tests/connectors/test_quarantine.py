"""Compliance: rows the database refuses go to edx_quarantine within the limit; above it nothing is written."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from agent.errors import QuarantineLimitExceeded
from agent.reconcile import expected_checksum
from agent.schema import parse_columns

from .conftest import apply, read_rows

SCHEMA = parse_columns([("id", "string(10)", False), ("code", "string(4)", True), ("n", "int32", True),
                        ("req", "string(10)", False)], ["id"])


def good(i: int) -> list[str | None]:
    return [f"k{i:04d}", "ab", str(i), "r"]


BAD = {  # one row the database must refuse per reason, on every connector
    "too long": ["bad1", "abcdef", "1", "r"],
    "int32 overflow": ["bad2", "ab", "2147483648", "r"],
    "null in NOT NULL": ["bad3", "ab", "3", None],
}


def quarantined(db, dataset: str) -> list[dict]:
    t = db._meta()["edx_quarantine"]
    with db.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.select(t).where(t.c.dataset == dataset).order_by(t.c.n))]


@pytest.mark.parametrize("kind", ["snapshot", "changes"])
def test_bad_rows_below_the_limit_are_quarantined_and_the_rest_commits(db, table, kind):
    records = [("I", good(i)) for i in range(100)] + [("I", r) for r in BAD.values()]
    r = apply(db, table, SCHEMA, kind, 1, records, quarantine_limit=0.05)
    assert (r.quarantined, r.rows) == (3, 103)
    assert read_rows(db, table, SCHEMA) == {(f"k{i:04d}",): good(i) for i in range(100)}
    q = quarantined(db, table)
    assert sorted(json.loads(e["key_json"])["id"] for e in q) == ["bad1", "bad2", "bad3"]
    assert all(e["seq"] == 1 and e["reason"] and e["row_text"].startswith("I,") for e in q)
    by_key = {json.loads(e["key_json"])["id"]: e for e in q}
    assert by_key["bad3"]["column_name"] == "req"
    assert db.get_checkpoint(table).seq == 1
    assert r.checksum["quarantined"] == 3


@pytest.mark.parametrize("kind", ["snapshot", "changes"])
def test_above_the_limit_nothing_is_written(db, table, kind):
    apply(db, table, SCHEMA, "snapshot", 1, [("I", good(i)) for i in range(5)])
    before = read_rows(db, table, SCHEMA)
    records = [("I", good(i)) for i in range(10, 110)] + [("U", good(0)[:2] + ["999", "r"])] + \
        [("I", r) for r in BAD.values()]
    with pytest.raises(QuarantineLimitExceeded):
        apply(db, table, SCHEMA, kind, 2, records, quarantine_limit=0.02)   # 2 allowed, 3 bad
    assert read_rows(db, table, SCHEMA) == before
    assert db.get_checkpoint(table).seq == 1
    assert quarantined(db, table) == []


def test_zero_limit_refuses_a_single_bad_row(db, table):
    with pytest.raises(QuarantineLimitExceeded):
        apply(db, table, SCHEMA, "changes", 1, [("I", good(1)), ("I", BAD["too long"])], quarantine_limit=0)
    assert db.get_checkpoint(table) is None


def test_a_key_with_a_refused_change_keeps_its_row(db, table):
    apply(db, table, SCHEMA, "snapshot", 1, [("I", good(1)), ("I", good(2))])
    r = apply(db, table, SCHEMA, "changes", 2, [("U", ["k0001", "toolong", "1", "r"]), ("U", ["k0002", "zz", "5", "r"])],
              quarantine_limit=0.5)
    assert r.quarantined == 1 and r.updated == 1
    rows = read_rows(db, table, SCHEMA)
    assert rows[("k0001",)] == good(1) and rows[("k0002",)] == ["k0002", "zz", "5", "r"]


def test_rows_refused_by_a_target_constraint_at_merge(db, table):
    apply(db, table, SCHEMA, "snapshot", 1, [("I", good(1))])
    try:
        with db.engine.begin() as c:
            c.exec_driver_sql(f"ALTER TABLE {db.qname(table)} ADD CONSTRAINT n_positive CHECK (n >= 0)")
    except sa.exc.DBAPIError:
        pytest.skip(f"{db.name} cannot add a CHECK constraint to an existing table")
    r = apply(db, table, SCHEMA, "changes", 2, [("I", good(2)), ("I", ["neg", "ab", "-5", "r"]), ("U", good(3))],
              quarantine_limit=0.5)
    assert r.quarantined == 1 and r.inserted == 2
    assert set(read_rows(db, table, SCHEMA)) == {("k0001",), ("k0002",), ("k0003",)}
    # key by key, the figure still covers exactly the rows that were upserted
    want = expected_checksum("changes", SCHEMA, [("I", good(2)), ("U", good(3))])
    assert (r.checksum["rows"], r.checksum["sum64"]) == (want["rows"], want["sum64"])
    assert [json.loads(e["key_json"])["id"] for e in quarantined(db, table)] == ["neg"]


@pytest.mark.parametrize("kind", ["snapshot", "changes"])
def test_an_int64_beyond_64_bits_is_quarantined_not_a_crash(db, table, kind):
    wide = parse_columns([("id", "string(10)", False), ("big", "int64", True)], ["id"])
    records = [("I", ["a", "9223372036854775807"]), ("I", ["b", "9223372036854775808"]),
               ("I", ["c", "-9223372036854775809"]), ("I", ["d", "-9223372036854775808"])]
    r = apply(db, table, wide, kind, 1, records, quarantine_limit=0.5)
    assert r.quarantined == 2
    assert read_rows(db, table, wide) == {("a",): ["a", "9223372036854775807"], ("d",): ["d", "-9223372036854775808"]}


@pytest.mark.parametrize("kind", ["snapshot", "changes"])
@pytest.mark.parametrize("bad", [["NaN", "inf", "-Infinity"], ["NaN", "1e400"]], ids=["stored-by-copy", "overflow"])
def test_nan_and_infinity_are_quarantined(db, table, kind, bad):
    # the platform never publishes them (not portable); a batch that holds one must not store them.
    # PostgreSQL's COPY takes NaN and the infinities (first case) but refuses 1e400 (second case).
    sch = parse_columns([("id", "string(10)", False), ("f", "float64", True)], ["id"])
    records = [("I", ["a", "1.5"])] + [("I", [f"b{i}", v]) for i, v in enumerate(bad)] + [("I", ["g", "-0.25"])]
    r = apply(db, table, sch, kind, 1, records, quarantine_limit=0.9)
    assert r.quarantined == len(bad)
    assert read_rows(db, table, sch) == {("a",): ["a", "1.5"], ("g",): ["g", "-0.25"]}
