"""The hub's HTTP API (FastAPI): agent protocol under /v1, admin under /admin/v1; see docs/protocol.md."""

from .app import create_app

__all__ = ["create_app"]
