"""Translation of driver and SQLAlchemy exceptions into the project's error tree (the connector seam).

Each database module supplies ``_error_class(orig)``: the driver's own codes (MySQL error numbers,
PostgreSQL SQLSTATEs, SQLite result codes) mapped to a class of the tree. What it does not know falls
back on SQLAlchemy's disconnect detection, then on the generic ``ConnectorError``.
"""

from __future__ import annotations

from typing import Any, Hashable, Iterable

import sqlalchemy as sa

from agent.errors import (AgentError, ConnectorError, DatabaseBusy, DatabaseConfigError, DatabasePermission,
                          DatabaseUnavailable, DataError)


class CodeTable:
    """A driver's own error codes grouped by the class of the tree they stand for: data, not a ladder.

    The groups are the five every database has (connection gone, lock or deadlock, missing privilege,
    wrong database settings, a row the database refuses); a code listed in two groups is a mistake in the
    table and fails at import, so the order of the groups never decides anything.
    """

    def __init__(self, *, unavailable: Iterable[Hashable] = (), busy: Iterable[Hashable] = (),
                 permission: Iterable[Hashable] = (), config: Iterable[Hashable] = (),
                 data: Iterable[Hashable] = ()) -> None:
        self._by_code: dict[Hashable, type[AgentError]] = {}
        for cls, codes in ((DatabaseUnavailable, unavailable), (DatabaseBusy, busy),
                           (DatabasePermission, permission), (DatabaseConfigError, config), (DataError, data)):
            for code in codes:
                if code in self._by_code:
                    raise ValueError(f"error code {code!r} is both {self._by_code[code].__name__} and "
                                     f"{cls.__name__}")
                self._by_code[code] = cls

    def get(self, code: Hashable | None) -> type[AgentError] | None:
        return self._by_code.get(code) if code is not None else None

    def __contains__(self, code: object) -> bool:
        return code in self._by_code


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
