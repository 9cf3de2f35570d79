"""The connector's part of ``edx-agent doctor``: connect, privileges tried for real, settings that matter.

Privileges are not read from catalogs (roles, grants through groups and defaults make that unreliable):
the probe creates a scratch table in the target schema, writes, renames and drops it, and creates a
staging table, exactly the statements an apply runs. Each failure names the GRANT that fixes it.
"""

from __future__ import annotations

import uuid
from typing import Any, Callable

import sqlalchemy as sa

from agent.schema import parse_columns

from .api import ProbeItem

SCRATCH = parse_columns([("id", "int32", False), ("v", "string(10)", True)], ["id"])


def run_probe(conn_: Any, schema_name: str | None) -> list[ProbeItem]:
    items: list[ProbeItem] = []
    try:
        with conn_.engine.connect() as c:
            version = c.exec_driver_sql(conn_.version_sql).scalar()
    except Exception as e:  # noqa: BLE001 - every failure is reported as an item
        err = conn_.classify(e)
        items.append(ProbeItem("connect", False, err.text, err.remedy_text))
        return items
    items.append(ProbeItem("connect", True, f"{conn_.name} {version}"))
    items += _privileges(conn_, schema_name)
    try:
        with conn_.engine.connect() as c:
            items += conn_._probe_settings(c, schema_name)
    except Exception as e:  # noqa: BLE001
        err = conn_.classify(e)
        items.append(ProbeItem("settings", False, err.text, err.remedy_text))
    try:
        conn_.ensure_meta_tables()
        items.append(ProbeItem("meta-tables", True, "edx_checkpoint, edx_lineage, edx_quarantine, edx_schema"))
    except Exception as e:  # noqa: BLE001
        err = conn_.classify(e)
        items.append(ProbeItem("meta-tables", False, err.text, conn_.grant_hint("create", schema_name)))
    return items


def _privileges(conn_: Any, schema_name: str | None) -> list[ProbeItem]:
    suffix = uuid.uuid4().hex[:8]
    name, renamed = f"edx_probe_{suffix}", f"edx_probe2_{suffix}"
    scratch, scratch2 = conn_.qname(name, schema_name), conn_.qname(renamed, schema_name)
    live = [scratch]
    steps: list[tuple[str, Callable[[sa.Connection], Any]]] = [
        ("create", lambda c: c.exec_driver_sql(conn_.create_table_sql(scratch, SCRATCH))),
        ("insert", lambda c: c.exec_driver_sql(f"INSERT INTO {scratch} (id, v) VALUES (1, 'a')")),
        ("update", lambda c: c.exec_driver_sql(f"UPDATE {scratch} SET v = 'b' WHERE id = 1")),
        ("delete", lambda c: c.exec_driver_sql(f"DELETE FROM {scratch} WHERE id = 1")),
        ("staging", lambda c: conn_._create_staging(c, f"edx_stg_{name}", SCRATCH, schema_name)),
        ("rename", lambda c: (conn_._rename(c, scratch, renamed, schema_name), live.__setitem__(0, scratch2))),
        ("drop", lambda c: (c.exec_driver_sql(f"DROP TABLE {live[0]}"), live.clear())),
    ]
    items: list[ProbeItem] = []
    try:
        for step, run in steps:
            try:
                with conn_.engine.connect() as c:
                    out = run(c)
                    if step == "staging":
                        c.exec_driver_sql(f"DROP TABLE IF EXISTS {out}")
                    c.commit()
                items.append(ProbeItem(f"privilege:{step}", True, "tried on a scratch table"))
            except Exception as e:  # noqa: BLE001
                err = conn_.classify(e)
                items.append(ProbeItem(f"privilege:{step}", False, err.text, conn_.grant_hint(step, schema_name)))
                if step == "create":
                    break
    finally:
        for t in list(live):
            try:
                with conn_.engine.begin() as c:
                    c.exec_driver_sql(f"DROP TABLE IF EXISTS {t}")
            except Exception:  # noqa: BLE001 - best effort; the item above says what failed
                pass
    return items
