"""Schemathesis against the real hub's /openapi.json: generated requests, correctly signed, never get a 5xx
and every answer conforms to the documented schema, status codes and content types.

Requests are signed in a requests ``AuthBase`` hook, after schemathesis has serialised the body, so
the fuzzing reaches the handlers instead of stopping at the signature check.
"""

from __future__ import annotations

import pytest
import requests

from agent import reqsign

from .conftest import SCHEMA, HubProcess, students

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (test extra) to fuzz the API")


class SignedAuth(requests.auth.AuthBase):
    def __init__(self, agent, admin_token: str) -> None:
        self.agent = agent
        self.admin_token = admin_token

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        if r.path_url.startswith("/admin/"):
            r.headers["Authorization"] = f"Bearer {self.admin_token}"
        else:
            r.headers.update(reqsign.sign_request(self.agent.agent_id, self.agent.keys, r.method or "GET",
                                                  r.path_url, body))
        return r


@pytest.fixture(scope="module")
def fuzz_hub(tmp_path_factory, tls):
    h = HubProcess(tmp_path_factory.mktemp("fuzz") / "data", None, tls)
    h.start()
    h.publish_rows("fz", students(20), "snapshot", SCHEMA)
    agent = h.enrol("unit-fuzz", ["fz"])
    agent.batches("fz")
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override verify
    session.verify = str(tls["ca"])
    session.auth = SignedAuth(agent, h.ok("admin-token").strip())
    yield h, session
    h.stop()


def _schema(fuzz_hub):
    h, session = fuzz_hub
    doc = session.get(f"{h.url}/openapi.json").json()
    return schemathesis.openapi.from_dict(doc)


def test_openapi_document_names_every_agent_endpoint(fuzz_hub):
    h, session = fuzz_hub
    doc = session.get(f"{h.url}/openapi.json").json()
    for path in ("/v1/hello", "/v1/enrol", "/v1/grants", "/v1/batches", "/v1/batches/{dataset}/{seq}/envelope",
                 "/v1/batches/{dataset}/{seq}/ack", "/v1/resync", "/v1/heartbeat", "/v1/commands/{command_id}/result",
                 "/v1/feedback", "/v1/requests", "/v1/test-reports", "/v1/diagnostics", "/v1/test-batch",
                 "/v1/batches/wait"):
        assert path in doc["paths"], path
    assert doc["paths"]["/v1/grants"]["get"]["security"] == [
        {"XEDXAgent": [], "XEDXTime": [], "XEDXNonce": [], "XEDXSignature": []}]


def test_no_5xx_and_responses_match_the_schema(fuzz_hub):
    from hypothesis import HealthCheck, given, settings
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                    status_code_conformance)

    h, session = fuzz_hub
    schema = _schema(fuzz_hub)
    failures: list[str] = []
    calls: list[int] = []
    ops = [op.ok() for op in schema.get_all_operations()]
    assert len(ops) >= 20
    for op in ops:
        if op.path == "/v1/diagnostics":
            continue  # binary body: covered by test_refusals (size, content type, not a zip)

        @settings(max_examples=25, deadline=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):
            if case.operation.path == "/v1/batches/wait":
                # the long-poll would hold each valid case up to 55 s: keep the fuzzed cursors, wait briefly
                q = case.query if isinstance(case.query, dict) else {}
                if not isinstance(q.get("wait"), str):
                    case.query = {**q, "wait": 0.2}
            try:
                resp = case.call(base_url=h.url, session=session, verify=session.verify)
                calls.append(resp.status_code)
                case.validate_response(resp, checks=[not_a_server_error, status_code_conformance,
                                                     content_type_conformance, response_schema_conformance])
            except (Exception, BaseExceptionGroup) as e:  # collect every failure, report them together below
                failures.append(f"{case.method} {case.formatted_path}: {type(e).__name__}: {str(e)[:300]}")
                raise

        try:
            run()
        except (Exception, BaseExceptionGroup):
            if not failures:
                raise  # a failure outside the call (e.g. strategy generation) must not pass silently
    assert not failures, "\n".join(sorted(set(failures))[:20])
    assert len(calls) >= 10 * len(ops) and 200 in calls  # the fuzzing really reached the handlers
    # and the hub survived it all
    assert session.get(f"{h.url}/v1/hello").status_code == 200
