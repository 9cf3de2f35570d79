"""The fleet view: states, lag and freshness as HTML, JSON and Prometheus metrics (promtool), and a browser screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import unavailable

from .conftest import SCHEMA, HubProcess, students

ARTIFACTS = Path(os.environ.get("EDX_TEST_ARTIFACTS", Path(__file__).resolve().parents[2] / "test-artifacts"))


def beat(agent, datasets, error=None):
    ds = [{"dataset": d, "last_seq": s, "last_applied_at": int(time.time() * 1000), "rows_total": 5,
           "state": "error" if error else "ok", "freshness": "fresh", "last_error": error, "progress": None}
          for d, s in datasets]
    r = agent.post("/v1/heartbeat", {"agent_version": "0.3.1", "hostname": f"qzj-{agent.unit}", "config_digest": "c0ffee",
                                     "uptime_s": 60, "datasets": ds, "disk": {"spool_free_mb": 900},
                                     "certs": {"hub_ca_days_left": 300}, "clock_ms": int(time.time() * 1000)})
    assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def fleet_hub(tmp_path_factory, tls):
    """A hub with a 1-second heartbeat interval, so Offline comes after 3 s."""
    h = HubProcess(tmp_path_factory.mktemp("fleet") / "data", None, tls)
    h.start("--heartbeat-interval", "1")
    d = h.data_dir.parent
    (d / "s.json").write_text(__import__("json").dumps(SCHEMA))
    h.ok("dataset", "create", "xs_students", "--schema", str(d / "s.json"), "--title", "学生基本信息",
         "--update-interval", "1")
    h.ok("dataset", "create", "xs_scores", "--schema", str(d / "s.json"), "--title", "学生成绩",
         "--update-interval", "86400")
    h.publish_rows("xs_students", students(5), "snapshot")
    h.publish_rows("xs_scores", students(5), "snapshot")
    agents = {
        "offline": h.enrol("海淀区教委", ["xs_students", "xs_scores"]),
        "online": h.enrol("北京四中", ["xs_students", "xs_scores"]),
        "degraded": h.enrol("人大附中", ["xs_students", "xs_scores"]),
        "never": h.enrol("十一学校", ["xs_scores"]),
        "revoked": h.enrol("旧机器", ["xs_scores"]),
    }
    beat(agents["offline"], [("xs_students", 1), ("xs_scores", 1)])
    h.ok("agent", "revoke", agents["revoked"].agent_id)
    h.publish_rows("xs_students", [{"_op": "D", "id": 1}], "changes")  # seq 2, nobody applies it
    time.sleep(3.5)  # > 3 beats of 1 s: "offline" goes Offline, and seq 2 is older than xs_students' 1 s interval
    beat(agents["online"], [("xs_students", 2), ("xs_scores", 1)])
    beat(agents["degraded"], [("xs_students", 1), ("xs_scores", 1)],
         error={"code": "database-unavailable", "message": "cannot reach MySQL"})
    agents["degraded"].post("/v1/test-reports", {"report": {"steps": [{"name": "tls", "ok": True}]},
                                                 "correlation_id": "jd-42"})
    agents["degraded"].post("/v1/feedback", {"dataset": "xs_scores", "message": "成绩有误", "keys": [[3]]})
    yield h, agents
    h.stop()


def test_fleet_json_states_lag_and_freshness(fleet_hub):
    h, agents = fleet_hub
    doc = h.admin().get("/admin/v1/fleet").json()
    by_id = {a["agent_id"]: a for a in doc["agents"]}
    state = {k: by_id[a.agent_id]["state"] for k, a in agents.items()}
    assert state == {"offline": "Offline", "online": "Online", "degraded": "Degraded", "never": "Never seen",
                     "revoked": "Revoked"}
    assert doc["summary"]["Online"] == 1 and doc["summary"]["Offline"] == 1
    deg = {d["dataset"]: d for d in by_id[agents["degraded"].agent_id]["datasets"]}
    assert deg["xs_students"]["lag_batches"] == 1 and deg["xs_students"]["freshness"] == "stale"
    assert deg["xs_students"]["lag_s"] >= 1
    assert deg["xs_scores"]["freshness"] == "fresh"
    assert by_id[agents["degraded"].agent_id]["last_error_code"] == "database-unavailable"
    on = by_id[agents["online"].agent_id]
    assert on["version"] == "0.3.1" and all(d["freshness"] == "fresh" for d in on["datasets"])
    one = h.admin().get(f"/admin/v1/fleet/agents/{agents['degraded'].agent_id}").json()
    assert {m["kind"] for m in one["messages"]} == {"test-report", "feedback"}


def test_fleet_html_needs_the_token_and_shows_every_state(fleet_hub):
    h, agents = fleet_hub
    assert h.client().get("/fleet").status_code == 401
    html = h.admin().get("/fleet").text
    for s in ("Online", "Degraded", "Offline", "Never seen", "Revoked", "北京四中", "database-unavailable", "stale"):
        assert s in html
    page = h.admin().get(f"/fleet/agents/{agents['degraded'].agent_id}").text
    assert "jd-42" in page and "成绩有误" in page and "人大附中" in page
    # the browser path: ?token= sets an HttpOnly cookie and redirects to a clean URL
    token = h.ok("admin-token").strip()
    with h.client(follow_redirects=True) as browser:
        r = browser.get("/fleet", params={"token": token})
        assert r.status_code == 200 and str(r.url).endswith("/fleet") and "Revoked" in r.text


def test_agents_cannot_read_the_fleet(fleet_hub):
    h, agents = fleet_hub
    for target in ("/admin/v1/fleet", "/metrics", f"/fleet/agents/{agents['online'].agent_id}"):
        r = agents["online"].get(target)
        assert r.status_code == 401


def test_metrics_pass_promtool(fleet_hub, tmp_path):
    h, agents = fleet_hub
    r = h.admin().get("/metrics")
    assert r.status_code == 200
    text = r.text
    assert 'edx_hub_agents{state="Offline"} 1.0' in text
    assert f'edx_hub_agent_stale_datasets{{agent="{agents["degraded"].agent_id}",unit="人大附中"}} 1.0' in text
    assert 'edx_hub_http_requests_total{method="POST",route="/v1/heartbeat",status="200"}' in text
    promtool = shutil.which("promtool")
    if promtool is None:
        unavailable("promtool (apt-get install -y prometheus)", FileNotFoundError("promtool"))
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_fleet_dashboard_renders_in_headless_chromium(fleet_hub, tls):
    h, agents = fleet_hub
    beat(agents["online"], [("xs_students", 2), ("xs_scores", 1)])  # fresh beats: the shot shows every state
    beat(agents["degraded"], [("xs_students", 1), ("xs_scores", 1)],
         error={"code": "database-unavailable", "message": "cannot reach MySQL"})
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        unavailable("chromium (apt-get install -y chromium fonts-wqy-zenhei)", FileNotFoundError("chromium"))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "fleet.png"
    shot.unlink(missing_ok=True)
    token = h.ok("admin-token").strip()
    profile = h.data_dir.parent / "chromium-profile"
    res = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                          f"--user-data-dir={profile}", "--window-size=1400,900", f"--screenshot={shot}",
                          f"{h.url}/fleet?token={token}"], capture_output=True, text=True, timeout=120)
    assert shot.exists(), res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000  # a blank page compresses far smaller
    dom = subprocess.run([chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
                          f"--user-data-dir={profile}", "--dump-dom", f"{h.url}/fleet?token={token}"],
                         capture_output=True, text=True, timeout=120).stdout
    assert "Never seen" in dom and "北京四中" in dom
