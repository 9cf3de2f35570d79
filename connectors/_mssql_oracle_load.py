"""Array-bound loading shared by the Oracle and SQL Server connectors: one executemany per batch of rows.

Neither server can read the payload's CSV itself from a client stream (no COPY, no LOAD DATA LOCAL), so
their fast path is the driver's array binding: Oracle's ``executemany`` sends every row of a batch in one
round trip, pyodbc's ``fast_executemany`` sends ODBC parameter arrays. Records are parsed with the C csv
reader, each field converted at most once, and sent in batches bounded by rows *and* bytes, so memory
stays flat whatever the batch size. What the server refuses is reported per row by ``send`` (Oracle's
batch errors; SQL Server's row-by-row retry of a refused batch) and goes to quarantine with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ._load import Quarantine

RowBuilder = Callable[[int, str, list[str | None]], tuple[tuple[Any, ...], int]]
Sender = Callable[[list[tuple[Any, ...]]], list[tuple[int, str | None, str]]]


class Refusal(ValueError):
    """A field the connector refuses before sending it (out of range, too long, malformed)."""

    def __init__(self, column: str, reason: str) -> None:
        super().__init__(f"{column}: {reason}")
        self.column = column


@dataclass
class LoadStats:
    """What a load did: records read, rows sent, batches (executemany calls) and the accepted rows' folds."""

    records: int = 0
    sent: int = 0
    batches: int = 0
    fold: int = 0                   # sum of per-row checksum corrections of accepted rows (Oracle '' -> NULL)
    batch_rows: list[int] = field(default_factory=list)


def load_arrays(records: Iterator[tuple[str, list[str | None]]], build: RowBuilder, send: Sender,
                quarantine: Quarantine, *, max_rows: int, max_bytes: int) -> LoadStats:
    """Build each record's parameters with ``build`` and ``send`` them in batches; quarantine refusals.

    ``build(n, op, fields)`` returns (parameters, fold) or raises ``Refusal``; ``send(rows)`` runs one
    array DML and returns the rows the server refused as (index in the batch, column, reason).
    """
    stats = LoadStats()
    rows: list[tuple[Any, ...]] = []
    raw: list[tuple[str, list[str | None], int]] = []
    size = 0

    def flush() -> None:
        nonlocal size
        if not rows:
            return
        refused = {i: (col, why) for i, col, why in send(rows)}
        stats.batches += 1
        stats.sent += len(rows)
        stats.batch_rows.append(len(rows))
        for i, (op, fields, fold) in enumerate(raw):
            if i in refused:
                col, why = refused[i]
                quarantine.add(op, fields, col, why)
            else:
                stats.fold += fold
        rows.clear()
        raw.clear()
        size = 0

    for op, fields in records:
        stats.records += 1
        try:
            params, fold = build(stats.records, op, fields)
        except Refusal as e:
            quarantine.add(op, fields, e.column, str(e))
            continue
        rows.append(params)
        raw.append((op, fields, fold))
        # a cheap estimate of the bytes on the wire: the canonical texts' lengths
        size += sum(len(f) for f in fields if f is not None) + 8 * len(fields)
        if len(rows) >= max_rows or size >= max_bytes:
            flush()
    flush()
    return stats


def reorder(names: Sequence[str], last: set[str]) -> list[int]:
    """Column positions with the ``last`` (long/LOB) columns moved to the end, otherwise in order.

    Oracle refuses a short bind after a long one in the same statement (ORA-24816) and some driver
    versions fail with ORA-01461 when they are mixed; SQL Server's ODBC driver streams (max) values
    after the fixed ones. The INSERT names its columns, so their order is free.
    """
    return [i for i, n in enumerate(names) if n not in last] + [i for i, n in enumerate(names) if n in last]
