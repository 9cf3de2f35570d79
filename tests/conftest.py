"""Shared test configuration: the real database servers' URLs and the fail-don't-skip rule in CI."""

from __future__ import annotations

import os
import uuid

import pytest

MYSQL_URL = os.environ.get("EDX_TEST_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/test")
PG_URL = os.environ.get("EDX_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def unavailable(what: str, err: BaseException) -> None:
    """A test that needs a service it cannot reach fails in CI and skips on a developer's machine."""
    msg = f"{what} is not reachable: {err}"
    if IN_CI:
        pytest.fail(msg + " (CI must have every service the tests need)")
    pytest.skip(msg)


def fresh_mysql_database() -> tuple[str, callable]:
    """Create a throw-away MariaDB database; returns its URL and a function that drops it.

    The admin engine keeps no pooled connection (NullPool): a test that restarted the server must
    still be able to drop its database afterwards.
    """
    import sqlalchemy as sa

    name = "edx_t_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(MYSQL_URL, poolclass=sa.pool.NullPool)
    try:
        with admin.begin() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    except Exception as e:  # noqa: BLE001 - any failure to reach the server means the same here
        unavailable("MariaDB", e)
    url = sa.engine.make_url(MYSQL_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.begin() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
    return url, drop


def fresh_pg_database(prefix: str = "edx_t_") -> tuple[str, callable]:
    """The same for PostgreSQL (UTF8, from template0)."""
    import sqlalchemy as sa

    name = prefix + uuid.uuid4().hex[:10]
    admin = sa.create_engine(PG_URL, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as c:
            c.exec_driver_sql(f"CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0")
    except Exception as e:  # noqa: BLE001 - unreachable or refused: same outcome here
        unavailable("PostgreSQL", e)
    url = sa.engine.make_url(PG_URL).set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    return url, drop


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run long tests (reliability long runs)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="long test: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
