"""The walking skeleton end to end: real hub process, real agent CLI, real databases.

Checks every row of the target against the published stream, the checkpoint, that a second sync
applies nothing twice, and that a batch failing verification writes nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa

from agent.payload import canonical_from_db, encode_value
from agent.schema import Schema
from agent import sample
from tests.conftest import fresh_mysql_database

from .conftest import expected_state

SCHEMA = Schema.from_dict(sample.SCHEMA)


def table_rows(url: str, table: str = "student") -> dict[str, list]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            res = c.execute(sa.text(f"SELECT {', '.join(SCHEMA.names)} FROM {table}"))
            return {r[0]: [canonical_from_db(col.type, v) for col, v in zip(SCHEMA.columns, r)] for r in res}
    finally:
        eng.dispose()


def canonical(rows: dict[str, dict]) -> dict[str, list]:
    return {k: [encode_value(c.type, r.get(c.name)) for c in SCHEMA.columns] for k, r in rows.items()}


def checkpoint(url: str) -> tuple[int, int]:
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            seq = c.execute(sa.text("SELECT seq FROM edx_checkpoint WHERE dataset = 'student'")).scalar_one()
            lineage = c.execute(sa.text("SELECT count(*) FROM edx_lineage WHERE dataset = 'student'")).scalar_one()
            return seq, lineage
    finally:
        eng.dispose()


def run_skeleton(hub, agent_cli, sample_files, db_url: str) -> None:
    agent_cli("init", "--database", db_url, "--hub", hub.url)
    token = hub.admin("token", "create", "--unit", "school-1", "--datasets", "student").stdout.strip()
    assert token and "\n" not in token
    out = agent_cli("enrol", "--token", token).stdout
    assert "school-1" in out

    agent_cli("sync", "--once")
    assert table_rows(db_url) == canonical(expected_state(sample_files["snapshot"]))
    assert checkpoint(db_url) == (1, 1)

    hub.admin("publish", "student", str(sample_files["changes"]), "--kind", "changes")
    agent_cli("sync", "--once")
    assert table_rows(db_url) == canonical(expected_state(sample_files["snapshot"], sample_files["changes"]))
    assert checkpoint(db_url) == (2, 2)

    again = agent_cli("sync", "--once", "--json")
    assert json.loads(again.stdout)["batches"] == 0
    assert checkpoint(db_url) == (2, 2)

    status = json.loads(agent_cli("status", "--json").stdout)
    (st,) = [d for d in status["datasets"] if d["dataset"] == "student"]
    assert st["last_seq"] == 2 and st["state"] == "ok" and st["last_error"] is None

    # the token was single-use
    reuse = agent_cli("enrol", "--token", token, check=False)
    assert reuse.returncode != 0 and "enrolment" in reuse.stderr


def test_skeleton_into_sqlite(hub, agent_cli, sample_files, tmp_path):
    run_skeleton(hub, agent_cli, sample_files, f"sqlite:///{tmp_path / 'edu.db'}")


@pytest.mark.mysql
def test_skeleton_into_mariadb(hub, agent_cli, sample_files):
    url, drop = fresh_mysql_database()
    try:
        run_skeleton(hub, agent_cli, sample_files, url)
    finally:
        drop()


def test_a_tampered_batch_is_refused_and_nothing_is_written(hub, agent_cli, sample_files, tmp_path):
    db = tmp_path / "edu.db"
    agent_cli("init", "--database", f"sqlite:///{db}", "--hub", hub.url)
    token = hub.admin("token", "create", "--unit", "school-2", "--datasets", "student").stdout.strip()
    agent_cli("enrol", "--token", token)
    # download batch 1 as the agent would, flip one byte of its sealed body, leave it in the spool
    from agent.config import load
    from agent.runtime import build_context

    ctx = build_context(load(agent_cli.config))
    listing = ctx.client.batches("student", 0)["batches"]
    path = ctx.spool.fetch(ctx.client, listing[0])
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    ctx.connector.close()

    res = agent_cli("sync", "--once", check=False)
    assert res.returncode == 65, res.stderr + res.stdout
    assert "envelope-" in res.stdout
    eng = sa.create_engine(f"sqlite:///{db}")
    with eng.connect() as c:
        assert not sa.inspect(c).has_table("student") or \
            c.execute(sa.text("SELECT count(*) FROM student")).scalar_one() == 0
        assert c.execute(sa.text("SELECT count(*) FROM edx_checkpoint")).scalar_one() == 0
    eng.dispose()
    rejected = list((Path(ctx.spool.root) / "rejected" / "student").glob("*.edx"))
    assert len(rejected) == 1 and "envelope-" in rejected[0].name
    status = json.loads(agent_cli("status", "--json").stdout)
    (st,) = [d for d in status["datasets"] if d["dataset"] == "student"]
    assert st["last_error"]["code"].startswith("envelope-")

    # the refused copy is kept aside; the next sync downloads a good copy and applies it
    agent_cli("sync", "--once")
    assert len(table_rows(f"sqlite:///{db}")) == len(expected_state(sample_files["snapshot"]))


def test_a_batch_collected_between_listing_and_download_sends_the_agent_back_to_the_listing(
        hub, agent_cli, sample_files, tmp_path):
    db = tmp_path / "edu.db"
    agent_cli("init", "--database", f"sqlite:///{db}", "--hub", hub.url)
    token = hub.admin("token", "create", "--unit", "school-gc", "--datasets", "student").stdout.strip()
    agent_cli("enrol", "--token", token)
    agent_cli("sync", "--once")                                  # snapshot #1 applied
    hub.admin("publish", "student", str(sample_files["changes"]), "--kind", "changes")   # #2

    from agent.config import load
    from agent.pipeline import sync_dataset
    from agent.runtime import build_context

    ctx = build_context(load(agent_cli.config))
    real = ctx.client.batches
    calls: list[list[int]] = []

    def batches(dataset: str, after: int) -> dict:
        listing = real(dataset, after)
        calls.append([b["seq"] for b in listing["batches"]])
        if len(calls) == 1:   # the platform publishes a snapshot and collects #2 before the download
            hub.admin("publish", "student", str(sample_files["snapshot"]), "--kind", "snapshot")   # #3
            hub.admin("gc", "--grace", "0s")
        return listing
    ctx.client.batches = batches  # type: ignore[method-assign]
    outcomes = sync_dataset(ctx, {"dataset": "student"})
    ctx.connector.close()
    assert calls[:2] == [[2], [3]]
    assert [o.seq for o in outcomes] == [3]
    assert len(table_rows(f"sqlite:///{db}")) == len(expected_state(sample_files["snapshot"]))
    assert not list((Path(ctx.spool.root) / "student").glob("*.part"))


def test_count_reconciliation_is_a_real_setting(hub, agent_cli, sample_files, tmp_path):
    """sync.reconcile = "count": the batches apply, the receipts carry the counts and no row checksum."""
    import tomllib

    import tomli_w

    db = tmp_path / "edu.db"
    agent_cli("init", "--database", f"sqlite:///{db}", "--hub", hub.url)
    doc = tomllib.loads(agent_cli.config.read_text())
    doc.setdefault("sync", {})["reconcile"] = "count"
    agent_cli.config.write_text(tomli_w.dumps(doc))
    token = hub.admin("token", "create", "--unit", "u1", "--datasets", "student").stdout.strip()
    agent_cli("enrol", "--token", token)
    hub.admin("publish", "student", str(sample_files["changes"]), "--kind", "changes")
    agent_cli("sync", "--once")
    listed = [ln for ln in agent_cli("receipts", "list").stdout.splitlines() if ln.startswith("student")]
    assert [line.split()[:2] for line in listed] == [["student", "#1"], ["student", "#2"]]
    for line in listed:
        assert "'rows':" in line and "'deleted':" in line and "sum64" not in line
