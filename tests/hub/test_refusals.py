"""Bad input and bad actors: each refused with its code, a 4xx status, and nothing stored."""

from __future__ import annotations

import json
import time

import pytest

from agent import envelope, reqsign

from .agentsim import SimAgent
from .conftest import SCHEMA, students


@pytest.fixture(scope="module")
def granted(hub):
    hub.publish_rows("ref", students(5), "snapshot", SCHEMA)
    return hub.enrol("unit-ref", ["ref"])


def code(r):
    return r.json()["error"]["code"]


def test_forged_signature_is_refused(hub, granted):
    impostor = SimAgent(hub.client())
    impostor.agent_id = granted.agent_id  # claims the id, signs with its own key
    r = impostor.get("/v1/grants")
    assert r.status_code == 401 and code(r) == "auth-signature-invalid"
    body = {"dataset": "ref", "message": "x"}
    headers = reqsign.sign_request(granted.agent_id, granted.keys, "POST", "/v1/feedback", b'{"other":1}')
    r = hub.client().post("/v1/feedback", content=json.dumps(body), headers={**headers, "Content-Type": "application/json"})
    assert r.status_code == 401 and code(r) == "auth-signature-invalid"  # body differs from what was signed


def test_missing_signature_headers_are_refused(hub, granted):
    r = hub.client().get("/v1/grants")
    assert r.status_code == 401 and code(r) == "auth-signature-invalid"
    assert "X-EDX-Agent" in r.json()["error"]["message"]


def test_replayed_nonce_is_refused(hub, granted):
    nonce = "ab" * 16
    first = granted.get("/v1/grants", nonce=nonce)
    assert first.status_code == 200
    again = granted.get("/v1/grants", nonce=nonce)
    assert again.status_code == 401 and code(again) == "auth-replayed"


def test_clock_skew_is_refused(hub, granted):
    r = granted.get("/v1/grants", now_ms=int(time.time() * 1000) - 6 * 60 * 1000)
    assert r.status_code == 401 and code(r) == "auth-clock-skew"
    r = granted.get("/v1/grants", now_ms=int(time.time() * 1000) + 4 * 60 * 1000)
    assert r.status_code == 200  # within the 5-minute allowance


def test_unknown_agent_is_refused(hub):
    ghost = SimAgent(hub.client())
    ghost.agent_id = "agt-0000000000000000"
    r = ghost.get("/v1/grants")
    assert r.status_code == 401 and code(r) == "agent-unknown"


def test_disabled_then_revoked_agent(hub):
    hub.publish_rows("rev", students(3), "snapshot", SCHEMA)
    a = hub.enrol("unit-rev", ["rev"])
    hub.ok("agent", "disable", a.agent_id)
    r = a.get("/v1/grants")
    assert r.status_code == 403 and code(r) == "agent-disabled"
    hub.ok("agent", "enable", a.agent_id)
    assert a.get("/v1/grants").status_code == 200
    hub.ok("agent", "revoke", a.agent_id)
    r = a.post("/v1/heartbeat", {"agent_version": "1"})
    assert r.status_code == 403 and code(r) == "agent-revoked"
    assert "revoked" in r.json()["error"]["message"] and r.json()["error"]["remedy"]
    rc, _out, err = hub.cli("agent", "enable", a.agent_id)
    assert rc != 0 and "agent-revoked" in err  # revocation is final


def test_token_is_single_use(hub):
    token = hub.ok("token", "create", "--unit", "unit-tok", "--datasets", "ref").strip()
    SimAgent(hub.client()).enrol(token)
    second = SimAgent(hub.client())
    r = hub.client().post("/v1/enrol", json={"token": token, "keys": second.keys.public().to_dict()})
    assert r.status_code == 403 and code(r) == "enrolment-token-used"


def test_expired_and_unknown_tokens(hub):
    token = hub.ok("token", "create", "--unit", "unit-exp", "--ttl-minutes", "0").strip()
    keys = envelope.generate_agent_keys("INTL1").public().to_dict()
    r = hub.client().post("/v1/enrol", json={"token": token, "keys": keys})
    assert r.status_code == 403 and code(r) == "enrolment-token-expired"
    r = hub.client().post("/v1/enrol", json={"token": "edxtok_nope", "keys": keys})
    assert r.status_code == 401 and code(r) == "enrolment-token-unknown"
    before = hub.ok("agent", "list", "--json")
    r = hub.client().post("/v1/enrol", json={"token": token, "keys": {"kind": "edx-agent-public", "suite": "INTL1"}})
    assert r.status_code in (403, 422)
    assert hub.ok("agent", "list", "--json") == before


def test_enrol_with_bad_keys_is_refused_and_keeps_the_token(hub):
    token = hub.ok("token", "create", "--unit", "unit-bk").strip()
    r = hub.client().post("/v1/enrol", json={"token": token, "keys": {"kind": "edx-agent-public", "suite": "INTL1",
                                                                      "enc_public": "00", "sign_public": "00"}})
    assert r.status_code == 422 and code(r) == "agent-keys-invalid"
    SimAgent(hub.client()).enrol(token)  # the token was not consumed by the failed attempt


def test_not_shareable_dataset_can_never_be_granted(hub, tmp_path):
    (tmp_path / "s.json").write_text(json.dumps(SCHEMA))
    hub.ok("dataset", "create", "secret", "--schema", str(tmp_path / "s.json"), "--sharing", "不予共享",
           "--classification", "核心", "--personal-info", "--title", "核心数据")
    rc, _out, err = hub.cli("grant", "add", "--unit", "u", "--dataset", "secret")
    assert rc != 0 and "grant-not-shareable" in err
    rc, out, err = hub.cli("token", "create", "--unit", "u2", "--datasets", "secret")
    assert rc != 0 and out == "" and "grant-not-shareable" in err
    r = hub.admin().post("/admin/v1/grants", json={"unit": "u", "dataset": "secret"})
    assert r.status_code == 409 and code(r) == "grant-not-shareable"
    assert "secret" not in hub.ok("grant", "list")


def test_jsonl_row_not_matching_the_schema_names_the_line_and_stores_nothing(hub):
    before = json.loads(hub.ok("dataset", "list", "--json"))
    rows = students(3) + [{"id": 4, "name": "x" * 30, "score": "1.00"}]
    d = hub.data_dir.parent / "bad"
    d.mkdir(exist_ok=True)
    (d / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "schema.json").write_text(json.dumps(SCHEMA))
    rc, out, err = hub.cli("publish", "badset", str(d / "rows.jsonl"), "--kind", "snapshot",
                           "--schema", str(d / "schema.json"))
    assert rc == 65 and "data-invalid" in err and "line 4" in err and "'name'" in err and "string(20)" in err
    (d / "rows.jsonl").write_text('{"id": 1, "name": "a", "score": "1.00"}\n{"id": 2,\n')
    rc, _out, err = hub.cli("publish", "badset", str(d / "rows.jsonl"), "--kind", "snapshot",
                            "--schema", str(d / "schema.json"))
    assert rc == 65 and "line 2" in err and "not valid JSON" in err
    assert json.loads(hub.ok("dataset", "list", "--json")) == before
    assert list((hub.data_dir / "tmp").iterdir()) == []


def test_incompatible_schema_change_is_refused_unless_snapshot(hub):
    hub.publish_rows("evo", students(3), "snapshot", SCHEMA)
    narrowed = json.loads(json.dumps(SCHEMA))
    narrowed["columns"][1]["type"] = "string(5)"
    with pytest.raises(AssertionError, match="schema-change-refused"):
        hub.publish_rows("evo", [{"_op": "I", "id": 9, "name": "a", "score": None}], "changes", narrowed)
    dropped = {"columns": SCHEMA["columns"][:2], "primary_key": ["id"]}
    with pytest.raises(AssertionError, match="schema-change-refused"):
        hub.publish_rows("evo", [{"_op": "I", "id": 9, "name": "a"}], "changes", dropped)
    widened = json.loads(json.dumps(SCHEMA))
    widened["columns"].append({"name": "note", "type": "text"})
    widened["columns"][2]["type"] = "decimal(9,3)"
    res = hub.publish_rows("evo", [{"_op": "U", "id": 1, "name": "a", "score": "1.5", "note": "n"}], "changes", widened)
    assert res["schema_version"] == 2
    res = hub.publish_rows("evo", [{"id": 1, "name": "b"}], "snapshot", dropped)
    assert res["schema_version"] == 3
    show = json.loads(hub.ok("dataset", "show", "evo"))
    assert [s["version"] for s in show["schemas"]] == [1, 2, 3] and show["rows"] == 1


def test_widening_reencodes_the_hub_state_for_resync(hub):
    hub.publish_rows("wid", [{"id": 1, "name": "a", "score": "1.5"}], "snapshot", SCHEMA)
    widened = json.loads(json.dumps(SCHEMA))
    widened["columns"][2]["type"] = "decimal(9,3)"
    hub.publish_rows("wid", [{"_op": "I", "id": 2, "name": "b", "score": "2"}], "changes", widened)
    agent = hub.enrol("unit-wid", ["wid"])
    b = agent.post("/v1/resync", {"dataset": "wid"}).json()["batch"]
    header, manifest, records = agent.open(agent.download("wid", b["seq"]), "wid")
    assert sorted(f for _op, f in records) == [["1", "a", "1.500"], ["2", "b", "2.000"]]
    assert manifest.schema.version == 2


@pytest.mark.parametrize("ctype,status,err", [
    ("text/plain", 415, "content-type-unsupported"),
    (None, 415, "content-type-unsupported"),
])
def test_wrong_content_type(hub, granted, ctype, status, err):
    hdrs = {"Content-Type": ctype} if ctype else {}
    r = granted.request("POST", "/v1/heartbeat", raw=b"{}", headers=hdrs, content_type=ctype or "")
    assert r.status_code == status and code(r) == err


def test_malformed_json_and_invalid_bodies(hub, granted):
    r = granted.post("/v1/heartbeat", raw=b'{"agent_version": ')
    assert r.status_code == 400 and code(r) == "request-invalid"
    r = granted.post("/v1/feedback", {"dataset": "ref"})
    assert r.status_code == 422 and code(r) == "request-invalid" and "message" in r.json()["error"]["message"]
    r = hub.client().post("/v1/enrol", content=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert r.status_code in (400, 422) and code(r) == "request-invalid"


def test_oversized_bodies_are_refused_before_reading(hub, granted):
    big = b'{"message": "' + b"x" * (1 << 20) + b'"}'
    r = granted.post("/v1/requests", raw=big)
    assert r.status_code == 413 and code(r) == "request-too-large"
    r = granted.post("/v1/diagnostics", raw=b"PK\x03\x04" + b"\0" * (21 << 20), content_type="application/zip")
    assert r.status_code == 413
    r = granted.post("/v1/diagnostics", raw=b"not a zip", content_type="application/zip")
    assert r.status_code == 422 and code(r) == "request-invalid"


def test_an_agent_sees_nothing_of_another_unit(hub, granted):
    hub.publish_rows("other_units_data", students(3), "snapshot", SCHEMA)
    other = hub.enrol("unit-other", ["other_units_data"])
    other.batches("other_units_data")
    for target in ("/v1/batches?dataset=other_units_data", "/v1/batches/other_units_data/1/envelope"):
        r = granted.get(target)
        assert r.status_code == 403 and code(r) == "grant-missing"
    r = granted.post("/v1/resync", {"dataset": "other_units_data"})
    assert r.status_code == 403
    r = granted.get("/v1/batches?dataset=no_such_dataset")
    assert r.status_code == 403 and code(r) == "grant-missing"  # same answer: existence is not disclosed
    assert [g["dataset"] for g in granted.get("/v1/grants").json()["grants"]] == ["ref"]


def test_revoked_grant_stops_delivery_and_says_so(hub):
    hub.publish_rows("gr", students(3), "snapshot", SCHEMA)
    a = hub.enrol("unit-gr", ["gr"])
    hub.ok("grant", "revoke", "--unit", "unit-gr", "--dataset", "gr")
    r = a.get("/v1/batches?dataset=gr")
    assert r.status_code == 403 and code(r) == "grant-revoked"
    g = a.get("/v1/grants").json()["grants"][0]
    assert g["state"] == "revoked"
    hub.ok("grant", "add", "--unit", "unit-gr", "--dataset", "gr", "--end", "2000-01-01")
    assert a.get("/v1/grants").json()["grants"][0]["state"] == "revoked"  # past its end date


def test_admin_endpoints_need_the_token(hub):
    r = hub.client().get("/admin/v1/agents")
    assert r.status_code == 401 and code(r) == "admin-auth-required"
    r = hub.client(headers={"Authorization": "Bearer wrong"}).get("/admin/v1/agents")
    assert r.status_code == 401
    assert hub.admin().get("/admin/v1/agents").status_code == 200


def test_replayed_heartbeat_writes_nothing_and_takes_no_command(hub):
    # the heartbeat is the hot path with its own single-statement nonce check on PostgreSQL
    hub.publish_rows("rhb", students(3), "snapshot", SCHEMA)
    a = hub.enrol("unit-rhb", ["rhb"])
    nonce = "ef" * 16
    assert a.post("/v1/heartbeat", {"hostname": "first"}, nonce=nonce).status_code == 200
    cid = hub.ok("agent", "command", a.agent_id, "--type", "doctor").strip()
    r = a.post("/v1/heartbeat", {"hostname": "replayed"}, nonce=nonce)
    assert r.status_code == 401 and code(r) == "auth-replayed"
    view = hub.admin().get(f"/admin/v1/fleet/agents/{a.agent_id}").json()
    assert view["hostname"] == "first" and view["heartbeats"] == 1
    assert a.post("/v1/heartbeat", {"hostname": "second"}).json()["commands"] == [
        {"id": cid, "type": "doctor", "dataset": None}]
