"""The operator's commands against a real hub: doctor, joint-debug test, receipts, schema plan, feedback, resync."""

from __future__ import annotations

import json

import sqlalchemy as sa


def enrolled(hub, agent_cli, tmp_path, db="edu.db"):
    url = f"sqlite:///{tmp_path / db}"
    agent_cli("init", "--database", url, "--hub", hub.url)
    token = hub.admin("token", "create", "--unit", "school-9", "--datasets", "student").stdout.strip()
    agent_cli("enrol", "--token", token)
    return url


def test_doctor_walks_every_step_and_names_the_cause_of_each_failure(hub, agent_cli, tmp_path):
    enrolled(hub, agent_cli, tmp_path)
    res = agent_cli("doctor", "--json", check=False)
    doc = json.loads(res.stdout)
    steps = {s["name"]: s for s in doc["steps"]}
    for name in ("dns", "tcp", "tls", "hub_api", "agent_auth", "clock", "database_connect", "disk"):
        assert name in steps, name
    for name in ("dns", "tcp", "tls", "hub_api", "agent_auth", "database_connect", "disk"):
        assert steps[name]["ok"], steps[name]
    assert any(n.startswith("database:") for n in steps)
    # every failed step carries a remedy (this machine's clock may not be NTP-synchronised)
    for s in doc["steps"]:
        if not s["ok"] and not s["skipped"]:
            assert s["remedy"], s
    assert res.returncode == (0 if doc["ok"] else 1)


def test_joint_debug_runs_a_real_batch_into_a_sandbox_and_reports_it(hub, agent_cli, tmp_path):
    url = enrolled(hub, agent_cli, tmp_path)
    res = agent_cli("test", "--json", check=False)
    doc = json.loads(res.stdout)
    steps = {s["name"]: s for s in doc["steps"]}
    for name in ("test_download", "test_verify", "test_apply", "test_readback"):
        assert steps[name]["ok"], steps[name]
    assert doc["sent_to_platform"] is True and len(doc["correlation_id"]) == 32
    eng = sa.create_engine(url)
    with eng.connect() as c:
        assert doc["sandbox_table"] not in sa.inspect(c).get_table_names()  # dropped without --keep
    eng.dispose()
    # the platform team sees the report under the same correlation id
    msgs = hub.admin("messages", "--json", check=False)
    if msgs.returncode == 0:
        assert doc["correlation_id"] in msgs.stdout


def test_receipts_verify_offline_and_detect_an_edited_receipt(hub, agent_cli, tmp_path):
    enrolled(hub, agent_cli, tmp_path)
    agent_cli("sync", "--once")
    ok = json.loads(agent_cli("receipts", "verify", "--json").stdout)
    assert ok == {"ok": True, "receipts": 1, "invalid": []}
    path = agent_cli.workdir / "state" / "receipts.jsonl"
    r = json.loads(path.read_text())
    r["counts"]["rows"] += 1
    path.write_text(json.dumps(r) + "\n")
    res = agent_cli("receipts", "verify", check=False)
    assert res.returncode == 65 and "receipt-invalid" in res.stdout


def test_schema_plan_shows_ddl_before_it_runs(hub, agent_cli, tmp_path):
    enrolled(hub, agent_cli, tmp_path)
    agent_cli("sync", "--once", "--dataset", "student")
    plan = agent_cli("schema", "plan", "student").stdout
    assert "already matches" in plan


def test_feedback_request_and_resync_reach_the_platform(hub, agent_cli, tmp_path):
    url = enrolled(hub, agent_cli, tmp_path)
    agent_cli("sync", "--once")
    assert "feedback sent" in agent_cli("feedback", "student", "--key", "G00110101000001",
                                        "--message", "姓名有误").stdout
    assert "request sent" in agent_cli("request", "--message", "需要教师数据").stdout
    out = agent_cli("resync", "student", "--yes").stdout
    assert "snapshot" in out
    eng = sa.create_engine(url)
    with eng.connect() as c:
        assert c.execute(sa.text("SELECT count(*) FROM student")).scalar_one() > 0
    eng.dispose()


def test_diagnostics_bundle_is_written_and_carries_no_secret(hub, agent_cli, tmp_path):
    import zipfile

    enrolled(hub, agent_cli, tmp_path)
    canary = "CANARY-pw-7f3a9c"
    (agent_cli.workdir / "db.pass").write_text(canary)
    (agent_cli.workdir / "db.pass").chmod(0o600)
    text = agent_cli.config.read_text().replace('password_file = ""', 'password_file = "db.pass"')
    agent_cli.config.write_text(text)
    out = tmp_path / "diag.zip"
    agent_cli("diagnostics", "--no-doctor", "--output", str(out), env={"EDX_CANARY_TOKEN": canary})
    with zipfile.ZipFile(out) as z:
        names = set(z.namelist())
        assert {"versions.json", "config.json", "status.json"} <= names
        for n in names:
            assert canary not in z.read(n).decode("utf-8", "replace"), n


def test_key_rotation_keeps_batches_flowing_and_old_batches_readable(hub, agent_cli, tmp_path, sample_files):
    enrolled(hub, agent_cli, tmp_path)
    # a batch sealed to the old key waits in the spool while the key rotates
    from agent.config import load
    from agent.runtime import build_context

    ctx = build_context(load(agent_cli.config))
    listing = ctx.client.batches("student", 0)["batches"]
    ctx.spool.fetch(ctx.client, listing[0])
    ctx.connector.close()
    before = json.loads(agent_cli("keys", "list", "--json").stdout)
    agent_cli("keys", "rotate")
    after = json.loads(agent_cli("keys", "list", "--json").stdout)
    assert after["current"] != before["current"] and after["previous"] == [before["current"]]
    # the spooled batch (old key) and a new one (sealed to the new key) both apply
    hub.admin("publish", "student", str(sample_files["changes"]), "--kind", "changes")
    agent_cli("sync", "--once")
    status = json.loads(agent_cli("status", "--json").stdout)
    (st,) = [d for d in status["datasets"] if d["dataset"] == "student"]
    assert st["last_seq"] == 2 and st["state"] == "ok"
    # rotating again is idempotent on the hub side and the previous key is pruned after the grace
    agent_cli("keys", "rotate")
    out = agent_cli("keys", "prune", "--grace", "0s").stdout
    assert "removed 2" in out
    assert agent_cli("sync", "--once", "--json").returncode == 0
