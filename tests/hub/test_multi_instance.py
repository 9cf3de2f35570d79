"""Two hub processes on one PostgreSQL store and one data directory, as behind a load balancer: they agree."""

from __future__ import annotations

import json

import pytest

from .agentsim import SimAgent
from .conftest import SCHEMA, HubProcess, _pg_schema_reset, students


@pytest.fixture(scope="module")
def pair(tmp_path_factory, tls, pg_server_url):
    _pg_schema_reset(pg_server_url)
    data = tmp_path_factory.mktemp("pair") / "data"
    a, b = HubProcess(data, pg_server_url, tls), HubProcess(data, pg_server_url, tls)
    a.start()
    b.start()
    yield a, b
    a.stop()
    b.stop()


def test_a_request_replayed_to_another_instance_is_refused(pair):
    a, b = pair
    a.publish_rows("mi", students(10), "snapshot", SCHEMA)
    agent = a.enrol("unit-mi", ["mi"])
    nonce = "cd" * 16
    assert agent.get("/v1/grants", nonce=nonce).status_code == 200
    other = SimAgent(b.client())
    other.agent_id, other.keys = agent.agent_id, agent.keys
    r = other.get("/v1/grants", nonce=nonce)
    assert r.status_code == 401 and r.json()["error"]["code"] == "auth-replayed"


def test_instances_share_enrolment_tokens_and_chains(pair):
    a, b = pair
    token = a.ok("token", "create", "--unit", "unit-mi2", "--datasets", "mi").strip()
    first = SimAgent(a.client())
    first.enrol(token)
    r = b.client().post("/v1/enrol", json={"token": token, "keys": SimAgent(b.client()).keys.public().to_dict()})
    assert r.status_code == 403 and r.json()["error"]["code"] == "enrolment-token-used"
    on_b = SimAgent(b.client())
    on_b.agent_id, on_b.keys, on_b.hub_keys = first.agent_id, first.keys, first.hub_keys
    listing_a = first.batches("mi")["batches"]
    listing_b = on_b.batches("mi")["batches"]
    assert listing_a == listing_b  # the envelope sealed by one instance is the one the other serves
    a.publish_rows("mi", [{"_op": "D", "id": 1}], "changes")
    cursor, table = on_b.sync("mi")
    assert cursor == 2 and len(table) == 9
    # revocation on one instance's CLI is seen by the other at once
    b.ok("agent", "revoke", first.agent_id)
    r = first.get("/v1/grants")
    assert r.status_code == 403 and r.json()["error"]["code"] == "agent-revoked"
    assert json.loads(a.ok("dataset", "show", "mi"))["rows"] == 9
