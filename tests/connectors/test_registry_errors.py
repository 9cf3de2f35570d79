"""Registry, lazy drivers and classify(): driver errors land in the project's tree, transient or terminal."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

import connectors
from agent.errors import (DataError, DatabaseBusy, DatabaseConfigError, DatabasePermission, DatabaseUnavailable,
                          DriverMissing, UnknownConnector, is_transient)
from connectors.sqlite import SQLiteConnector


@pytest.mark.parametrize("url,name", [
    ("sqlite:///x.db", "sqlite"), ("sqlite+pysqlite:///x.db", "sqlite"), ("mysql+pymysql://h/d", "mysql"),
    ("mariadb://h/d", "mysql"), ("postgresql+psycopg://h/d", "postgresql"), ("postgres://h/d", "postgresql"),
    ("oracle+oracledb://h/d", "oracle"), ("mssql+pyodbc://h/d", "sqlserver"),
])
def test_scheme_picks_the_connector(url, name):
    assert connectors.scheme_of(url) == name


def test_builtins_come_from_entry_points():
    assert {"sqlite", "mysql", "postgresql", "oracle", "sqlserver"} <= set(connectors.available())
    assert connectors.load("sqlite") is SQLiteConnector


def test_unknown_scheme_lists_the_known_ones():
    with pytest.raises(UnknownConnector) as e:
        connectors.connect("db2://host/db")
    assert "mysql://" in e.value.remedy_text and "postgresql://" in e.value.remedy_text


def test_register_overrides_and_missing_driver_names_the_install_line(tmp_path):
    class Fake(SQLiteConnector):
        name = "fake"
        driver = "edx_no_such_driver_module"
        install_hint = "pip install 'edx-agent[fake]'"
    connectors.register("sqlite", Fake)
    try:
        with pytest.raises(DriverMissing) as e:
            connectors.connect(f"sqlite:///{tmp_path}/x.db")
        assert "pip install 'edx-agent[fake]'" in e.value.remedy_text
        with pytest.raises(DriverMissing):
            connectors.connector_class(f"sqlite:///{tmp_path}/x.db")
    finally:
        connectors.unregister("sqlite")
    assert isinstance(connectors.connect(f"sqlite:///{tmp_path}/x.db"), SQLiteConnector)


def _err(conn):
    with pytest.raises(Exception) as e:
        conn.get_checkpoint("x")
    return e.value


def test_server_errors_are_classified(db):
    url = db.engine.url
    if db.name == "sqlite":
        bad = connectors.connect("sqlite:////nonexistent-dir/x/y.db")
        assert isinstance(_err(bad), DatabaseUnavailable)
        return
    refused = connectors.connect(url.set(host="127.0.0.1", port=1).render_as_string(hide_password=False))
    e = _err(refused)
    assert isinstance(e, DatabaseUnavailable) and is_transient(e)
    unknown = connectors.connect(url.set(database="edx_no_such_db").render_as_string(hide_password=False))
    e = _err(unknown)
    assert isinstance(e, DatabaseConfigError) and not is_transient(e)
    who = url.set(username="edx_nobody", password="wrong") if db.name == "mysql" else url.set(username="edx_nobody")
    e = _err(connectors.connect(who.render_as_string(hide_password=False)))
    assert isinstance(e, DatabasePermission) and not is_transient(e)


def test_lock_timeout_is_busy_and_transient(db, table):
    with db.engine.begin() as c:
        c.exec_driver_sql(f"CREATE TABLE {db.qname(table)} (id INT PRIMARY KEY)")
        c.exec_driver_sql(f"INSERT INTO {db.qname(table)} VALUES (1)")
    holder = db.engine.connect()
    other = sa.create_engine(db.engine.url, connect_args={"timeout": 0.2} if db.name == "sqlite" else {})
    try:
        holder.exec_driver_sql(f"UPDATE {db.qname(table)} SET id = 1 WHERE id = 1")   # holds the lock
        with other.connect() as c:
            if db.name == "mysql":
                c.exec_driver_sql("SET SESSION innodb_lock_wait_timeout = 1")
            elif db.name == "postgresql":
                c.exec_driver_sql("SET lock_timeout = '200ms'")
            with pytest.raises(sa.exc.DBAPIError) as e:
                c.exec_driver_sql(f"UPDATE {db.qname(table)} SET id = 1 WHERE id = 1")
        err = db.classify(e.value)
        assert isinstance(err, DatabaseBusy) and is_transient(err)
    finally:
        holder.rollback()
        holder.close()
        other.dispose()


def test_probe_reports_every_step(db):
    items = db.probe()
    names = [i.name for i in items]
    assert names[0] == "connect" and all(i.ok for i in items if i.name.startswith(("connect", "privilege:")))
    for step in ("create", "insert", "update", "delete", "staging", "rename", "drop"):
        assert f"privilege:{step}" in names
    assert all(i.remedy for i in items if not i.ok)
    with db.engine.connect() as c:
        assert not [n for n in sa.inspect(c).get_table_names() if n.startswith("edx_probe")]


def test_probe_names_the_missing_grant(db, table):
    if db.name == "sqlite":
        pytest.skip("SQLite has no accounts")
    user = "edx_ro_" + table[2:]
    with db.engine.begin() as c:
        if db.name == "mysql":
            c.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY 'pw'")
            c.exec_driver_sql(f"GRANT SELECT ON `{db.engine.url.database}`.* TO '{user}'@'%%'")
        else:
            c.exec_driver_sql(f'CREATE ROLE "{user}" LOGIN')
            c.exec_driver_sql('REVOKE CREATE ON SCHEMA public FROM PUBLIC')
    ro = connectors.connect(db.engine.url.set(username=user, password="pw").render_as_string(hide_password=False))
    try:
        items = {i.name: i for i in ro.probe()}
        assert items["connect"].ok and not items["privilege:create"].ok
        assert "GRANT" in items["privilege:create"].remedy and user in items["privilege:create"].remedy
    finally:
        ro.close()
        with db.engine.begin() as c:
            c.exec_driver_sql(f"DROP USER '{user}'@'%%'" if db.name == "mysql" else f'DROP ROLE "{user}"')


def test_code_tables_map_each_code_to_one_class():
    from connectors import mysql, oracle, sqlserver
    from connectors._errors import CodeTable

    assert mysql._CODES.get(1213) is DatabaseBusy and mysql._CODES.get(1045) is DatabasePermission
    assert oracle._CODES.get("ORA-03113") is DatabaseUnavailable and oracle._CODES.get("ORA-12899") is DataError
    assert sqlserver._CODES.get(1205) is DatabaseBusy and sqlserver._CODES.get(4060) is DatabaseConfigError
    assert mysql._CODES.get(None) is None and mysql._CODES.get(99999) is None
    with pytest.raises(ValueError, match="1205"):
        CodeTable(busy={1205}, data={1205})


class _OdbcError(Exception):
    pass


@pytest.mark.parametrize("args, cls", [
    (("40001", "[40001] [Microsoft][ODBC Driver 18 for SQL Server]deadlock (1205) (SQLExecDirectW)"), DatabaseBusy),
    (("42000", "[42000] Cannot open database \"x\" (4060) (SQLDriverConnect)"), DatabaseConfigError),
    (("28000", "[28000] Login failed (SQLDriverConnect)"), DatabasePermission),
    (("08S01", "[08S01] Communication link failure (SQLExecDirectW)"), DatabaseUnavailable),
    (("22001", "[22001] String data, right truncation (SQLExecDirectW)"), DataError),
    (("42S02", "[42S02] Invalid object name 'x'. (208) (SQLExecDirectW)"), None),
])
def test_sqlserver_native_number_first_then_sqlstate(args, cls):
    from connectors.sqlserver import SQLServerConnector
    assert SQLServerConnector._error_class(None, _OdbcError(*args)) is cls  # type: ignore[arg-type]
