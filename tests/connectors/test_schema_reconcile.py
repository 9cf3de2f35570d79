"""Compliance: schema plan and safe evolution, refusals that need a resync, reconciliation mismatches."""

from __future__ import annotations

import pytest

import connectors

from agent.errors import ReconciliationError, SchemaConflict
from agent.reconcile import expected_checksum
from agent.schema import parse_columns

from .conftest import apply, read_rows

V1 = parse_columns([("id", "int32", False), ("name", "string(10)", True), ("amt", "decimal(10,2)", True)], ["id"])


def test_plan_for_a_new_table_is_its_create_statement(db, table):
    ddl = db.plan_schema(table, V1)
    assert len(ddl) == 1 and ddl[0].startswith("CREATE TABLE") and table in ddl[0]
    assert db.plan_schema(table, V1) == ddl   # planning writes nothing


def test_safe_evolution_adds_columns_and_widens(db, table):
    apply(db, table, V1, "snapshot", 1, [("I", ["1", "short", "1.50"])])
    assert db.plan_schema(table, V1) == []
    widen_ok = db.name != "sqlite"   # SQLite keeps decimals as canonical text: scale changes are in place too
    v2 = parse_columns([("id", "int64", False), ("name", "string(40)", True), ("amt", "decimal(12,3)", True),
                        ("note", "text", True)], ["id"])
    ddl = db.plan_schema(table, v2)
    assert any("note" in s for s in ddl)
    assert (len(ddl) >= 2) == widen_ok
    r = apply(db, table, v2, "changes", 2, [("I", ["5000000000", "a much longer name", "12.345", "新列"])])
    assert r.inserted == 1
    assert read_rows(db, table, v2) == {("1",): ["1", "short", "1.500", None],
                                         ("5000000000",): ["5000000000", "a much longer name", "12.345", "新列"]}
    assert db.plan_schema(table, v2) == []   # remembered in edx_schema
    # the whole-table figure spells the old decimal at the new scale (SQLite re-spells "1.50" as "1.500")
    final = [("I", ["1", "short", "1.500", None]), ("I", ["5000000000", "a much longer name", "12.345", "新列"])]
    assert db.table_checksum(table, v2).to_dict() == {
        k: v for k, v in expected_checksum("snapshot", v2, final).items() if k != "deleted"}


@pytest.mark.parametrize("change", [
    [("id", "int32", False), ("name", "int32", True), ("amt", "decimal(10,2)", True)],          # type change
    [("id", "int32", False), ("name", "string(5)", True), ("amt", "decimal(10,2)", True)],       # narrowing
    [("id", "int32", False), ("name", "string(10)", True)],                                      # dropped column
    [("id", "int32", False), ("name", "string(10)", True), ("amt", "decimal(10,2)", True),
     ("must", "int32", False)],                                                                  # new NOT NULL
])
def test_unsafe_changes_are_refused_and_need_a_snapshot(db, table, change):
    apply(db, table, V1, "snapshot", 1, [("I", ["1", "a", "1.00"])])
    new = parse_columns(change, ["id"])
    with pytest.raises(SchemaConflict):
        db.plan_schema(table, new)
    row = ["2"] + [("3" if t.startswith("int") else "1.00" if t.startswith("dec") else "b") for _, t, _ in change[1:]]
    with pytest.raises(SchemaConflict):
        apply(db, table, new, "changes", 2, [("I", row)])
    assert db.get_checkpoint(table).seq == 1
    # the remedy: a snapshot takes any schema
    apply(db, table, new, "snapshot", 2, [("I", row)])
    assert list(read_rows(db, table, new)) == [("2",)]


def test_primary_key_change_is_refused(db, table):
    apply(db, table, V1, "snapshot", 1, [("I", ["1", "a", "1.00"])])
    with pytest.raises(SchemaConflict):
        db.plan_schema(table, parse_columns([(c.name, str(c.type), False) for c in V1.columns], ["id", "name"]))


def test_a_table_not_created_by_the_agent_is_not_adopted(db, table):
    with db.engine.begin() as c:
        c.exec_driver_sql(f"CREATE TABLE {db.qname(table)} (id INT PRIMARY KEY)")
    with pytest.raises(SchemaConflict):
        apply(db, table, V1, "changes", 1, [("I", ["1", "a", "1.00"])])
    apply(db, table, V1, "snapshot", 1, [("I", ["1", "a", "1.00"])])   # a snapshot replaces it
    assert list(read_rows(db, table, V1)) == [("1",)]


@pytest.mark.parametrize("kind", ["snapshot", "changes"])
def test_reconciliation_matches_or_rolls_back(db, table, kind):
    apply(db, table, V1, "snapshot", 1, [("I", ["1", "a", "1.00"])])
    before = read_rows(db, table, V1)
    records = [("I", ["2", "b", "2.00"]), ("D", ["1", None, None])] if kind == "changes" else [("I", ["2", "b", "2.00"])]
    good = expected_checksum(kind, V1, records)
    for wrong in ({**good, "sum64": "0" * 16}, {**good, "rows": good["rows"] + 1}, {**good, "deleted": 7}):
        with pytest.raises(ReconciliationError):
            apply(db, table, V1, kind, 2, records, expected_checksum=wrong)
        assert read_rows(db, table, V1) == before
        assert db.get_checkpoint(table).seq == 1
    r = apply(db, table, V1, kind, 2, records, expected_checksum=good)
    assert r.checksum == good


def test_a_snapshot_checksum_split_over_two_connections_equals_the_whole(db, table):
    """MySQL hashes a committed shadow in two key ranges at once; the halves must add up to the figure."""
    records = [("I", [str(i), f"n{i}" if i % 7 else None, f"{i}.25"]) for i in range(1, 401)]
    good = expected_checksum("snapshot", V1, records)
    db.split_checksum_rows = 10   # force the split on a small table
    try:
        r = apply(db, table, V1, "snapshot", 1, records, expected_checksum=good)
        assert r.checksum == good
        bad = {**good, "sum64": "0" * 16}
        with pytest.raises(ReconciliationError):
            apply(db, table, V1, "snapshot", 2, records[:-1], expected_checksum=bad)
        assert db.get_checkpoint(table).seq == 1 and len(read_rows(db, table, V1)) == 400
    finally:
        del db.split_checksum_rows


@pytest.mark.parametrize("kind", ["snapshot", "changes"])
def test_count_reconciliation_compares_counts_and_reads_nothing_back(db, table, kind, monkeypatch):
    """sync.reconcile = "count": no pass over the rows, but a batch whose counts differ is still refused."""
    apply(db, table, V1, "snapshot", 1, [("I", ["1", "a", "1.00"])])
    before = read_rows(db, table, V1)
    records = ([("I", ["2", "b", "2.00"]), ("U", ["3", "c", None]), ("D", ["1", None, None])] if kind == "changes"
               else [("I", ["2", "b", "2.00"]), ("I", ["3", "c", None])])
    good = expected_checksum(kind, V1, records)

    def no_read_back(*_a, **_k):
        raise AssertionError("count reconciliation read rows back")

    monkeypatch.setattr(db, "reconcile", "count")
    for name in ("_checksum", "_checksum_committed", "_hash_sql"):
        monkeypatch.setattr(db, name, no_read_back)
    for wrong in ({**good, "rows": good["rows"] + 1}, {**good, "deleted": good["deleted"] + 1}):
        with pytest.raises(ReconciliationError):
            apply(db, table, V1, kind, 2, records, expected_checksum=wrong)
        assert read_rows(db, table, V1) == before
        assert db.get_checkpoint(table).seq == 1
    # a wrong sum64 is not seen: counts are all this mode compares (the hub still holds the receipt's counts)
    r = apply(db, table, V1, kind, 2, records, expected_checksum={**good, "sum64": "0" * 16})
    assert r.checksum == {"rows": good["rows"], "deleted": good["deleted"]}
    assert set(read_rows(db, table, V1)) == {("2",), ("3",)}


def test_an_unknown_reconcile_mode_is_refused(db):
    with pytest.raises(ValueError, match="reconcile"):
        connectors.connect(db.url, reconcile="sometimes")
