"""Logging: library records become one structured line; secrets are redacted in both paths."""

from __future__ import annotations

import io
import json
import logging

import structlog

from agent import logs


def test_a_library_error_with_a_traceback_is_one_json_line():
    buf = io.StringIO()
    saved = logging.getLogger().handlers[:], logging.getLogger().level
    try:
        logs.setup("json", "info", stream=buf)
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            logging.getLogger("sqlalchemy.pool.impl.QueuePool").error("Exception during reset or similar",
                                                                     exc_info=True)
        logging.getLogger("sqlalchemy.engine.Engine").info("INSERT INTO t VALUES (%s)")   # never row data
        logging.getLogger("urllib3.connectionpool").warning("Retrying after https://u:s3cret@hub/x")
    finally:
        logging.getLogger().handlers[:], _ = saved
        logging.getLogger().setLevel(saved[1])
        structlog.reset_defaults()
    out = buf.getvalue()
    assert "Traceback" not in out and "INSERT" not in out and "s3cret" not in out
    lines = [json.loads(x) for x in out.splitlines()]
    assert [x["level"] for x in lines] == ["error", "warning"]
    assert lines[0]["event"] == "Exception during reset or similar"
    assert lines[0]["logger"] == "sqlalchemy.pool.impl.QueuePool"
    assert lines[0]["error"] == "ConnectionResetError: [Errno 104] Connection reset by peer"
