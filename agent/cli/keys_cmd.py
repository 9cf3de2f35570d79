"""``edx-agent keys``: rotate the agent's key pair, list the keys held, prune old ones no longer needed.

Rotation is crash-safe: the new key is saved and marked pending before the hub is told; if the agent
stops before it records the hub's answer, running ``keys rotate`` again re-sends the same key (the hub
treats the key that is already current as a no-op). The previous private key is kept until no batch
sealed to it waits in the spool and the grace period has passed (``keys prune``).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .. import envelope
from ..client import HubClient
from ..config import load, parse_duration
from ..errors import AuthError
from ..state import StateDir, now_iso


def register(sub: Any) -> None:
    p = sub.add_parser("keys", help="rotate, list or prune this agent's keys")
    p.add_argument("action", choices=["rotate", "list", "prune"])
    p.add_argument("--grace", default="7d", help="prune: keep previous keys at least this long (default 7d)")
    p.set_defaults(func=run)


def _client(cfg: Any, enr: Any, keys: Any) -> HubClient:
    return HubClient.from_config(cfg, agent_id=enr.agent_id, keys=keys, base_url=cfg.hub.url or enr.hub_url)


def rotate(cfg: Any, state: StateDir, audit: Any = None) -> str:
    enr = state.enrolment()
    current = state.load_keys(enr.key_id)
    if enr.pending_key_id:
        new = state.load_keys(enr.pending_key_id)
    else:
        new = envelope.generate_agent_keys(current.suite)
        enr.pending_key_id = state.save_keys(new)
        state.save_enrolment(enr)
    try:
        _client(cfg, enr, current).rotate_keys(new.public().to_dict())
    except AuthError:
        # the hub may already have switched to the new key before this agent recorded it
        _client(cfg, enr, new).rotate_keys(new.public().to_dict())
    old = enr.key_id
    enr.previous_key_ids = [old, *[k for k in enr.previous_key_ids if k != old]]
    enr.key_id, enr.pending_key_id, enr.rotated_at = enr.pending_key_id, "", now_iso()
    state.save_enrolment(enr)
    state.set_current_key(enr.key_id)
    if audit:
        audit("keys_rotated", outcome="ok", old_key_id=old, new_key_id=enr.key_id)
    return enr.key_id


def spooled_key_ids(cfg: Any, state: StateDir) -> set[str]:
    """Recipient key ids of every sealed batch still waiting in the spool."""
    from ..runtime import hub_keys

    trusted = hub_keys(state.enrolment())
    ids: set[str] = set()
    for path in cfg.spool_dir.rglob("*.edx"):
        try:
            with path.open("rb") as f:
                ids.add(envelope.read_header(f, trusted=trusted, allowed_suites=list(envelope.Suite))
                        .recipient_key_id.hex())
        except Exception:  # an unreadable spool file keeps every key: better one key too many
            return {"*"}
    return ids


def prune(cfg: Any, state: StateDir, grace_s: float) -> list[str]:
    enr = state.enrolment()
    if not enr.previous_key_ids or not enr.rotated_at:
        return []
    age = (dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(enr.rotated_at)).total_seconds()
    if age < grace_s:
        return []
    needed = spooled_key_ids(cfg, state)
    removed = [k for k in enr.previous_key_ids if "*" not in needed and k not in needed]
    for k in removed:
        (state.keys_dir / f"{k}.json").unlink(missing_ok=True)
    enr.previous_key_ids = [k for k in enr.previous_key_ids if k not in removed]
    state.save_enrolment(enr)
    return removed


def run(args: Any) -> int:
    cfg = load(args.config)
    state = StateDir(cfg.state_dir)
    if args.action == "rotate":
        from .. import audit

        kid = rotate(cfg, state, audit=audit.for_config(cfg).record)
        print(f"new key {kid} registered with the platform; previous key kept until its batches are applied")
        print("a running service picks it up on reload: systemctl reload edx-agent")
        return 0
    if args.action == "prune":
        removed = prune(cfg, state, parse_duration(args.grace))
        print(f"removed {len(removed)} previous key(s)" + (f": {', '.join(removed)}" if removed else ""))
        return 0
    enr = state.enrolment()
    doc = {"current": enr.key_id, "previous": enr.previous_key_ids, "pending": enr.pending_key_id or None,
           "rotated_at": enr.rotated_at or None}
    print(json.dumps(doc, indent=2) if args.json else
          f"current {doc['current']}; previous {', '.join(doc['previous']) or '(none)'}"
          + (f"; pending {doc['pending']}" if doc["pending"] else ""))
    return 0
