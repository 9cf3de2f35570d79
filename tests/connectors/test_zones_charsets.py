"""Compliance: no hour shifts between an agent in Asia/Shanghai and a UTC database; charsets checked first."""

from __future__ import annotations

import os
import time

import pytest
import sqlalchemy as sa

import connectors
from agent.errors import DatabaseConfigError
from agent.schema import parse_columns

from .conftest import apply, read_rows

TS = parse_columns([("id", "int32", False), ("tz", "timestamptz", True), ("ts", "timestamp", True),
                    ("d", "date", True)], ["id"])


@pytest.fixture
def shanghai():
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Shanghai"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()


def test_no_hour_shift_with_the_agent_in_shanghai(db, table, shanghai):
    assert time.strftime("%z") == "+0800"
    rows = [["1", "2024-01-01 00:30:00.000000+00:00", "2024-01-01 00:30:00.000000", "2024-01-01"],
            ["2", "2023-12-31 16:30:00.000000+00:00", "2024-01-01 08:30:00.000000", "2023-12-31"]]
    apply(db, table, TS, "snapshot", 1, [("I", r) for r in rows])
    apply(db, table, TS, "changes", 2, [("U", ["3"] + rows[0][1:])])
    assert read_rows(db, table, TS) == {("1",): rows[0], ("2",): rows[1], ("3",): ["3"] + rows[0][1:]}
    # what another client sees in UTC: the same instants and wall-clock times, not shifted by 8 hours
    if db.name == "postgresql":
        sql = f"SELECT to_char(tz AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), to_char(ts, 'YYYY-MM-DD HH24:MI') " \
              f"FROM {db.qname(table)} WHERE id = 1"
    elif db.name == "mysql":
        sql = f"SELECT DATE_FORMAT(tz, '%%Y-%%m-%%d %%H:%%i'), DATE_FORMAT(ts, '%%Y-%%m-%%d %%H:%%i') " \
              f"FROM {db.qname(table)} WHERE id = 1"
    else:
        sql = f"SELECT substr(tz, 1, 16), substr(ts, 1, 16) FROM {db.qname(table)} WHERE id = 1"
    with db.engine.connect() as c:
        assert tuple(c.exec_driver_sql(sql).one()) == ("2024-01-01 00:30", "2024-01-01 00:30")


def test_four_byte_and_gb18030_characters_survive(db, table):
    s = parse_columns([("id", "string(8)", False), ("v", "text", True)], ["id"])
    text = "😀🀄𠀀𪛖㐀䶵ᠠཀꀀ€￥"
    apply(db, table, s, "snapshot", 1, [("I", ["𠀀😀", text])])
    assert read_rows(db, table, s) == {("𠀀😀",): ["𠀀😀", text]}


def test_mysql_connection_not_utf8mb4_is_refused(db, table):
    if db.name != "mysql":
        pytest.skip("connection character sets are a MySQL setting")
    url = db.engine.url.update_query_dict({"charset": "utf8"}).render_as_string(hide_password=False)
    other = connectors.connect(url)
    try:
        with pytest.raises(DatabaseConfigError, match="utf8mb4"):
            apply(other, table, TS, "snapshot", 1, [("I", ["1", None, None, None])])
        assert [i for i in other.probe() if i.name == "mysql:connection_charset" and not i.ok]
    finally:
        other.close()


def test_mysql_table_not_utf8mb4_is_refused_before_writing(db, table):
    if db.name != "mysql":
        pytest.skip("table character sets are a MySQL setting")
    s = parse_columns([("id", "int32", False), ("v", "string(10)", True)], ["id"])
    apply(db, table, s, "snapshot", 1, [("I", ["1", "a"])])
    with db.engine.begin() as c:
        c.exec_driver_sql(f"ALTER TABLE {db.qname(table)} CONVERT TO CHARACTER SET utf8mb3")
    with pytest.raises(DatabaseConfigError, match="utf8mb4"):
        apply(db, table, s, "changes", 2, [("I", ["2", "😀"])])
    assert read_rows(db, table, s) == {("1",): ["1", "a"]}
    assert db.get_checkpoint(table).seq == 1


def test_postgresql_database_not_utf8_is_refused(db, table):
    if db.name != "postgresql":
        pytest.skip("database encodings are checked this way on PostgreSQL")
    admin = sa.create_engine(db.engine.url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = "edx_t_latin1_" + table[2:]
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
    other = connectors.connect(db.engine.url.set(database=name).render_as_string(hide_password=False))
    try:
        assert [i for i in other.probe() if i.name == "postgresql:server_encoding" and not i.ok]
        with pytest.raises(DatabaseConfigError, match="UTF8"):
            apply(other, table, TS, "snapshot", 1, [("I", ["1", None, None, None])])
    finally:
        other.close()
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
        admin.dispose()
