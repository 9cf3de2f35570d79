"""Translation of driver and SQLAlchemy exceptions into the project's error tree (the connector seam).

Each database module supplies ``_error_class(orig)``: the driver's own codes (MySQL error numbers,
PostgreSQL SQLSTATEs, SQLite result codes) mapped to a class of the tree. What it does not know falls
back on SQLAlchemy's disconnect detection, then on the generic ``ConnectorError``.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from agent.errors import AgentError, ConnectorError, DatabaseUnavailable


def classify(connector: Any, exc: BaseException) -> AgentError:
    """Map ``exc`` (a driver, SQLAlchemy or OS error) to an AgentError; AgentErrors pass through."""
    if isinstance(exc, AgentError):
        return exc
    orig = getattr(exc, "orig", None) or exc
    detail = " ".join(str(orig).split())[:600] or type(orig).__name__
    cls = connector._error_class(orig)
    if cls is None:
        if isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated:
            cls = DatabaseUnavailable
        elif isinstance(orig, (ConnectionError, TimeoutError)):
            cls = DatabaseUnavailable
        else:
            cls = ConnectorError
    err = cls(f"{connector.name}: {detail}")
    err.__cause__ = exc if isinstance(exc, BaseException) else None
    return err
