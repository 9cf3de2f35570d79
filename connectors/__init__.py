"""Connector registry: finds a connector class by name (entry points) or by a database URL's scheme.

Built-in connectors are registered like third-party ones, through the ``edx_agent.connectors`` entry-point
group in pyproject.toml, so a plugin package (e.g. Dameng) is found the same way. Nothing here imports a
database driver: a connector module imports its driver when it is instantiated, and a missing driver says
which ``pip install`` line fixes it.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from typing import Any

from agent.errors import UnknownConnector

from .api import Connector

GROUP = "edx_agent.connectors"

# URL scheme (before any "+driver") -> connector name
SCHEMES = {
    "sqlite": "sqlite", "mysql": "mysql", "mariadb": "mysql", "postgresql": "postgresql",
    "postgres": "postgresql", "oracle": "oracle", "mssql": "sqlserver", "sqlserver": "sqlserver",
}

_registered: dict[str, Any] = {}   # name -> class or "module:Class"; overrides entry points (tests)


def register(name: str, target: Any) -> None:
    """Register a connector class (or a ``"module:Class"`` string) under ``name``; wins over entry points."""
    _registered[name] = target


def unregister(name: str) -> None:
    _registered.pop(name, None)


def available() -> list[str]:
    """Names of every connector known, registered or declared by an installed distribution."""
    return sorted(set(_registered) | {ep.name for ep in entry_points(group=GROUP)})


def load(name: str) -> type:
    """The connector class registered as ``name``; UnknownConnector lists the known names."""
    target = _registered.get(name)
    if target is None:
        eps = [ep for ep in entry_points(group=GROUP) if ep.name == name]
        if not eps:
            raise UnknownConnector(name, remedy=f"Known connectors: {', '.join(available())}.")
        target = eps[0].value
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        target = getattr(import_module(module), attr)
    return target


def scheme_of(url: str) -> str:
    """The connector name for a database URL (``mysql+pymysql://…`` -> ``mysql``)."""
    scheme = url.split("://", 1)[0].split(":", 1)[0].split("+", 1)[0].lower() if "://" in url or \
        url.startswith("sqlite:") else ""
    name = SCHEMES.get(scheme, scheme if scheme in _registered else "")
    if not name:
        raise UnknownConnector(scheme or url, remedy="Use a URL starting with one of: "
                               + ", ".join(sorted(f"{s}://" for s in SCHEMES)) + ".")
    return name


def connector_class(url: str) -> type:
    """The connector class for ``url`` with its driver importable (DriverMissing names the install line)."""
    cls = load(scheme_of(url))
    check = getattr(cls, "check_driver", None)
    if check is not None:
        check()
    return cls


def connect(url: str, **options: Any) -> Connector:
    """A connector for the database at ``url``, chosen by the URL's scheme."""
    return load(scheme_of(url))(url, **options)


__all__ = ["GROUP", "SCHEMES", "available", "connect", "connector_class", "load", "register", "scheme_of", "unregister"]
