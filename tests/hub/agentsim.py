"""A minimal agent for the hub tests: enrols, signs requests, downloads and opens envelopes, acks with receipts.

Deliberately independent of the real agent (agent/pipeline.py): it speaks docs/protocol.md directly,
so a hub that drifts from the document fails here even if the agent drifts the same way.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import httpx

from agent import envelope, reqsign
from agent.payload import Checksum, Manifest, iter_records
from agent.reconcile import expected_checksum


class SimAgent:
    def __init__(self, client: httpx.Client, suite: str = "INTL1") -> None:
        self.client = client
        self.keys = envelope.generate_agent_keys(suite)
        self.agent_id = ""
        self.unit = ""
        self.hub_keys: list[Any] = []

    # --- transport ---------------------------------------------------------------------------

    def request(self, method: str, target: str, body: Any = None, *, raw: bytes | None = None,
                content_type: str = "application/json", headers: dict[str, str] | None = None,
                sign: bool = True, now_ms: int | None = None, nonce: str | None = None) -> httpx.Response:
        data = raw if raw is not None else (b"" if body is None else json.dumps(body).encode())
        hdrs = dict(headers or {})
        if data or method == "POST":
            hdrs.setdefault("Content-Type", content_type)
        if sign:
            hdrs.update(reqsign.sign_request(self.agent_id, self.keys, method, target, data,
                                             now_ms=now_ms, nonce=nonce))
        return self.client.request(method, target, content=data, headers=hdrs)

    def get(self, target: str, **kw: Any) -> httpx.Response:
        return self.request("GET", target, **kw)

    def post(self, target: str, body: Any = None, **kw: Any) -> httpx.Response:
        return self.request("POST", target, body, **kw)

    # --- protocol steps ----------------------------------------------------------------------

    def enrol(self, token: str) -> dict[str, Any]:
        r = self.client.post("/v1/enrol", json={"token": token, "hostname": "test-host", "agent_version": "0.1.0",
                                                "keys": self.keys.public().to_dict()})
        assert r.status_code == 200, r.text
        doc = r.json()
        self.agent_id, self.unit = doc["agent_id"], doc["unit"]
        self.hub_keys = [envelope.VerifyKey.from_dict(k) for k in doc["hub_keys"]]
        return doc

    def batches(self, dataset: str, after: int = 0, limit: int = 100) -> dict[str, Any]:
        r = self.get(f"/v1/batches?dataset={dataset}&after={after}&limit={limit}")
        assert r.status_code == 200, r.text
        return r.json()

    def download(self, dataset: str, seq: int) -> bytes:
        r = self.get(f"/v1/batches/{dataset}/{seq}/envelope")
        assert r.status_code == 200, r.text
        return r.content

    def open(self, blob: bytes, dataset: str) -> tuple[Any, Manifest, list[tuple[str, list[str | None]]]]:
        """Verify and decrypt an envelope the way an agent must: header, context, every chunk, payload."""
        header = envelope.read_header(io.BytesIO(blob), trusted=self.hub_keys,
                                      allowed_suites=[self.keys.suite])
        envelope.check_context(header, recipient_id=self.agent_id, recipient_keys=self.keys,
                               dataset_id=dataset, now_ms=int(time.time() * 1000))
        envelope.verify_stream(io.BytesIO(blob), header, self.keys)
        stream = envelope.open_payload(io.BytesIO(blob), header, self.keys)
        reader = io.BufferedReader(stream)
        manifest = Manifest.read_from(reader)
        records = list(iter_records(reader))
        stream.finish()
        return header, manifest, records

    def ack(self, dataset: str, seq: int, header: Any, manifest: Manifest,
            records: list[tuple[str, list[str | None]]], checksum: dict[str, Any] | None = None) -> httpx.Response:
        figure = checksum or expected_checksum(manifest.kind, manifest.schema, records)
        receipt = envelope.sign_receipt(self.keys, header.hh, dataset, seq,
                                        {"applied": len(records), "quarantined": 0}, figure,
                                        int(time.time() * 1000))
        return self.post(f"/v1/batches/{dataset}/{seq}/ack", {"receipt": receipt})

    def sync(self, dataset: str, after: int = 0) -> tuple[int, dict[str, list[str | None]]]:
        """Pull and apply every pending batch into an in-memory table; returns (cursor, table)."""
        table: dict[str, list[str | None]] = {}
        cursor = after
        while True:
            listing = self.batches(dataset, cursor)
            if not listing["batches"]:
                return cursor, table
            for b in listing["batches"]:
                header, manifest, records = self.open(self.download(dataset, b["seq"]), dataset)
                assert header.batch_seq == b["seq"] and header.hh_hex == b["hh"]
                if manifest.kind == "snapshot":
                    table.clear()
                pk = [manifest.schema.names.index(k) for k in manifest.schema.primary_key]
                for op, fields in records:
                    key = json.dumps([fields[i] for i in pk])
                    if op == "D":
                        table.pop(key, None)
                    else:
                        table[key] = fields
                assert self.ack(dataset, b["seq"], header, manifest, records).status_code == 200
                cursor = b["seq"]


def table_checksum(table: dict[str, list[str | None]]) -> Checksum:
    ck = Checksum()
    for fields in table.values():
        ck.add(fields)
    return ck
