"""Status intake: heartbeats, the command queue they return, and the messages agents send (feedback, requests, reports).

A heartbeat is stored as one JSON document on the agent's row (one UPDATE per beat, whatever the number
of datasets): at 10,000 agents beating every 30 s that is what keeps the store's write load flat. The
fleet view parses it when someone looks. Pending commands go out once in a heartbeat reply and are
marked sent; the agent reports each outcome with POST /v1/commands/{id}/result.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, text, update

from .errors import CommandUnknown, RequestInvalid
from .store import agents, commands, messages, now_ms

COMMAND_TYPES = ("resync", "doctor", "diagnostics")
MESSAGE_KINDS = ("feedback", "request", "test-report", "diagnostics")


# built once: statement construction dominated the heartbeat's CPU cost
_BEAT = update(agents).where(agents.c.agent_id == bindparam("b_aid")).values(
    last_seen_ms=bindparam("b_now"), heartbeat_json=bindparam("b_json"), agent_version=bindparam("b_ver"),
    hostname=bindparam("b_host"), heartbeats=agents.c.heartbeats + 1)
_PENDING = (select(commands.c.id, commands.c.type, commands.c.dataset)
            .where(commands.c.agent_id == bindparam("b_aid"), commands.c.state == "pending")
            .order_by(commands.c.created_at_ms))


def record_heartbeat(conn: Connection, agent: dict[str, Any], beat_json: str, agent_version: str,
                     hostname: str) -> list[dict[str, Any]]:
    """Store the beat (validated JSON text, as sent) and hand out pending commands, marked sent in the same
    transaction."""
    now = now_ms()
    conn.execute(_BEAT, {"b_aid": agent["agent_id"], "b_now": now, "b_json": beat_json,
                         "b_ver": (agent_version or agent["agent_version"])[:64],
                         "b_host": (hostname or agent["hostname"])[:255]})
    pending = conn.execute(_PENDING, {"b_aid": agent["agent_id"]}).all()
    if pending:
        conn.execute(update(commands).where(commands.c.id.in_([p.id for p in pending]))
                     .values(state="sent", sent_at_ms=now))
    return [{"id": p.id, "type": p.type, **({"dataset": p.dataset} if p.dataset else {})} for p in pending]


_BEAT_PG = text("""
WITH n AS (
    INSERT INTO hub_nonces (agent_id, nonce, expires_ms) VALUES (:aid, :nonce, :exp)
    ON CONFLICT DO NOTHING RETURNING 1),
u AS (
    UPDATE hub_agents SET last_seen_ms = :now, heartbeat_json = :json, agent_version = :ver, hostname = :host,
           heartbeats = heartbeats + 1
    WHERE agent_id = :aid AND EXISTS (SELECT 1 FROM n) RETURNING 1),
c AS (
    UPDATE hub_commands SET state = 'sent', sent_at_ms = :now
    WHERE agent_id = :aid AND state = 'pending' AND EXISTS (SELECT 1 FROM n)
    RETURNING id, type, dataset, created_at_ms)
SELECT (SELECT count(*) FROM n) AS fresh, (SELECT count(*) FROM u) AS stored, c.id, c.type, c.dataset
FROM (SELECT 1) AS one LEFT JOIN c ON true ORDER BY c.created_at_ms
""")


def record_heartbeat_pg(conn: Connection, agent: dict[str, Any], nonce: str, nonce_expires: int, beat_json: str,
                        agent_version: str, hostname: str, now: int) -> list[dict[str, Any]]:
    """PostgreSQL: the nonce, the status and the commands in one statement; a replayed nonce writes nothing."""
    from agent.reqsign import RequestReplayed

    rows = conn.execute(_BEAT_PG, {"aid": agent["agent_id"], "nonce": nonce, "exp": nonce_expires, "now": now,
                                   "json": beat_json, "ver": (agent_version or agent["agent_version"])[:64],
                                   "host": (hostname or agent["hostname"])[:255]}).all()
    if not rows or not rows[0].fresh:
        raise RequestReplayed(f"nonce {nonce} from agent {agent['agent_id']}")
    return [{"id": r.id, "type": r.type, **({"dataset": r.dataset} if r.dataset else {})} for r in rows if r.id]


def queue_command(conn: Connection, agent_id: str, type_: str, dataset: str | None = None) -> str:
    if type_ not in COMMAND_TYPES:
        raise RequestInvalid(f"command type {type_!r}: one of {', '.join(COMMAND_TYPES)}")
    if type_ == "resync" and not dataset:
        raise RequestInvalid("a resync command needs a dataset")
    cid = "cmd-" + secrets.token_hex(8)
    conn.execute(insert(commands).values(id=cid, agent_id=agent_id, type=type_, dataset=dataset,
                                         state="pending", created_at_ms=now_ms()))
    return cid


def command_result(conn: Connection, agent_id: str, cid: str, ok: bool, detail: str,
                   report: Any = None) -> dict[str, Any]:
    row = conn.execute(select(commands).where(commands.c.id == cid, commands.c.agent_id == agent_id)).mappings().first()
    if row is None:
        raise CommandUnknown(repr(cid))
    conn.execute(update(commands).where(commands.c.id == cid).values(
        state="done" if ok else "failed", done_at_ms=now_ms(),
        result_json=json.dumps({"ok": ok, "detail": detail, "report": report}, ensure_ascii=False)))
    return {"id": cid, "state": "done" if ok else "failed"}


def list_commands(conn: Connection, agent_id: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = conn.execute(select(commands).where(commands.c.agent_id == agent_id)
                        .order_by(commands.c.created_at_ms.desc()).limit(limit)).mappings().all()
    return [dict(r) | {"result": json.loads(r["result_json"]) if r["result_json"] else None} for r in rows]


def add_message(conn: Connection, agent: dict[str, Any], kind: str, body: dict[str, Any], *,
                dataset: str | None = None, seq: int | None = None, blob_key: str | None = None) -> int:
    assert kind in MESSAGE_KINDS
    res = conn.execute(insert(messages).values(
        agent_id=agent["agent_id"], unit=agent["unit"], kind=kind, dataset=dataset, seq=seq,
        body_json=json.dumps(body, ensure_ascii=False), blob_key=blob_key, created_at_ms=now_ms()))
    return int(res.inserted_primary_key[0])


def list_messages(conn: Connection, *, agent_id: str | None = None, kind: str | None = None,
                  limit: int = 100) -> list[dict[str, Any]]:
    q = select(messages).order_by(messages.c.id.desc()).limit(limit)
    if agent_id:
        q = q.where(messages.c.agent_id == agent_id)
    if kind:
        q = q.where(messages.c.kind == kind)
    return [dict(r) | {"body": json.loads(r["body_json"])} for r in conn.execute(q).mappings()]
