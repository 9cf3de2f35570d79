"""The `edx-hub` command line as an operator runs it: real subprocesses beside a serving hub, --from-db publishing."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

from tests.conftest import fresh_pg_database

from .conftest import SCHEMA, HubProcess


def test_token_create_prints_the_token_alone_while_the_server_runs(hub, tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    (tmp_path / "r.jsonl").write_text('{"id": 1, "name": "甲", "score": "1.00"}\n')
    res = hub.cli_process("publish", "cli_ds", str(tmp_path / "r.jsonl"), "--kind", "snapshot",
                          "--schema", str(tmp_path / "s.json"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["seq"] == 1
    res = hub.cli_process("token", "create", "--unit", "unit-cli", "--datasets", "cli_ds")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("edxtok_")
    from .agentsim import SimAgent
    agent = SimAgent(hub.client())
    agent.enrol(lines[0])
    assert agent.batches("cli_ds")["batches"][0]["rows"] == 1


def test_unknown_dataset_without_schema_gives_a_remedy(hub, tmp_path):
    (tmp_path / "r.jsonl").write_text('{"id": 1}\n')
    res = hub.cli_process("publish", "nope", str(tmp_path / "r.jsonl"), "--kind", "snapshot")
    assert res.returncode != 0 and "dataset-unknown" in res.stderr and "--schema" in res.stderr


def test_catalog_facts_round_trip_through_the_cli(hub, tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    out = json.loads(hub.ok("dataset", "create", "teachers", "--schema", str(tmp_path / "s.json"),
                            "--title", "教师信息", "--provider-unit", "市教委人事处", "--sharing", "conditional",
                            "--classification", "重要", "--personal-info", "--update-interval", "3600",
                            "--retention", "purge_after_days", "--retention-days", "30"))
    assert (out["sharing"], out["classification"], out["personal_info"]) == ("有条件", "重要", True)
    assert out["retention"] == {"policy": "purge_after_days", "days": 30}
    rc, _o, err = hub.cli("dataset", "update", "teachers", "--sharing", "maybe")
    assert rc != 0 and "catalog-invalid" in err
    rc, _o, err = hub.cli("dataset", "create", "teachers", "--schema", str(tmp_path / "s.json"))
    assert rc != 0 and "dataset-exists" in err
    hub.ok("dataset", "update", "teachers", "--retention", "purge_on_revoke")
    a = hub.enrol("unit-teach", ["teachers"])
    g = a.get("/v1/grants").json()["grants"][0]
    assert g["title"] == "教师信息" and g["provider_unit"] == "市教委人事处" and g["personal_info"] is True
    assert g["retention"] == {"policy": "purge_on_revoke", "days": None} and g["update_interval_s"] == 3600


def test_resend_reseals_with_fresh_envelopes(hub, tmp_path):
    hub.publish_rows("rsd", [{"id": 1, "name": "a", "score": None}], "snapshot", SCHEMA)
    hub.publish_rows("rsd", [{"_op": "I", "id": 2, "name": "b", "score": None}], "changes")
    a = hub.enrol("unit-rsd", ["rsd"])
    before = a.batches("rsd")["batches"]
    out = hub.ok("resend", "--agent", a.agent_id, "--dataset", "rsd", "--from-seq", "1")
    assert out.startswith("2 envelope(s)")
    after = a.batches("rsd")["batches"]
    assert [b["seq"] for b in after] == [1, 2]
    assert after[0]["hh"] != before[0]["hh"] and after[1]["prev_hh"] == after[0]["hh"]
    cursor, table = a.sync("rsd")
    assert cursor == 2 and len(table) == 2


def _sqlite_source(path) -> str:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE src (ID INTEGER PRIMARY KEY, NAME TEXT, SCORE NUMERIC)")
    con.executemany("INSERT INTO src VALUES (?, ?, ?)", [(i, f"名{i}", f"{i % 50}.25") for i in range(1, 5001)])
    con.commit()
    con.close()
    return f"sqlite:///{path}"


def test_publish_from_a_sqlite_query(hub, tmp_path):
    url = _sqlite_source(tmp_path / "src.db")
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    out = json.loads(hub.ok("publish", "from_sqlite", "--from-db", url, "--query",
                            "SELECT id, name, CAST(score AS TEXT) AS score FROM src", "--kind", "snapshot",
                            "--schema", str(tmp_path / "s.json")))
    assert out["rows"] == 5000
    a = hub.enrol("unit-q", ["from_sqlite"])
    _cursor, table = a.sync("from_sqlite")
    assert table[json.dumps(["4999"])] == ["4999", "名4999", "49.25"]
    # a changes batch from a query with an _op column
    out = json.loads(hub.ok("publish", "from_sqlite", "--from-db", url, "--kind", "changes", "--query",
                            "SELECT 'D' AS _op, id, NULL AS name, NULL AS score FROM src WHERE id <= 10"))
    assert out["rows"] == 10 and out["expected"]["deleted"] == 10
    rc, _o, err = hub.cli("publish", "from_sqlite", "--from-db", url, "--kind", "snapshot",
                          "--query", "SELECT id, name FROM src")
    assert rc == 65 and "missing ['score']" in err
    rc, _o, err = hub.cli("publish", "from_sqlite", "--from-db", url, "--kind", "snapshot",
                          "--query", "SELECT nonsense FROM nowhere")
    assert rc == 65 and "source query failed" in err
    assert json.loads(hub.ok("dataset", "show", "from_sqlite"))["latest_seq"] == 2


def test_publish_from_a_postgresql_query(hub, tmp_path):
    import sqlalchemy as sa

    url, drop = fresh_pg_database("edx_src_")
    try:
        eng = sa.create_engine(url)
        with eng.begin() as c:
            c.exec_driver_sql("CREATE TABLE src (id bigint primary key, name varchar(20), score numeric(5,2))")
            c.exec_driver_sql("INSERT INTO src SELECT g, '生' || g, mod(g, 100) + 0.5 FROM generate_series(1, 20000) g")
        eng.dispose()
        (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
        out = json.loads(hub.ok("publish", "from_pg", "--from-db", url, "--query", "SELECT * FROM src",
                                "--kind", "snapshot", "--schema", str(tmp_path / "s.json")))
        assert out["rows"] == 20000
        a = hub.enrol("unit-pgq", ["from_pg"])
        _cursor, table = a.sync("from_pg")
        assert len(table) == 20000 and table[json.dumps(["7"])] == ["7", "生7", "7.50"]
    finally:
        drop()


def test_serve_refuses_plain_http_off_loopback(tmp_path):
    res = subprocess.run([sys.executable, "-m", "hub.cli", "serve", "--data-dir", str(tmp_path),
                          "--listen", "0.0.0.0:18999"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 78 and "refusing plain HTTP" in res.stderr


def test_plain_http_on_loopback_works(tmp_path):
    h = HubProcess(tmp_path / "data", None, None)
    h.start()
    try:
        assert h.client().get("/v1/hello").json()["api_version"] == "1"
    finally:
        h.stop()


def test_keys_and_admin_token_are_private(hub):
    files = [hub.data_dir / "admin-token", *(hub.data_dir / "keys").iterdir()]
    assert len(files) == 3
    for f in files:
        assert f.stat().st_mode & 0o077 == 0, f
