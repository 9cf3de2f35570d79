"""Where published rows come from: a JSON Lines file, or a SQL query streamed from a source database.

Both yield ``(op, canonical fields)`` one row at a time through ``RowEncoder``, so a bad row fails with
its line number (JSONL) or row number (query) and column, and nothing is held in memory but the row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from agent.errors import DataError
from agent.payload import RowEncoder

from .errors import RequestInvalid

Record = tuple[str, list[str | None]]


def jsonl_records(path: Path, encoder: RowEncoder) -> Iterator[Record]:
    """Rows of a JSON Lines file; blank lines are skipped, line numbers count from 1."""
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    with f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            where = f"{path.name} line {n}"
            try:
                row = json.loads(raw)
            except UnicodeDecodeError:
                raise DataError(f"{where}: not UTF-8") from None
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
            yield encoder.fields_from_mapping(row, where)


def db_records(url: str, query: str, encoder: RowEncoder, *, fetch: int = 5000) -> Iterator[Record]:
    """Rows of ``query`` against the SQLAlchemy ``url``, streamed with a server-side cursor.

    The query's columns are matched to the schema by name (case-insensitive), in any order; an
    ``_op`` column (I/U/D) is honoured in a changes batch.
    """
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import SQLAlchemyError

    from .store import normalise_url

    try:
        engine = create_engine(normalise_url(url))
    except (SQLAlchemyError, ImportError, ValueError) as e:
        raise RequestInvalid(f"cannot use source database URL: {e}") from None
    names = encoder.schema.names
    try:
        with engine.connect() as conn:
            result = conn.execution_options(stream_results=True, yield_per=fetch).execute(text(query))
            cols = [c.lower() for c in result.keys()]
            missing = [n for n in names if n.lower() not in cols]
            extra = [c for c in cols if c != "_op" and c not in {n.lower() for n in names}]
            if missing or extra:
                raise DataError(f"query columns do not match the schema: missing {missing}, unknown {extra}")
            idx = [cols.index(n.lower()) for n in names]
            op_idx = cols.index("_op") if "_op" in cols else None
            for n, row in enumerate(result, 1):
                op = str(row[op_idx]) if op_idx is not None else "I"
                if encoder.kind == "snapshot" and op != "I":
                    raise DataError(f"query row {n}: snapshot rows cannot carry _op={op!r}")
                if op not in ("I", "U", "D"):
                    raise DataError(f"query row {n}: _op must be I, U or D, got {op!r}")
                yield op, encoder.fields_from_sequence([row[i] for i in idx], op, f"query row {n}")
    except SQLAlchemyError as e:
        raise DataError(f"source query failed: {str(e).splitlines()[0]}",
                        remedy="Check the URL, the credentials and the SQL against the source database.") from None
    finally:
        engine.dispose()
