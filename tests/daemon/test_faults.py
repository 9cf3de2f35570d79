"""The service under faults: a locked database, SIGTERM mid-transaction, a terminal error, the hub going away."""

from __future__ import annotations

import signal
import sqlite3
import time

from prometheus_client.parser import text_string_to_metric_families

from agent.localhub import LocalHub

from .conftest import ROWS, wait_for


def metric(text: str, name: str, **labels: str) -> float | None:
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def lock_database(path) -> sqlite3.Connection:
    """Another program holding the database's write lock (a long report, a backup tool)."""
    c = sqlite3.connect(path, isolation_level=None, timeout=30)
    c.execute("BEGIN EXCLUSIVE")
    return c


def spooled(dep, dataset: str) -> list[str]:
    return sorted(p.name for p in (dep.dir / "state" / "spool" / dataset).glob("*.edx"))


def test_a_locked_database_stalls_the_watchdog_then_backs_off_and_resumes(deployment):
    dep = deployment
    d = dep.run("--stuck-after", "3s")
    note = dep.notify
    wait_for("snapshot", lambda: dep.checkpoint("student") == 1)
    wait_for("watchdog pings", lambda: note.with_key("WATCHDOG", "1"))

    lock = lock_database(dep.db_path)
    try:
        dep.publish_changes("student", 30, seed=21)
        # the sync job waits on the lock without progress: the watchdog pings stop, /readyz says why
        stuck = d.event("sync_loop_stuck", timeout=10)
        assert stuck["jobs"] == ["sync:student"]
        last_ping = note.with_key("WATCHDOG", "1")[-1][0]
        (r,) = wait_for("readyz 503", lambda: (x := dep.get("/readyz")).status_code == 503 and [x])
        checks = r.json()["checks"]
        assert checks["sync_loop"]["ok"] is False and "sync:student" in checks["sync_loop"]["reason"]
        assert checks["database"]["reason"]     # the readiness probe meets the same lock and says so
        # the busy timeout turns into a transient error: retried with backoff, nothing acked
        retrying = d.event("dataset_retrying", timeout=20)
        assert retrying["code"] == "database-busy"
        # the pings resume once the job ends; the gap shows they had stopped (they come every second)
        resumed = wait_for("pings again", lambda: [t for t, _ in note.with_key("WATCHDOG", "1") if t > last_ping])
        assert resumed[0] - last_ping > 2.5
        st = dep.status("student")
        assert st["state"] == "retrying" and st["last_error"]["code"] == "database-busy"
        assert st["next_retry_at"] and st["attempts"] >= 1
        assert dep.checkpoint("student") == 1
        assert not [e for e in d.events() if e.get("event") == "batch_applied" and e.get("seq") == 2]
    finally:
        lock.rollback()
        lock.close()
    wait_for("batch 2 applied after the lock went", lambda: dep.checkpoint("student") == 2, timeout=15)
    d.event("dataset_recovered", was="retrying")
    d.event("sync_loop_progressing_again")
    assert spooled(dep, "student") == []
    wait_for("status ok", lambda: dep.status("student").get("state") == "ok")
    assert d.stop() == 0


def test_sigterm_while_blocked_in_the_database_exits_in_time_and_the_batch_is_applied_once(deployment):
    dep = deployment
    d = dep.run("--stop-timeout", "2s", "--stuck-after", "1s", notify=False)
    wait_for("snapshot", lambda: dep.checkpoint("student") == 1)
    lock = lock_database(dep.db_path)
    try:
        dep.publish_changes("student", 30, seed=22)
        d.event("sync_loop_stuck")   # the sync job is inside the database, waiting for the lock
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        took = time.monotonic() - t0
        assert took < 4.5, (took, d.log_path.read_text()[-3000:])   # --stop-timeout 2s plus a little
        abandoned = d.event("daemon_stop_abandons_work")
        assert abandoned["jobs"] == ["sync:student"]
    finally:
        lock.rollback()
        lock.close()
    assert dep.checkpoint("student") == 1
    d2 = dep.run(notify=False)
    wait_for("batch 2 applied after restart", lambda: dep.checkpoint("student") == 2)
    d2.event("batch_applied", seq=2)   # logged after the ack, a moment after the commit
    applied = [e for e in d2.events() if e.get("event") == "batch_applied"]
    assert [(e["seq"], e["duplicate"]) for e in applied] == [(2, False)]
    assert d2.stop() == 0
    stopped = [e for e in dep.audit_events() if e["event"] == "daemon_stopped"]
    assert [e["outcome"] for e in stopped] == ["aborted", "ok"]


def test_a_terminal_error_stops_one_dataset_while_the_other_flows_until_the_operator_fixes_it(two_datasets):
    dep = two_datasets
    d = dep.run(notify=False)
    wait_for("both snapshots", lambda: dep.checkpoint("student") == 1 and dep.checkpoint("course") == 1)
    # someone changes the target table behind the agent's back
    with sqlite3.connect(dep.db_path, timeout=30) as c:
        c.execute("ALTER TABLE course DROP COLUMN grade")
    dep.publish_changes("course", 20, seed=31)
    stopped = d.event("dataset_stopped", dataset="course")
    assert stopped["code"] and stopped["remedy"] is not None and "sync --dataset course" in stopped["resume"]
    st = dep.status("course")
    assert st["state"] == "stopped" and st["last_error"]["code"] == stopped["code"]

    dep.publish_changes("student", 20, seed=32)
    wait_for("student keeps flowing", lambda: dep.checkpoint("student") == 2)
    time.sleep(2)   # several intervals: a stopped dataset is not retried
    text = dep.get("/metrics").text
    assert metric(text, "edx_errors_total", dataset="course", code=stopped["code"]) == 1
    assert metric(text, "edx_dataset_state", dataset="course", state="stopped") == 1
    assert metric(text, "edx_dataset_state", dataset="student", state="ok") == 1
    assert dep.checkpoint("course") == 1

    # the operator repairs the table and runs the one dataset by hand; the service picks it up again
    with sqlite3.connect(dep.db_path, timeout=30) as c:
        c.execute("ALTER TABLE course ADD COLUMN grade TEXT")
    res = dep.cli("sync", "--dataset", "course")
    assert "1 batch" in res.stdout
    d.event("dataset_resumed", dataset="course")
    dep.publish_changes("course", 5, seed=33)
    wait_for("course flows again under the service", lambda: dep.checkpoint("course") == 3)
    assert d.stop() == 0
    events = [(e["event"], e["outcome"], e["who"]["via"]) for e in dep.audit_events()]
    assert ("dataset_stopped", stopped["code"], "daemon") in events
    assert ("sync", "ok", "cli") in events and ("dataset_resumed", "ok", "daemon") in events


def test_the_hub_going_away_backs_off_quietly_and_recovers(deployment):
    dep = deployment
    d = dep.run(notify=False)
    wait_for("snapshot", lambda: dep.checkpoint("student") == 1)
    port, data = dep.hub.port, dep.hub.data_dir
    dep.hub.stop()
    down = d.event("hub_unreachable")
    assert down["code"] == "hub-unreachable"
    (r,) = wait_for("readyz says the hub is gone",
                    lambda: (x := dep.get("/readyz")).status_code == 503 and not x.json()["checks"]["hub"]["ok"] and [x],
                    timeout=40)
    assert "hub-unreachable" in r.json()["checks"]["hub"]["reason"]
    wait_for("status shows the retry", lambda: dep.status("student").get("state") == "retrying", timeout=20)
    assert dep.status("student")["last_error"]["code"] == "hub-unreachable"
    assert metric(dep.get("/metrics").text, "edx_hub_up") == 0
    time.sleep(4)
    # one line for the change of state, not one per attempt of every job
    noisy = [e for e in d.events() if e.get("level") in ("warning", "error")]
    assert [e["event"] for e in noisy].count("hub_unreachable") == 1
    assert len(noisy) <= 3, noisy

    dep.hub = LocalHub(data, port=port)
    dep.hub.start()
    dep.publish_changes("student", 10, seed=41)
    d.event("hub_reachable_again", timeout=40)
    wait_for("flows again", lambda: dep.checkpoint("student") == 2, timeout=40)
    wait_for("status ok", lambda: dep.status("student").get("state") == "ok")
    assert d.stop() == 0


def test_retention_purges_on_revoke_and_after_days_and_audits_it(two_datasets):
    dep = two_datasets
    dep.hub.admin("dataset", "update", "student", "--retention", "purge_on_revoke")
    dep.hub.admin("dataset", "update", "course", "--retention", "purge_after_days", "--retention-days", "1")
    d = dep.run("--housekeeping-every", "1s", notify=False)
    wait_for("both snapshots", lambda: dep.checkpoint("student") == 1 and dep.checkpoint("course") == 1)
    assert dep.count("student") == ROWS

    dep.hub.admin("grant", "revoke", "--unit", "school-1", "--dataset", "student")
    purged = d.event("dataset_purged", dataset="student", timeout=20)
    assert purged["rows"] == ROWS and purged["policy"] == "purge_on_revoke"
    assert dep.count("student") == 0 and dep.checkpoint("student") == 0
    wait_for("status purged", lambda: dep.status("student").get("state") == "purged")
    assert dep.count("course") == ROWS   # keep/after-days datasets are untouched by a revoke

    # course's newest batch becomes older than its one-day retention (as if the agent had been off)
    assert d.stop() == 0
    import json
    path = dep.dir / "state" / "status.json"
    doc = json.loads(path.read_text())
    doc["datasets"]["course"]["last_applied_at"] = "2020-01-01T00:00:00+00:00"
    path.write_text(json.dumps(doc))
    d2 = dep.run("--housekeeping-every", "1s", notify=False)
    purged2 = d2.event("dataset_purged", dataset="course", timeout=20)
    assert purged2["policy"] == "purge_after_days" and purged2["rows"] == ROWS
    assert dep.count("course") == 0
    time.sleep(2)
    assert dep.count("course") == 0 and dep.status("course")["state"] == "purged"   # not fetched again
    assert d2.stop() == 0
    purges = [e for e in dep.audit_events() if e["event"] == "retention_purge"]
    assert [(e["detail"]["dataset"], e["detail"]["rows"]) for e in purges] == [("student", ROWS), ("course", ROWS)]
    assert sum(1 for e in dep.audit_events() if e["event"] == "retention_purge") == 2   # once each
