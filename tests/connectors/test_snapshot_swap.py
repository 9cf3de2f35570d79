"""Compliance: a snapshot replaces the table atomically for readers and recovers from interruptions."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from agent.schema import parse_columns

from .conftest import apply, read_rows

S = parse_columns([("id", "int64", False), ("v", "string(20)", True)], ["id"])


def rows(n: int, tag: str) -> list[tuple[str, list[str | None]]]:
    return [("I", [str(i), f"{tag}{i}"]) for i in range(n)]


def test_concurrent_reader_sees_old_or_new_table_only(db, table):
    apply(db, table, S, "snapshot", 1, rows(1000, "old"))
    reader = sa.create_engine(db.engine.url)
    seen: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        with reader.connect() as c:
            while not stop.is_set():
                try:
                    seen.append(int(c.exec_driver_sql(f"SELECT COUNT(*) FROM {db.qname(table)}").scalar()))
                    c.rollback()
                except Exception as e:  # noqa: BLE001 - collected and asserted below
                    errors.append(e)
                    c.rollback()

    t = threading.Thread(target=read)
    t.start()
    try:
        apply(db, table, S, "snapshot", 2, rows(30000, "new"))
        apply(db, table, S, "snapshot", 3, rows(1000, "again"))
    finally:
        stop.set()
        t.join()
        reader.dispose()
    assert errors == []
    assert set(seen) <= {1000, 30000} and seen


def test_a_leftover_shadow_table_is_dropped_and_the_snapshot_restarts(db, table):
    apply(db, table, S, "snapshot", 1, rows(3, "a"))
    with db.engine.begin() as c:
        c.exec_driver_sql(f"CREATE TABLE {db.qname(db.aux_name('new', table))} (junk INT)")
    apply(db, table, S, "snapshot", 2, rows(5, "b"))
    assert len(read_rows(db, table, S)) == 5


def test_crash_between_load_and_checkpoint(db, table, monkeypatch):
    apply(db, table, S, "snapshot", 1, rows(3, "a"))
    real = type(db)._finish_batch

    def crash(*a, **k):
        raise KeyboardInterrupt("power cut before the checkpoint is written")
    monkeypatch.setattr(type(db), "_finish_batch", crash)
    with pytest.raises(KeyboardInterrupt):
        apply(db, table, S, "snapshot", 2, rows(5, "b"))
    monkeypatch.setattr(type(db), "_finish_batch", real)
    assert db.get_checkpoint(table).seq == 1
    got = read_rows(db, table, S)
    if db.capabilities.transactional_ddl:
        assert len(got) == 3            # rolled back with the checkpoint: the old table is live
    else:
        assert len(got) == 5            # MySQL: RENAME committed by itself; the checkpoint was not
    # the agent applies the same batch again after the restart: idempotent either way
    r = apply(db, table, S, "snapshot", 2, rows(5, "b"))
    assert read_rows(db, table, S) == {(str(i),): [str(i), f"b{i}"] for i in range(5)}
    assert db.get_checkpoint(table).seq == 2 and r.inserted == 5
    with db.engine.connect() as c:
        names = sa.inspect(c).get_table_names()
    assert not [n for n in names if n.startswith(("edx_new_", "edx_old_", "edx_stg_"))]


def test_purge_and_drop(db, table):
    apply(db, table, S, "snapshot", 1, rows(4, "a"))
    assert db.purge(table, table) == 4
    assert db.get_checkpoint(table) is None and read_rows(db, table, S) == {}
    db.drop_table(table)
    assert db.plan_schema(table, S)[0].startswith("CREATE TABLE")


def test_sandbox_schema(db, table):
    if not db.capabilities.schemas:
        name = "sbx"                         # SQLite: the sandbox is a name prefix
    else:
        name = "edx_sbx_" + table[2:]
        stmt = f"CREATE DATABASE {name}" if db.name == "mysql" else f"CREATE SCHEMA {name}"
        with db.engine.begin() as c:
            c.exec_driver_sql(stmt)
    apply(db, table, S, "snapshot", 1, rows(2, "s"), schema_name=name)
    apply(db, table, S, "changes", 2, [("U", ["1", "x"])], schema_name=name)
    assert read_rows(db, table, S, name) == {("0",): ["0", "s0"], ("1",): ["1", "x"]}
    assert db.get_checkpoint(table).seq == 2
    assert db.table_checksum(table, S, name).count == 2
    if db.capabilities.schemas:
        with db.engine.begin() as c:
            c.exec_driver_sql(f"DROP {'DATABASE' if db.name == 'mysql' else 'SCHEMA'} {name}"
                              f"{'' if db.name == 'mysql' else ' CASCADE'}")
