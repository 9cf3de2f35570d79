"""Logging setup: structlog, JSON lines to stdout for journald off a terminal, console on one.

A redaction processor runs before rendering: values of keys that name secrets, and anything that
looks like a URL password, are replaced. Rows are never logged anywhere in the project; this
processor is the safety net for secrets that slip into an error message.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog

SECRET_KEYS = re.compile(r"(pass(word)?|secret|token|private|credential|authorization|api_key)", re.I)
URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://[^:/@\s]+:)(?P<pw>[^@\s]+)(?=@)", re.I)
REDACTED = "***"


def redact_text(text: str) -> str:
    return URL_PASSWORD.sub(lambda m: m.group("scheme") + REDACTED, text)


def redact_value(key: str, value: Any) -> Any:
    if SECRET_KEYS.search(key) and value not in (None, "", False):
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {k: redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(key, v) for v in value]
    return value


def _redact(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: (v if k == "event" and not isinstance(v, str) else redact_value(k, v))
            for k, v in event.items()}


class _ToStructlog(logging.Handler):
    """Library log records (SQLAlchemy's pool, urllib3, APScheduler) as one structured line each.

    Without it Python's last-resort handler prints them with a multi-line traceback: not JSON in the
    journal, and alarming on a terminal for what is often expected (a pooled connection that cannot be
    rolled back after the database link was cut). The exception is kept as its type and message.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name}
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                fields["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
            structlog.get_logger(record.name).log(record.levelno, record.getMessage(), **fields)
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


def setup(fmt: str = "auto", level: str = "info", stream: Any = None) -> None:
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (structlog.dev.ConsoleRenderer(colors=stream.isatty()) if fmt == "console"
                     else structlog.processors.JSONRenderer(ensure_ascii=False))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers = [h for h in root.handlers if not isinstance(h, _ToStructlog)] + [_ToStructlog()]
    root.setLevel(logging.WARNING)   # libraries' info/debug chatter stays out
