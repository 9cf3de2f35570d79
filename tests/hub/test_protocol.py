"""Protocol round trips against the real hub process over TLS, on both storage backends (SQLite, PostgreSQL)."""

from __future__ import annotations

import json

from agent import envelope

from .agentsim import table_checksum
from .conftest import SCHEMA, students


def test_hello_needs_no_auth_and_names_the_hub_keys(hub):
    r = hub.client().get("/v1/hello")
    assert r.status_code == 200
    doc = r.json()
    assert doc["api_version"] == "1"
    assert abs(doc["server_time_ms"] - __import__("time").time() * 1000) < 60_000
    suites = {envelope.VerifyKey.from_dict(k).suite for k in doc["hub_keys"]}
    assert suites == set(envelope.Suite)


def test_enrol_list_download_apply_ack_round_trip(hub):
    hub.publish_rows("rt_students", students(300), "snapshot", SCHEMA)
    agent = hub.enrol("第一中学", ["rt_students"])
    grants = agent.get("/v1/grants").json()["grants"]
    assert [g["dataset"] for g in grants] == ["rt_students"]
    g = grants[0]
    assert g["state"] == "active" and g["schema"]["primary_key"] == ["id"] and g["retention"]["policy"] == "keep"

    changes = [{"_op": "U", "id": 1, "name": "改名", "score": "99.00"}, {"_op": "D", "id": 2},
               {"_op": "I", "id": 1000, "name": "新生", "score": None}]
    hub.publish_rows("rt_students", changes, "changes")
    listing = agent.batches("rt_students")
    assert [(b["seq"], b["kind"]) for b in listing["batches"]] == [(1, "snapshot"), (2, "changes")]
    assert listing["latest_seq"] == 2
    assert listing["batches"][0]["prev_hh"] == "00" * 32
    assert listing["batches"][1]["prev_hh"] == listing["batches"][0]["hh"]

    cursor, table = agent.sync("rt_students")
    assert cursor == 2
    assert len(table) == 300
    assert table[json.dumps(["1"])] == ["1", "改名", "99.00"]
    assert json.dumps(["2"]) not in table and table[json.dumps(["1000"])][2] is None

    # the hub's materialised state agrees with what the agent built
    show = json.loads(hub.ok("dataset", "show", "rt_students"))
    assert show["rows"] == 300 and show["latest_seq"] == 2
    assert agent.batches("rt_students", after=2)["batches"] == []


def test_header_carries_the_expected_reconciliation_figure(hub):
    hub.publish_rows("fig", students(50), "snapshot", SCHEMA)
    agent = hub.enrol("unit-fig", ["fig"])
    b = agent.batches("fig")["batches"][0]
    header, manifest, records = agent.open(agent.download("fig", 1), "fig")
    expected = json.loads(header.extensions[0x81])
    assert expected == {"rows": 50, "sum64": table_checksum({str(i): r[1] for i, r in enumerate(records)}).hexdigest(),
                        "deleted": 0}
    assert b["rows"] == 50 and manifest.rows == 50


def test_download_resumes_with_range(hub):
    hub.publish_rows("rng", students(2000), "snapshot", SCHEMA)
    agent = hub.enrol("unit-rng", ["rng"])
    b = agent.batches("rng")["batches"][0]
    whole = agent.download("rng", 1)
    assert len(whole) == b["size"]
    assert __import__("hashlib").sha256(whole).hexdigest() == b["sha256"]
    cut = len(whole) // 3
    r = agent.get("/v1/batches/rng/1/envelope", headers={"Range": f"bytes={cut}-"})
    assert r.status_code == 206
    assert r.headers["content-range"] == f"bytes {cut}-{len(whole) - 1}/{len(whole)}"
    assert whole[:cut] + r.content == whole
    r = agent.get("/v1/batches/rng/1/envelope", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == whole[-10:]
    r = agent.get("/v1/batches/rng/1/envelope", headers={"Range": f"bytes={len(whole) + 5}-"})
    assert r.status_code == 416 and r.json()["error"]["code"] == "range-not-satisfiable"


def test_ack_is_idempotent_and_verifies_the_receipt(hub):
    hub.publish_rows("ackd", students(10), "snapshot", SCHEMA)
    agent = hub.enrol("unit-ack", ["ackd"])
    agent.batches("ackd")
    header, manifest, records = agent.open(agent.download("ackd", 1), "ackd")
    first = agent.ack("ackd", 1, header, manifest, records)
    assert first.status_code == 200 and first.json() == {"acked": True, "duplicate": False, "checksum_mismatch": False}
    again = agent.ack("ackd", 1, header, manifest, records)
    assert again.status_code == 200 and again.json()["duplicate"] is True
    # a receipt signed by another key is refused
    other = hub.enrol("unit-ack-2", ["ackd"])
    forged = envelope.sign_receipt(other.keys, header.hh, "ackd", 1, {"applied": 10}, {"rows": 10}, 1)
    r = agent.post("/v1/batches/ackd/1/ack", {"receipt": forged})
    assert r.status_code == 400 and r.json()["error"]["code"] == "receipt-invalid"


def test_ack_with_a_different_checksum_is_flagged(hub):
    hub.publish_rows("mism", students(10), "snapshot", SCHEMA)
    agent = hub.enrol("unit-mism", ["mism"])
    agent.batches("mism")
    header, manifest, records = agent.open(agent.download("mism", 1), "mism")
    r = agent.ack("mism", 1, header, manifest, records, checksum={"rows": 9, "sum64": "0" * 16, "deleted": 0})
    assert r.status_code == 200 and r.json()["checksum_mismatch"] is True


def test_heartbeat_returns_queued_commands_once_and_takes_results(hub):
    hub.publish_rows("hb", students(5), "snapshot", SCHEMA)
    agent = hub.enrol("unit-hb", ["hb"])
    beat = {"agent_version": "0.1.0", "hostname": "qzj-01", "config_digest": "abc", "uptime_s": 12,
            "datasets": [{"dataset": "hb", "last_seq": 1, "last_applied_at": 1, "rows_total": 5, "state": "ok",
                          "freshness": "fresh", "last_error": None, "progress": None}],
            "disk": {"free_bytes": 10}, "certs": {}, "clock_ms": 1}
    r = agent.post("/v1/heartbeat", beat)
    assert r.status_code == 200 and r.json()["commands"] == []
    cid = hub.ok("agent", "command", agent.agent_id, "--type", "resync", "--dataset", "hb").strip()
    cmds = agent.post("/v1/heartbeat", beat).json()["commands"]
    assert cmds == [{"id": cid, "type": "resync", "dataset": "hb"}]
    assert agent.post("/v1/heartbeat", beat).json()["commands"] == []  # handed out once
    r = agent.post(f"/v1/commands/{cid}/result", {"ok": True, "detail": "resynced"})
    assert r.status_code == 200 and r.json() == {"id": cid, "state": "done"}
    r = agent.post("/v1/commands/cmd-nope/result", {"ok": True, "detail": ""})
    assert r.status_code == 404 and r.json()["error"]["code"] == "command-unknown"


def test_resync_issues_a_fresh_snapshot_at_the_latest_seq(hub):
    hub.publish_rows("rs", students(20), "snapshot", SCHEMA)
    hub.publish_rows("rs", [{"_op": "D", "id": 3}, {"_op": "U", "id": 4, "name": "四", "score": "1.00"}], "changes")
    agent = hub.enrol("unit-rs", ["rs"])
    cursor, table = agent.sync("rs")
    assert cursor == 2
    r = agent.post("/v1/resync", {"dataset": "rs"})
    assert r.status_code == 200, r.text
    b = r.json()["batch"]
    assert (b["seq"], b["kind"], b["rows"], b["resync"]) == (2, "snapshot", 19, True)
    # the pending resync snapshot is listed even though the cursor is already at its seq
    listing = agent.batches("rs", after=2)["batches"]
    assert [(x["seq"], x["kind"]) for x in listing] == [(2, "snapshot")]
    header, manifest, records = agent.open(agent.download("rs", 2), "rs")
    assert header.kind == "snapshot" and len(records) == 19
    assert {json.dumps([f[0]]): f for _op, f in records} == table
    assert agent.ack("rs", 2, header, manifest, records).status_code == 200
    assert agent.batches("rs", after=2)["batches"] == []
    # the chain continues from the resync snapshot
    hub.publish_rows("rs", [{"_op": "I", "id": 50, "name": "五十", "score": "5.00"}], "changes")
    nxt = agent.batches("rs", after=2)["batches"]
    assert [x["seq"] for x in nxt] == [3] and nxt[0]["prev_hh"] == header.hh_hex


def test_a_cursor_before_the_latest_snapshot_starts_at_it(hub):
    hub.publish_rows("snap", students(5), "snapshot", SCHEMA)
    hub.publish_rows("snap", [{"_op": "D", "id": 1}], "changes")
    hub.publish_rows("snap", students(7), "snapshot")
    hub.publish_rows("snap", [{"_op": "D", "id": 2}], "changes")
    agent = hub.enrol("unit-snap", ["snap"])
    assert [b["seq"] for b in agent.batches("snap")["batches"]] == [3, 4]
    cursor, table = agent.sync("snap")
    assert cursor == 4 and len(table) == 6


def test_test_batch_is_a_sealed_snapshot_outside_any_sequence(hub):
    agent = hub.enrol("unit-selftest", [])
    r = agent.get("/v1/test-batch")
    assert r.status_code == 200 and r.headers["x-edx-dataset"] == "edx_selftest"
    header, manifest, records = agent.open(r.content, "edx_selftest")
    assert header.kind == "snapshot" and header.prev_hh == bytes(32) and len(records) == 50
    assert any(f[6] == '第1行, "quoted", NULL' for _op, f in records)


def test_feedback_requests_reports_and_diagnostics_are_stored(hub):
    hub.publish_rows("fb", students(5), "snapshot", SCHEMA)
    agent = hub.enrol("unit-fb", ["fb"])
    r = agent.post("/v1/feedback", {"dataset": "fb", "seq": 1, "message": "分数不对",
                                    "quarantined": [{"key": [3], "column": "score", "reason": "out of range"}]})
    assert r.status_code == 200, r.text
    assert agent.post("/v1/requests", {"message": "需要教师数据"}).status_code == 200
    assert agent.post("/v1/test-reports", {"report": {"ok": True, "steps": []},
                                           "correlation_id": "jd-1"}).status_code == 200
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("status.json", "{}")
    r = agent.post("/v1/diagnostics", raw=buf.getvalue(), content_type="application/zip")
    assert r.status_code == 200, r.text
    msgs = hub.admin().get("/admin/v1/messages", params={"agent_id": agent.agent_id}).json()["messages"]
    assert sorted(m["kind"] for m in msgs) == ["diagnostics", "feedback", "request", "test-report"]
    # feedback about a dataset the unit was never granted is refused
    r = agent.post("/v1/feedback", {"dataset": "rt_students", "message": "x"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "grant-missing"


def test_materialised_state_with_a_composite_key_repeats_and_changes(hub):
    schema = {"columns": [{"name": "school", "type": "string(10)", "nullable": False},
                          {"name": "sid", "type": "int32", "nullable": False},
                          {"name": "name", "type": "text"}],
              "primary_key": ["school", "sid"]}
    rows = [{"school": f"s{i % 3}", "sid": i, "name": f"n{i}"} for i in range(2500)]
    rows.append({"school": "s0", "sid": 0, "name": "last wins"})  # repeats a key from the first chunk
    rows.append({"school": "s,1", "sid": 1, "name": 'NULL'})      # a comma in a key, the text NULL
    hub.publish_rows("comp", rows, "snapshot", schema)
    assert json.loads(hub.ok("dataset", "show", "comp"))["rows"] == 2501
    hub.publish_rows("comp", [{"_op": "D", "school": "s1", "sid": 1}, {"_op": "U", "school": "s2", "sid": 2, "name": None},
                              {"_op": "I", "school": "s9", "sid": 9, "name": "x"}, {"_op": "D", "school": "s9", "sid": 9},
                              {"_op": "D", "school": "zz", "sid": 0}], "changes")
    assert json.loads(hub.ok("dataset", "show", "comp"))["rows"] == 2500
    agent = hub.enrol("unit-comp", ["comp"])
    _cursor, table = agent.sync("comp")
    b = agent.post("/v1/resync", {"dataset": "comp"}).json()["batch"]
    _h, _m, records = agent.open(agent.download("comp", b["seq"]), "comp")
    resynced = {json.dumps(f[:2]): f for _op, f in records}
    assert len(records) == 2500 and resynced == {json.dumps(f[:2]): f for f in table.values()}
    assert resynced[json.dumps(["s0", "0"])][2] == "last wins"
    assert resynced[json.dumps(["s,1", "1"])][2] == "NULL" and resynced[json.dumps(["s2", "2"])][2] is None


def test_long_poll_answers_at_once_when_behind_waits_for_a_publish_and_times_out(hub):
    import threading
    import time

    hub.publish_rows("lp_students", students(5), "snapshot", SCHEMA)
    agent = hub.enrol("长轮询中学", ["lp_students"])
    # behind the latest batch: at once; a dataset without a grant is simply not mentioned
    r = agent.get("/v1/batches/wait?cursor=lp_students:0&cursor=not_granted:0&wait=10")
    assert r.status_code == 200 and r.json()["ready"] == {"lp_students": 1} and r.json()["waited_ms"] < 5000
    # up to date: nothing within a short wait
    t0 = time.monotonic()
    r = agent.get("/v1/batches/wait?cursor=lp_students:1&wait=1.5")
    assert r.json()["ready"] == {} and 1.4 <= time.monotonic() - t0 < 10
    # a batch published while the agent waits ends the wait within the poll interval
    timer = threading.Timer(1.0, hub.publish_rows, args=("lp_students", [{"_op": "D", "id": 1}], "changes"))
    timer.start()
    t0 = time.monotonic()
    r = agent.get("/v1/batches/wait?cursor=lp_students:1&wait=30")
    elapsed = time.monotonic() - t0
    timer.join()
    assert r.json()["ready"] == {"lp_students": 2} and elapsed < 15
    # malformed cursors are refused with the usual error body
    bad = agent.get("/v1/batches/wait?cursor=lp_students&wait=1")
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "request-invalid"


def test_gc_frees_what_a_snapshot_superseded_and_delivery_carries_on(hub):
    hub.publish_rows("gcds", students(50), "snapshot", SCHEMA)
    hub.publish_rows("gcds", [{"_op": "D", "id": 1}], "changes")
    hub.publish_rows("gcds", [{"_op": "D", "id": 2}], "changes")
    early = hub.enrol("unit-gc-early", ["gcds"])
    assert early.sync("gcds")[0] == 3                       # sealed #1-#3 for this agent, acked
    late = hub.enrol("unit-gc-late", ["gcds"])
    assert [b["seq"] for b in late.batches("gcds")["batches"]] == [1, 2, 3]   # offered, not downloaded
    hub.publish_rows("gcds", students(60), "snapshot")       # #4 supersedes #1-#3
    hub.publish_rows("gcds", [{"_op": "D", "id": 60}], "changes")

    # within the grace period nothing goes; a dry run deletes nothing
    assert "gcds" not in json.loads(hub.ok("gc", "--json"))["datasets"]
    dry = json.loads(hub.ok("gc", "--grace", "0s", "--dry-run", "--json"))["datasets"]["gcds"]
    assert (dry["before_snapshot"], dry["payloads"], dry["envelopes"]) == (4, 6, 6) and dry["bytes"] > 0
    assert late.get("/v1/batches/gcds/2/envelope").status_code == 200

    done = json.loads(hub.ok("gc", "--grace", "0s", "--json"))["datasets"]["gcds"]
    assert (done["payloads"], done["envelopes"], done["bytes"]) == (6, 6, dry["bytes"])
    assert "gcds" not in json.loads(hub.ok("gc", "--grace", "0s", "--json"))["datasets"]   # idempotent

    # an envelope offered before the snapshot is gone with 410 and a code that says to list again
    r = late.get("/v1/batches/gcds/2/envelope")
    assert r.status_code == 410 and r.json()["error"]["code"] == "batch-superseded"
    # both agents continue from the snapshot; a new agent starts there; nothing is sealed from a gone payload
    assert [b["seq"] for b in late.batches("gcds", 0)["batches"]] == [4, 5]
    cursor, table = early.sync("gcds", 3)
    assert cursor == 5 and len(table) == 59
    newcomer = hub.enrol("unit-gc-new", ["gcds"])
    assert newcomer.sync("gcds") == (5, table)
    # 补传 from before the snapshot drops collected rows too (no blob to delete) and the agent catches up
    hub.ok("resend", "--agent", early.agent_id, "--dataset", "gcds", "--from-seq", "1")
    assert early.sync("gcds", 5) == (5, table)      # the chain was reset: a resync snapshot at #5
    assert [b["seq"] for b in early.batches("gcds", 0)["batches"]] == [4, 5]
