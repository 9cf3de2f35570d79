"""Compliance: every portable type round-trips byte-exact, edge values included, through both load paths."""

from __future__ import annotations

import base64

import pytest

from agent.payload import encode_value
from agent.reconcile import expected_checksum
from agent.schema import parse_columns

from .conftest import apply, read_rows

WIDE = parse_columns([
    ("k", "int32", False), ("i32", "int32", True), ("i64", "int64", True), ("dec", "decimal(38,10)", True),
    ("f", "float64", True), ("b", "bool", True), ("s", "string(12)", True), ("t", "text", True),
    ("d", "date", True), ("tm", "time", True), ("ts", "timestamp", True), ("tz", "timestamptz", True),
    ("u", "uuid", True), ("bin", "binary", True), ("j", "json", True),
], ["k"])

GB18030_ONLY = "㐀䶵𠀀𪛖ᠠཀꀀ"            # Ext A, Ext B, Mongolian, Tibetan, Yi: outside GBK, inside GB18030
LONG_TEXT = ("汉字😀" + GB18030_ONLY + 'quote " comma , NULL \r\n') * 300     # > 4000 characters


def tz(text: str) -> str:
    return encode_value(WIDE.column("tz").type, text)


ROWS = [
    ["1", "-2147483648", "-9223372036854775808", "-9999999999999999999999999999.9999999999",
     "-1.7976931348623157e+308", "0", "", LONG_TEXT, "0001-01-01", "00:00:00.000000",
     "0001-01-01 00:00:00.000000", tz("1970-01-01T00:00:00.000001Z"), "00000000-0000-0000-0000-000000000000",
     "", '{"a":[1,2.5,"中"],"b":null}'],
    ["2", "2147483647", "9223372036854775807", "9999999999999999999999999999.9999999999",
     "5e-324", "1", "😀𠀀" + "x" * 10, "NULL", "9999-12-31", "23:59:59.999999",
     "9999-12-31 23:59:59.999999", tz("9999-12-31T23:59:59.999999+00:00"),
     "ffffffff-ffff-ffff-ffff-ffffffffffff", base64.b64encode(bytes(range(256)) * 400).decode(), "[]"],
    ["3", "0", "0", "0.0000000001", "0.1", "1", 'a"b,c\nd', "", "2024-02-29", "12:34:56.123456",
     "2024-02-29 12:34:56.123456", tz("2024-06-30T23:30:00.5+08:00"), "123e4567-e89b-12d3-a456-426614174000",
     "AA==", '"文本"'],
    ["4", None, None, "0.0000000000", "1e+16", None, "NULL", None, None, None, None, None, None, None, None],
    ["5", "7", "-1", "-0.5000000000", "123456789.12345679", "0", GB18030_ONLY, "x" * 4001, "2000-01-01",
     "00:00:00.000001", "2000-01-01 00:00:00.000000", tz("2000-01-01T08:00:00+08:00"),
     "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", base64.b64encode(b"\x00\xff\x00").decode(), '{"emoji":"😀"}'],
]


def test_wide_snapshot_round_trips(db, table):
    records = [("I", r) for r in ROWS]
    r = apply(db, table, WIDE, "snapshot", 1, records)
    assert read_rows(db, table, WIDE) == {(row[0],): row for row in ROWS}
    assert r.checksum == expected_checksum("snapshot", WIDE, records)
    assert db.table_checksum(table, WIDE).to_dict() == {k: r.checksum[k] for k in ("rows", "sum64")}


def test_wide_changes_round_trip_through_staging(db, table):
    apply(db, table, WIDE, "snapshot", 1, [("I", ROWS[3])])
    records = [("U", r) for r in ROWS] + [("I", ROWS[0])]
    r = apply(db, table, WIDE, "changes", 2, records)
    assert read_rows(db, table, WIDE) == {(row[0],): row for row in ROWS}
    assert (r.inserted, r.updated) == (4, 1)
    assert r.checksum == expected_checksum("changes", WIDE, records)


@pytest.mark.parametrize("reopenable", [True, False])
def test_slow_path_keeps_the_same_values(db, table, reopenable):
    # a NULL key refuses one row on every database: the batch goes through the slow path
    records = [("I", r) for r in ROWS] + [("I", [None] + ROWS[0][1:])]
    r = apply(db, table, WIDE, "snapshot", 1, records, quarantine_limit=0.5, reopenable=reopenable)
    assert r.quarantined == 1
    assert read_rows(db, table, WIDE) == {(row[0],): row for row in ROWS}


@pytest.mark.parametrize("drop", [("f",), ("f", "bin")])   # SQLite spells rows in SQL only without binary
def test_sql_and_python_checksums_agree(db, table, drop):
    no_float = parse_columns([(c.name, str(c.type), c.nullable) for c in WIDE.columns if c.name not in drop], ["k"])
    rows = [[v for c, v in zip(WIDE.names, row) if c not in drop] for row in ROWS]
    apply(db, table, no_float, "snapshot", 1, [("I", r) for r in rows])
    in_sql = db.table_checksum(table, no_float)
    db.checksum_in_sql = False
    try:
        in_python = db.table_checksum(table, no_float)
    finally:
        db.checksum_in_sql = True
    assert in_sql == in_python
    assert in_sql.to_dict() == {k: v for k, v in expected_checksum("snapshot", no_float, [("I", r) for r in rows]).items()
                                if k != "deleted"}


def test_without_the_bulk_path_values_are_the_same(db, table, monkeypatch):
    # MySQL with local_infile off falls back to multi-row INSERTs; every connector has this Python path
    monkeypatch.setattr(db, "_bulk_available", lambda conn: False)
    records = [("I", r) for r in ROWS]
    r = apply(db, table, WIDE, "snapshot", 1, records)
    apply(db, table, WIDE, "changes", 2, [("U", ROWS[1]), ("D", ROWS[0])])
    want = {(row[0],): row for row in ROWS if row[0] != "1"}
    assert read_rows(db, table, WIDE) == want
    assert r.checksum == expected_checksum("snapshot", WIDE, records)
