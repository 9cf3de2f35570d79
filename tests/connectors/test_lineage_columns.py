"""Optional per-row lineage columns (_edx_batch, _edx_applied_at): off by default, on by option.

On, every row a batch writes carries that batch's seq and the time it was applied; rows a change batch
did not touch keep theirs; a table made before the option was turned on gets the columns on the next batch.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from agent.reconcile import expected_checksum
from agent.schema import parse_columns

from .conftest import apply, read_rows

S = parse_columns([("id", "int32", False), ("name", "string(20)", True)], ["id"])


def stamps(db, table):
    with db.engine.connect() as c:
        rows = c.exec_driver_sql(f"SELECT {db.q('id')}, {db.q('_edx_batch')}, {db.q('_edx_applied_at')} "
                                 f"FROM {db.qname(table)} ORDER BY 1").all()
    return {int(r[0]): (None if r[1] is None else int(r[1]), r[2]) for r in rows}


def columns(db, table):
    sch, name = db._names(table, None)
    with db.engine.connect() as c:
        return [col["name"].lower() for col in sa.inspect(c).get_columns(name, schema=sch)]


def test_off_by_default_the_table_has_only_the_dataset_columns(db, table):
    apply(db, table, S, "snapshot", 1, [("I", ["1", "a"])])
    assert columns(db, table) == ["id", "name"]


def test_on_every_written_row_carries_its_batch_and_time(db, table):
    db.lineage_columns = True
    try:
        before = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None, microsecond=0)
        snap = [("I", [str(i), f"n{i}"]) for i in range(1, 6)]
        r = apply(db, table, S, "snapshot", 1, snap, expected_checksum=expected_checksum("snapshot", S, snap))
        assert r.checksum["rows"] == 5   # the extra columns are not part of the figure
        assert columns(db, table) == ["id", "name", "_edx_batch", "_edx_applied_at"]
        first = stamps(db, table)
        assert {k: v[0] for k, v in first.items()} == {i: 1 for i in range(1, 6)}
        at = first[1][1]
        at = dt.datetime.fromisoformat(at) if isinstance(at, str) else at
        assert before <= at.replace(tzinfo=None) <= before + dt.timedelta(minutes=5)
        changes = [("U", ["2", "改"]), ("I", ["9", "新"]), ("D", ["3", None]), ("U", ["4", "x"]), ("D", ["4", None])]
        apply(db, table, S, "changes", 2, changes,
              expected_checksum=expected_checksum("changes", S, changes))
        second = stamps(db, table)
        assert {k: v[0] for k, v in second.items()} == {1: 1, 2: 2, 5: 1, 9: 2}
        assert second[1] == first[1]   # untouched rows keep their stamp
        assert read_rows(db, table, S)[("2",)] == ["2", "改"]
    finally:
        db.lineage_columns = False


def test_a_table_made_before_the_option_gets_the_columns_on_the_next_batch(db, table):
    apply(db, table, S, "snapshot", 1, [("I", ["1", "a"]), ("I", ["2", "b"])])
    db.lineage_columns = True
    try:
        apply(db, table, S, "changes", 2, [("U", ["2", "bb"])])
        assert stamps(db, table) == {1: (None, None), 2: (2, stamps(db, table)[2][1])}
        assert stamps(db, table)[2][1] is not None
        assert db.plan_schema(table, S) == []   # the extra columns are not a schema change
    finally:
        db.lineage_columns = False
