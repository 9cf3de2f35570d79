"""The joint-debug (前置环境联调) test batch: a small synthetic snapshot sealed for one agent on request.

It exercises everything a real batch does (signature, key unwrap, chunked AEAD, every portable type the
agent must map) but belongs to no sequence: dataset ``edx_selftest``, seq 1, ``prev_hh`` zero, so the
agent loads it into its sandbox schema and never confuses it with granted data.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

from agent.payload import Checksum, RowEncoder, encode_record, manifest_line
from agent.schema import Schema

from .context import HubContext
from .enrolment import parse_public_keys
from .sealing import EXT_EXPECTED, schema_hash
from .store import now_ms

DATASET = "edx_selftest"
SCHEMA = Schema.from_dict({
    "columns": [
        {"name": "id", "type": "int64", "nullable": False},
        {"name": "name", "type": "string(40)"},
        {"name": "score", "type": "decimal(5,2)"},
        {"name": "born", "type": "date"},
        {"name": "active", "type": "bool"},
        {"name": "updated_at", "type": "timestamptz"},
        {"name": "note", "type": "text"},
        {"name": "weight", "type": "float64"},
    ],
    "primary_key": ["id"],
})
_SURNAMES = "王李张刘陈杨黄赵吴周"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "磊", "洋", "艳", "勇", "军"]
ROWS = 50


def rows() -> list[dict[str, Any]]:
    base = dt.datetime(2024, 9, 1, 8, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    out = []
    for i in range(1, ROWS + 1):
        out.append({
            "id": i, "name": _SURNAMES[i % 10] + _GIVEN[(i * 7) % 10],
            "score": f"{(i * 37) % 10000 / 100:.2f}", "born": (dt.date(2010, 1, 1) + dt.timedelta(days=i * 11)).isoformat(),
            "active": i % 3 != 0, "updated_at": (base + dt.timedelta(minutes=i)).isoformat(),
            "note": None if i % 5 == 0 else f'第{i}行, "quoted", NULL',  # commas, quotes and the text NULL
            "weight": i / 3,
        })
    return out


def sealed_test_batch(ctx: HubContext, agent: dict[str, Any]) -> tuple[bytes, Any]:
    from agent.envelope import compress_payload, seal

    enc = RowEncoder(SCHEMA, "snapshot")
    data = rows()
    plain = io.BytesIO()
    plain.write(manifest_line(DATASET, "snapshot", SCHEMA, len(data)))
    ck = Checksum()
    for n, r in enumerate(data, 1):
        op, fields = enc.fields_from_mapping(r, f"selftest row {n}")
        plain.write(encode_record(op, fields).encode())
        ck.add(fields)
    plain.seek(0)
    suite = int(agent["suite"])
    compressed = io.BytesIO()
    info = compress_payload(plain, compressed, suite)
    compressed.seek(0)
    out = io.BytesIO()
    header = seal(out, compressed, info, suite=suite, signer=ctx.signers[suite], recipient_id=agent["agent_id"],
                  recipient=parse_public_keys(json.loads(agent["keys_json"])), dataset_id=DATASET, batch_seq=1,
                  prev_hh=bytes(32), kind="snapshot", schema_version=1, schema_hash=schema_hash(SCHEMA, suite),
                  row_count=len(data), created_at_ms=now_ms(), chunk_size=1024,
                  extensions={EXT_EXPECTED: json.dumps({**ck.to_dict(), "deleted": 0}, sort_keys=True).encode()})
    return out.getvalue(), header
