"""The agent's local state directory: its keys, its enrolment, cached grants and per-dataset status.

Layout under ``agent.state_dir``::

    keys/<key_id>.json    the agent's private keys (0600), current and previous during rotation
    enrolment.json        agent id, unit, hub URL, the hub's pinned signing keys, current key id
    grants.json           the grants last received from the hub
    status.json           per-dataset status shown by ``status`` and sent in heartbeats
    spool/                sealed envelopes being downloaded or waiting to be applied

What was applied is *not* here: the checkpoint lives in the target database, in the same transaction
as the rows. Every file is written atomically (agent.fsutil).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import envelope
from .errors import KeyFileError, NotEnrolled
from .fsutil import atomic_write_json, read_json

SUITES = {"intl": 1, "gm": 2}


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Enrolment:
    agent_id: str
    unit: str
    hub_url: str
    hub_keys: list[dict[str, Any]]
    key_id: str
    previous_key_ids: list[str]
    enrolled_at: str
    api_version: str = "1"
    pending_key_id: str = ""   # a rotation sent to the hub but not yet confirmed (crash-safe resume)
    rotated_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class StateDir:
    """Access to the files of one agent's state directory."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- layout
    @property
    def keys_dir(self) -> Path:
        return self.root / "keys"

    def ensure(self) -> None:
        for d in (self.root, self.keys_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o700)

    # -- keys
    def save_keys(self, keys: "envelope.AgentKeys") -> str:
        self.ensure()
        kid = keys.key_id.hex() if isinstance(keys.key_id, bytes) else str(keys.key_id)
        atomic_write_json(self.keys_dir / f"{kid}.json", keys.to_dict(), mode=0o600)
        return kid

    def load_keys(self, key_id: str) -> "envelope.AgentKeys":
        path = self.keys_dir / f"{key_id}.json"
        doc = read_json(path)
        if doc is None:
            raise KeyFileError(f"{path} is missing",
                               remedy="Restore the state directory from backup, or re-run init and enrol.")
        try:
            return envelope.AgentKeys.from_dict(doc)
        except Exception as e:  # a corrupt key file is a config problem, whatever the parser raised
            raise KeyFileError(f"{path}: {e}") from None

    def pending_key_id(self) -> str | None:
        """The key created by ``init`` before enrolment (or the current one after)."""
        doc = read_json(self.root / "keys" / "current.json")
        return doc.get("key_id") if doc else None

    def set_current_key(self, key_id: str) -> None:
        atomic_write_json(self.keys_dir / "current.json", {"key_id": key_id})

    def recipient_keys(self) -> list["envelope.AgentKeys"]:
        """Current key first, then previous ones still held for batches sealed to them."""
        enr = self.enrolment()
        return [self.load_keys(k) for k in [enr.key_id, *enr.previous_key_ids]]

    # -- enrolment
    def enrolment(self) -> Enrolment:
        doc = read_json(self.root / "enrolment.json")
        if not doc:
            raise NotEnrolled()
        return Enrolment(**doc)

    def is_enrolled(self) -> bool:
        return (self.root / "enrolment.json").exists()

    def save_enrolment(self, enr: Enrolment) -> None:
        atomic_write_json(self.root / "enrolment.json", enr.to_dict())

    # -- receipts: our own signed copies, verifiable offline (`edx-agent receipts verify`)
    @property
    def receipts_path(self) -> Path:
        return self.root / "receipts.jsonl"

    def keep_receipt(self, receipt: dict[str, Any]) -> None:
        import json

        with self.receipts_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(receipt, sort_keys=True, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def receipts(self) -> list[dict[str, Any]]:
        import json

        if not self.receipts_path.exists():
            return []
        return [json.loads(line) for line in self.receipts_path.read_text(encoding="utf-8").splitlines() if line]

    # -- grants and status
    def grants(self) -> list[dict[str, Any]]:
        return read_json(self.root / "grants.json", {"grants": []})["grants"]

    def save_grants(self, grants: list[dict[str, Any]]) -> None:
        atomic_write_json(self.root / "grants.json", {"grants": grants, "updated_at": now_iso()})

    def status(self) -> dict[str, Any]:
        return read_json(self.root / "status.json", {"datasets": {}})

    def update_status(self, dataset: str, **fields: Any) -> dict[str, Any]:
        doc = self.status()
        entry = doc.setdefault("datasets", {}).setdefault(dataset, {})
        entry.update(fields)
        entry["updated_at"] = now_iso()
        atomic_write_json(self.root / "status.json", doc)
        return entry
