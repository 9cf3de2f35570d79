"""Database faults made by a DBA or another program: a revoked privilege, a column too narrow for the data,
a table locked by another session, the target table's schema changed behind the agent's back.

Outcome required each time: nothing half-written (the target holds exactly the published state at its
checkpoint, no helper table with rows), a clear coded status, and the agent resumes by itself once the
fault is transient or has been put right.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from .harness import assert_clean_exit

MYSQL = pytest.param("mysql", marks=pytest.mark.mysql)
PG = pytest.param("postgresql", marks=pytest.mark.postgresql)


def refused(rig, *codes: str, oracle: bool = True) -> str:
    before = (rig.target.rows("student"), rig.target.checkpoint("student"))
    run = rig.sync()
    assert_clean_exit(run)
    assert run.returncode != 0, run.text
    text = run.stdout + run.stderr
    got = next((c for c in codes if c in text), None)
    assert got, f"expected one of {codes}\n{run.text}"
    assert (rig.target.rows("student"), rig.target.checkpoint("student")) == before, "half-written"
    st = rig.status()["datasets"]["student"]
    assert st["last_error"]["code"] == got, st
    if oracle:
        rig.check()
    return got


@pytest.mark.mysql
def test_revoked_privilege_then_granted_again(make_rig, tmp_path):
    from tests.conftest import MYSQL_URL

    user, pw = "edx_r_" + uuid.uuid4().hex[:8], uuid.uuid4().hex
    rig = make_rig("mysql")
    db = sa.engine.make_url(rig.db_url).database
    admin = sa.create_engine(MYSQL_URL, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE USER '{user}'@'%%' IDENTIFIED BY '{pw}'")
            c.exec_driver_sql(f"GRANT ALL ON `{db}`.* TO '{user}'@'%%'")
        (tmp_path / "dbpw").write_text(pw)
        (tmp_path / "dbpw").chmod(0o600)
        url = sa.engine.make_url(rig.db_url).set(username=user, password=None).render_as_string(hide_password=False)
        rig.write_config(database={"url": url, "password_file": str(tmp_path / "dbpw")})
        rig.publish("snapshot")
        rig.recover()
        with admin.begin() as c:
            c.exec_driver_sql(f"REVOKE INSERT, UPDATE, DELETE ON `{db}`.* FROM '{user}'@'%%'")
        rig.publish("changes")
        refused(rig, "database-permission-denied")
        with admin.begin() as c:
            c.exec_driver_sql(f"GRANT ALL ON `{db}`.* TO '{user}'@'%%'")
        rig.recover()
        rig.check(complete=True)
    finally:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'%%'")
        admin.dispose()


@pytest.mark.parametrize("backend", [MYSQL, pytest.param("postgresql", marks=[pytest.mark.postgresql, pytest.mark.slow])])
def test_column_narrowed_by_a_dba(backend, make_rig):
    """Values too long for the column: a few are quarantined (limit 1 %), many refuse the batch whole."""
    rig = make_rig(backend, base_rows=400)
    rig.publish("snapshot")
    rig.recover()
    with rig.target.engine.begin() as c:
        if backend == "mysql":  # non-strict for the DBA's own statement: existing names are cut
            c.exec_driver_sql("SET SESSION sql_mode = ''")
            c.exec_driver_sql("ALTER TABLE student MODIFY name VARCHAR(2) NOT NULL")
        else:
            c.exec_driver_sql("ALTER TABLE student ALTER COLUMN name TYPE VARCHAR(2)"
                              " USING substr(name, 1, 2)")
    # names are 2 or 3 characters: about half of a changes batch no longer fits -> over the 1 % limit
    rig.publish("changes", rows=200)
    refused(rig, "quarantine-limit-exceeded", oracle=False)
    with rig.target.engine.begin() as c:
        if backend == "mysql":
            c.exec_driver_sql("ALTER TABLE student MODIFY name VARCHAR(32) NOT NULL")
        else:
            c.exec_driver_sql("ALTER TABLE student ALTER COLUMN name TYPE VARCHAR(32)")
    # the DBA undid the change: the same batch now applies (the first snapshot's names were cut to 2
    # characters by the PostgreSQL ALTER's USING clause; the next snapshot puts them right)
    rig.recover()
    rig.publish("snapshot")
    rig.recover()
    rig.check(complete=True)


@pytest.mark.parametrize("backend", [pytest.param("sqlite", marks=pytest.mark.slow), MYSQL, PG])
def test_table_locked_by_another_session(backend, make_rig):
    """Another session holds the table for a few seconds: the agent waits or backs off, then applies once."""
    rig = make_rig(backend)
    rig.publish("snapshot")
    rig.recover()
    if backend == "postgresql":  # a short lock_timeout for this database only: a coded, transient refusal
        db = sa.engine.make_url(rig.db_url).database
        with rig.target.engine.connect() as c:
            c.exec_driver_sql("COMMIT")
            c.exec_driver_sql(f"ALTER DATABASE {db} SET lock_timeout = '1500ms'")
    rig.publish("changes")
    holder = sa.create_engine(rig.db_url, poolclass=sa.pool.NullPool)
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.connect() as c:
            if backend == "mysql":
                c.exec_driver_sql("LOCK TABLES student WRITE")
            elif backend == "postgresql":
                c.exec_driver_sql("BEGIN")
                c.exec_driver_sql("LOCK TABLE student IN ACCESS EXCLUSIVE MODE")
            else:
                c.exec_driver_sql("BEGIN EXCLUSIVE")
            locked.set()
            release.wait(30)
            c.exec_driver_sql("UNLOCK TABLES" if backend == "mysql" else "COMMIT")
    t = threading.Thread(target=hold)
    t.start()
    try:
        assert locked.wait(30)
        timer = threading.Timer(4.0, release.set)
        timer.start()
        run = rig.sync()
        assert_clean_exit(run)
        if run.returncode != 0:
            assert "database-busy" in run.stdout + run.stderr or "database-unavailable" in run.stdout, run.text
        rig.check()
    finally:
        release.set()
        t.join(30)
        holder.dispose()
    rig.recover()
    rig.check(complete=True)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("mysql", marks=[pytest.mark.mysql, pytest.mark.slow]),
                                     pytest.param("postgresql", marks=[pytest.mark.postgresql, pytest.mark.slow])])
@pytest.mark.parametrize("change", ["drop_column", "add_not_null_column", "rename_table"])
def test_schema_changed_behind_the_agents_back(backend, change, make_rig):
    rig = make_rig(backend)
    rig.publish("snapshot")
    rig.recover()
    with rig.target.engine.begin() as c:
        if change == "drop_column":
            c.exec_driver_sql("ALTER TABLE student DROP COLUMN grade")
        elif change == "add_not_null_column":
            c.exec_driver_sql("ALTER TABLE student ADD COLUMN local_note "
                              + ("TEXT" if backend == "sqlite" else "VARCHAR(10)") + " NOT NULL DEFAULT 'x'")
        else:
            c.exec_driver_sql("ALTER TABLE student RENAME TO student_moved")
    rig.publish("changes")
    before_cp = rig.target.checkpoint("student")
    run = rig.sync()
    assert_clean_exit(run)
    if change == "add_not_null_column" and run.returncode == 0:
        pass   # an extra column with a default is harmless to the agent's statements
    else:
        assert run.returncode != 0, run.text
        code = rig.status()["datasets"]["student"]["last_error"]["code"]
        assert code in ("schema-conflict", "database-error", "data-invalid"), code
        assert rig.target.checkpoint("student") == before_cp
    # the DBA puts it back (or the platform resyncs): the agent resumes
    with rig.target.engine.begin() as c:
        insp = sa.inspect(c)
        if change == "rename_table":
            if insp.has_table("student"):
                c.exec_driver_sql("DROP TABLE student")
            c.exec_driver_sql("ALTER TABLE student_moved RENAME TO student")
        elif change == "drop_column":
            c.exec_driver_sql("ALTER TABLE student ADD COLUMN grade "
                              + ("TEXT" if backend == "sqlite" else "VARCHAR(8)"))
    if change == "drop_column":
        rig.publish("snapshot")   # the dropped values come back with the next snapshot
    rig.recover()
    if change != "add_not_null_column":
        rig.check(complete=True)
    else:
        assert rig.target.checkpoint("student")[0] == rig.streams["student"].seq
        time.sleep(0)
