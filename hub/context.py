"""The hub's data directory and the handles built from it: store engine, blob store, signing keys, admin token.

Layout of ``--data-dir`` (created on first use, mode 0700):

    hub.db                 SQLite store (unless --db / EDX_HUB_DB_URL names PostgreSQL)
    keys/signer-<suite>.json   the hub's private signing key per cipher suite (0600)
    admin-token            bearer token for /admin/v1 and /fleet (0600)
    blobs/                 filesystem blob store (payloads, sealed envelopes, diagnostics)
    tmp/                   work files while publishing and sealing (same file system as blobs/)

Several hub instances share one data directory (keys, token, blobs) and one PostgreSQL database.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from agent.errors import ConfigError

from .blobs import BlobStore, FilesystemBlobStore
from .store import make_engine

ENV_DATA_DIR = "EDX_HUB_DATA_DIR"
ENV_DB_URL = "EDX_HUB_DB_URL"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


@dataclass
class Settings:
    """Tunables with safe defaults; the CLI exposes the ones an operator changes."""

    token_ttl_s: int = 1800
    heartbeat_interval_s: int = 30
    offline_after_beats: int = 3          # Offline after this many missed heartbeats
    max_json_body: int = 1 << 20
    max_diagnostics_body: int = 20 << 20
    batch_expiry_s: int = 0               # 0: envelopes do not expire
    seal_on_publish: bool = True


@dataclass
class HubContext:
    """Everything a request handler or an admin command needs; cheap to build, safe to share."""

    data_dir: Path
    db_url: str | None = None
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.data_dir / "keys").mkdir(exist_ok=True, mode=0o700)
        self.tmp_dir.mkdir(exist_ok=True, mode=0o700)
        if self.db_url is None:
            self.db_url = os.environ.get(ENV_DB_URL) or f"sqlite:///{self.data_dir / 'hub.db'}"

    @classmethod
    def from_args(cls, data_dir: str | None, db_url: str | None = None) -> "HubContext":
        d = data_dir or os.environ.get(ENV_DATA_DIR)
        if not d:
            raise ConfigError("no data directory: pass --data-dir DIR or set EDX_HUB_DATA_DIR")
        return cls(Path(d), db_url)

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @cached_property
    def engine(self) -> Engine:
        assert self.db_url is not None
        return make_engine(self.db_url)

    @cached_property
    def blobs(self) -> BlobStore:
        return FilesystemBlobStore(self.data_dir / "blobs")

    @cached_property
    def signers(self) -> dict[int, Any]:
        """The hub's signing key per suite, generated on first use (a key file is never overwritten)."""
        from agent.envelope import SignerKey, Suite, generate_signer_key

        out: dict[int, Any] = {}
        for suite in Suite:
            path = self.data_dir / "keys" / f"signer-{int(suite)}.json"
            if not path.exists():
                key = generate_signer_key(suite)
                try:
                    _write_private(path, json.dumps(key.to_dict()).encode())
                except FileExistsError:
                    pass  # another instance or command won the race; use its key
            out[int(suite)] = SignerKey.from_dict(json.loads(path.read_text()))
        return out

    def hub_keys(self) -> list[dict[str, Any]]:
        """The public signing keys an agent pins at enrolment (VerifyKey dicts)."""
        return [s.public().to_dict() for s in self.signers.values()]

    @cached_property
    def admin_token(self) -> str:
        path = self.data_dir / "admin-token"
        if not path.exists():
            try:
                _write_private(path, ("edxadm_" + secrets.token_urlsafe(32)).encode())
            except FileExistsError:
                pass
        return path.read_text().strip()

    def init(self) -> None:
        """Create everything a fresh data directory needs (store tables, keys, admin token)."""
        _ = self.engine, self.blobs, self.signers, self.admin_token
