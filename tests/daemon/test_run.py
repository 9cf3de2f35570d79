"""A real ``edx-agent run`` against a real hub into SQLite: start-up, schedule, health, signals, commands, stop."""

from __future__ import annotations

import json
import signal
import time

from prometheus_client.parser import text_string_to_metric_families

from agent import audit

from .conftest import ROWS, wait_for


def metric(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_the_service_runs_applies_answers_reloads_executes_commands_and_stops(deployment):
    dep = deployment
    d = dep.run()
    note = dep.notify

    # READY only once config, keys and database passed; the initial sync follows at once
    ready = wait_for("READY=1", lambda: note.with_key("READY", "1"))
    assert "STATUS" in ready[0][1] and ready[0][1]["MAINPID"] == str(d.proc.pid)
    wait_for("the snapshot applied", lambda: dep.checkpoint("student") == 1)
    assert dep.count("student") == ROWS

    # a batch published while the service runs is applied within the poll interval (1 s) + 2 s
    dep.publish_changes("student", 40, seed=11)
    t0 = time.monotonic()
    wait_for("batch 2 applied", lambda: dep.checkpoint("student") == 2, timeout=3.0, every=0.02)
    latency = time.monotonic() - t0
    assert latency < 3.0

    # the watchdog is pinged from the running loop, STATUS says what it is doing
    wait_for("two watchdog pings", lambda: len(note.with_key("WATCHDOG", "1")) >= 2, timeout=5)
    assert any("1 ok" in m["STATUS"] for _, m in note.with_key("STATUS"))

    # health endpoints
    h = dep.get("/healthz")
    assert h.status_code == 200 and h.json()["ok"] is True
    (r,) = wait_for("ready", lambda: (x := dep.get("/readyz")).status_code == 200 and [x])
    checks = r.json()["checks"]
    assert set(checks) == {"config", "keys", "hub", "database", "sync_loop", "audit"}
    assert all(c["ok"] and c["reason"] for c in checks.values()), checks
    # the counters move right after the ack, a moment after the checkpoint the test polled
    text = wait_for("metrics of 2 batches", lambda: (t := dep.get("/metrics").text) and
                    metric(t, "edx_batches_total", dataset="student", outcome="applied") == 2 and t)
    assert metric(text, "edx_rows_total", dataset="student") == ROWS + 40
    assert metric(text, "edx_dataset_state", dataset="student", state="ok") == 1
    assert metric(text, "edx_dataset_last_seq", dataset="student") == 2
    assert metric(text, "edx_hub_up") == 1 and metric(text, "edx_spool_quota_bytes") > 0
    assert metric(text, "edx_dataset_last_success_timestamp_seconds", dataset="student") > time.time() - 60

    # maintenance mode: a file, or SIGUSR1 (toggles)
    flag = dep.dir / "state" / "maintenance"
    flag.touch()
    wait_for("503 in maintenance", lambda: dep.get("/readyz").status_code == 503)
    flag.unlink()
    wait_for("ready again", lambda: dep.get("/readyz").status_code == 200)
    d.signal(signal.SIGUSR1)
    (m,) = wait_for("503 after SIGUSR1", lambda: (x := dep.get("/readyz")).status_code == 503 and [x])
    assert m.json()["maintenance"] is True and "maintenance" in m.json()["reason"]
    d.signal(signal.SIGUSR1)
    wait_for("ready after second SIGUSR1", lambda: dep.get("/readyz").status_code == 200)

    # SIGHUP with an invalid config: refused with every problem, the old one keeps running
    good = dep.config.read_text()
    dep.config.write_text(good.replace('interval = "1s"', 'interval = "soon"', 1) + "\n[sync2]\nx = 1\n")
    d.signal(signal.SIGHUP)
    refused = d.event("config_reload_refused")
    assert len(refused["problems"]) == 2 and any("sync2" in p for p in refused["problems"])
    dep.publish_changes("student", 10, seed=12)
    wait_for("batch 3 applied on the old config", lambda: dep.checkpoint("student") == 3, timeout=5)
    wait_for("readyz notes the refusal", lambda: "refused" in dep.get("/readyz").json()["checks"]["config"]["reason"])
    dep.config.write_text(good)
    dep.set_config(sync={"interval": "2s"})
    d.signal(signal.SIGHUP)
    reloaded = d.event("config_reloaded")
    assert reloaded["old_digest"] != reloaded["new_digest"]
    assert note.with_key("RELOADING", "1")

    # commands in heartbeat answers: resync, diagnostics, doctor, each executed and reported
    for kind, extra in (("resync", ["--dataset", "student"]), ("diagnostics", []), ("doctor", [])):
        dep.hub.admin("agent", "command", dep.agent_id, "--type", kind, *extra)
    cmds = wait_for("3 command results", lambda: (c := dep.hub_rows("commands")) and
                    all(x["state"] in ("done", "failed") for x in c) and len(c) == 3 and c, timeout=30)
    by = {c["type"]: c for c in cmds}
    assert by["resync"]["state"] == "done", (by["resync"]["result"], d.log_path.read_text()[-6000:])
    assert "resync requested" in by["resync"]["result"]["detail"]
    assert by["diagnostics"]["state"] == "done" and "redacted" in by["diagnostics"]["result"]["detail"]
    assert len(dep.hub_rows("diagnostics")) == 1
    assert by["doctor"]["result"]["report"], by["doctor"]["result"]   # ran; its verdict depends on the machine
    # the platform re-seals its current state as a snapshot at the latest sequence; it is applied in place
    assert by["resync"]["result"]["report"]["snapshot_applied"] is True
    assert dep.checkpoint("student") == 3 and dep.count("student") > 0

    # SIGTERM: a clean exit within a few seconds
    t0 = time.monotonic()
    assert d.stop() == 0
    assert time.monotonic() - t0 < 5
    assert note.with_key("STOPPING", "1")
    assert d.event("daemon_stopped")["abandoned"] is False

    # everything above is in the audit log, chained
    v = audit.verify(dep.dir / "state" / "audit")
    assert v.ok, v.broken
    events = [(e["event"], e["outcome"]) for e in dep.audit_events()]
    for expected in [("daemon_started", "ok"), ("batch_applied", "ok"), ("config_reload", "config-invalid"),
                     ("config_reload", "ok"), ("resync_requested", "ok"), ("daemon_stopped", "ok")]:
        assert expected in events, expected
    assert {e["detail"]["type"] for e in dep.audit_events() if e["event"] == "hub_command"} == \
        {"resync", "diagnostics", "doctor"}
    vias = [(e["event"], e["who"]["via"]) for e in dep.audit_events()]
    assert vias[:2] == [("init", "cli"), ("enrolment", "cli")]   # the operator's set-up, then the service
    assert all(via == "daemon" for _, via in vias[2:])
    # one canonical line per batch, never row data
    lines = [e for e in d.events() if e.get("event") == "batch_applied"]
    assert len(lines) >= 4 and all("rows" in e and "seq" in e for e in lines)
    assert "student_id" not in d.log_path.read_text()


def test_an_invalid_config_exits_78_listing_every_problem(deployment):
    dep = deployment
    dep.config.write_text(dep.config.read_text() + "\n[heartbeat2]\ninterval = 1\n[sync3]\n")
    d = dep.run()
    assert d.proc.wait(30) == 78
    out = d.log_path.read_text()
    assert "heartbeat2" in out and "sync3" in out
    assert not dep.notify.with_key("READY")


def test_a_health_address_off_loopback_is_refused_unless_allowed(deployment):
    dep = deployment
    dep.set_config(health={"listen": f"0.0.0.0:{dep.health_port}"})
    d = dep.run(notify=False)
    assert d.proc.wait(30) == 78
    assert "health-listen-not-loopback" in d.log_path.read_text()
    d2 = dep.run("--health-allow-remote", notify=False)
    d2.event("daemon_ready")
    assert dep.get("/healthz").status_code == 200
    assert d2.stop() == 0


def test_status_shows_the_batch_being_applied_rows_done_of_total(deployment, tmp_path):
    """`edx-agent status` asks the running daemon (its /status endpoint) what it is applying right now."""
    dep = deployment
    faults_dir = tmp_path / "faults"
    faults_dir.mkdir()
    # hold the first apply after its rows are loaded, before merge/swap and commit
    d = dep.run(env={"EDX_FAULTS": "staging_load:hold", "EDX_FAULTS_DIR": str(faults_dir)})
    (hold,) = wait_for("the apply to reach staging_load", lambda: list(faults_dir.glob("hold.*")), timeout=30)
    try:
        doc = json.loads(dep.cli("status", "--json").stdout)
        assert doc["daemon"]["running"] is True
        (student,) = [x for x in doc["datasets"] if x["dataset"] == "student"]
        applying = student["progress"]["applying"]
        assert applying["seq"] == 1 and applying["kind"] == "snapshot"
        assert applying["rows_done"] == applying["rows_total"] == ROWS and applying["phase"] == "finish"
        text = dep.cli("status").stdout
        assert f"{ROWS:,} / {ROWS:,} rows (100 %)" in text and "merging, reconciling and committing" in text
    finally:
        hold.unlink()
    wait_for("the snapshot applied", lambda: dep.checkpoint("student") == 1)
    doc = json.loads(dep.cli("status", "--json").stdout)
    assert "progress" not in [x for x in doc["datasets"] if x["dataset"] == "student"][0]
    assert d.stop() == 0


def test_status_without_a_running_daemon_says_so(deployment):
    doc = json.loads(deployment.cli("status", "--json").stdout)
    assert doc["daemon"] == {"running": False}


def test_long_poll_applies_a_new_batch_within_seconds_despite_an_hour_long_interval(deployment):
    dep = deployment
    dep.set_config(sync={"interval": "1h", "jitter": 0, "long_poll": True, "long_poll_wait": 20})
    d = dep.run()
    wait_for("the snapshot applied at start-up", lambda: dep.checkpoint("student") == 1, timeout=30)
    d.event("long_poll_on")
    time.sleep(1.5)   # the agent is now waiting at the hub with cursor student:1
    for seq in (2, 3):
        dep.publish_changes("student", 10, seed=seq)
        t0 = time.monotonic()
        wait_for(f"batch {seq} applied", lambda: dep.checkpoint("student") == seq, timeout=5.0, every=0.05)
        assert time.monotonic() - t0 < 5.0
    assert any(e.get("event") == "long_poll_batch" for e in d.events())
    assert d.stop() == 0
