"""Round trips per 100k rows for the Oracle and SQL Server connectors, counted through the recording driver.

No Oracle or SQL Server runs on the build machine, so this counts what the connectors *send*: the
array DML calls (one network round trip each: oracledb's executemany, pyodbc's fast_executemany
parameter arrays) against the one-INSERT-per-row baseline, and times the client side (parsing and
converting the CSV into bind arrays), which is all the agent adds on top of the server's work.
It rewrites its section of docs/performance.md between the oracle-sqlserver markers.

    python bench/bench_oracle_sqlserver.py [--rows 100000] [--no-docs]
    EDX_TEST_ORACLE_URL=oracle+oracledb://… python bench/bench_oracle_sqlserver.py --real
    EDX_TEST_MSSQL_URL='mssql+pyodbc://…?driver=ODBC+Driver+18+for+SQL+Server' python bench/bench_oracle_sqlserver.py --real
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.schema import parse_columns  # noqa: E402
from connectors.api import BatchMeta  # noqa: E402
from tests.connectors.conftest import MemorySource  # noqa: E402
from tests.connectors.fakedbapi import Server, oracle_module, pyodbc_module  # noqa: E402

BEGIN, END = "<!-- oracle-sqlserver:begin -->", "<!-- oracle-sqlserver:end -->"
SCHEMA = parse_columns([("id", "string(20)", False), ("name", "string(50)", True), ("n", "int64", True),
                        ("score", "decimal(10,2)", True), ("birth", "date", True),
                        ("updated", "timestamp", True), ("note", "text", True)], ["id"])


def snapshot_rows(n: int) -> list[tuple[str, list[str | None]]]:
    return [("I", [f"S{i:08d}", f"学生{i}", str(i), f"{i % 10000}.{i % 100:02d}", "2010-09-01",
                   "2024-09-01 08:00:00.000000", None if i % 3 else "备注 note"]) for i in range(n)]


def change_rows(n: int) -> list[tuple[str, list[str | None]]]:
    """70% updates, 20% inserts, 10% deletes, as in the issue's change batch."""
    out = []
    for i in range(n):
        k = i % 10
        if k < 7:
            out.append(("U", [f"S{i:08d}", f"学生{i}改", str(i + 1), "1.00", "2010-09-01",
                              "2024-09-02 08:00:00.000000", None]))
        elif k < 9:
            out.append(("I", [f"N{i:08d}", f"新生{i}", str(i), "2.00", "2011-09-01", "2024-09-02 08:00:00.000000", None]))
        else:
            out.append(("D", [f"S{i:08d}", None, None, None, None, None, None]))
    return out


def through_fake(kind: str, rows: int, chunk_rows: int) -> dict[str, object]:
    """Apply a snapshot and a change batch of ``rows`` rows through the recording driver; count calls."""
    from connectors.oracle import OracleConnector
    from connectors.sqlserver import SQLServerConnector

    srv = Server("oracle" if kind == "oracle" else "mssql")
    if kind == "oracle":
        conn = OracleConnector("oracle+oracledb://edx:pw@db/?service_name=X", module=oracle_module(srv),
                               chunk_rows=chunk_rows)
    else:
        conn = SQLServerConnector("mssql+pyodbc://edx:pw@db/edx", module=pyodbc_module(srv), chunk_rows=chunk_rows)
    out: dict[str, object] = {}
    for batch, records, seq in (("snapshot", snapshot_rows(rows), 1), ("changes", change_rows(rows), 2)):
        if batch == "changes":
            srv.script(r"FROM edx_schema", [(json.dumps(SCHEMA.to_dict()),)])
        src = MemorySource.build(SCHEMA, batch, records, dataset="bench")
        mark = len(srv.calls)
        t0 = time.perf_counter()
        conn.apply(BatchMeta(dataset="bench", table="bench", seq=seq, kind=batch, batch_digest=f"{seq:064x}"), src)
        secs = time.perf_counter() - t0
        calls = srv.since(mark)
        arrays = [c for c in calls if c.kind == "executemany"]
        out[batch] = {"arrays": len(arrays), "rows_per_array": max(len(c.params) for c in arrays),
                      "statements": sum(c.kind in ("execute", "executemany") for c in calls),
                      "client_rows_per_s": int(rows / secs), "per_row_inserts_avoided": rows - len(arrays)}
    conn.close()
    return out


def real(url: str, rows: int) -> str:
    """Apply the same batches to a real server; the figures land in the table only when run by hand."""
    import connectors

    conn = connectors.connect(url)
    table = "bench_" + uuid.uuid4().hex[:8]
    lines = []
    try:
        for batch, records, seq in (("snapshot", snapshot_rows(rows), 1), ("changes", change_rows(rows), 2)):
            src = MemorySource.build(SCHEMA, batch, records, dataset=table)
            t0 = time.perf_counter()
            r = conn.apply(BatchMeta(dataset=table, table=table, seq=seq, kind=batch, batch_digest=f"{seq:064x}"), src)
            secs = time.perf_counter() - t0
            lines.append(f"{conn.name} {batch}: {rows} rows in {secs:.2f} s = {rows / secs:,.0f} rows/s; "
                         f"phases {', '.join(f'{k} {v:.2f}s' for k, v in r.phases.items())}")
    finally:
        conn.drop_table(table)
        conn.purge(table, table)
        conn.close()
    return "\n".join(lines)


def section(rows: int, chunk: int, figures: dict[str, dict[str, dict[str, object]]]) -> str:
    head = ("| connector | batch | array calls | rows per array | statements in all | per-row INSERTs avoided | "
            "client rows/s |\n|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {k} | {b} | {f['arrays']} | {f['rows_per_array']} | {f['statements']} | {f['per_row_inserts_avoided']:,} "
        f"| {f['client_rows_per_s']:,} |\n" for k, per in figures.items() for b, f in per.items())
    return (f"{BEGIN}\n## Oracle and SQL Server: round trips (bench/bench_oracle_sqlserver.py)\n\n"
            f"{rows:,} rows per batch (change batch: 70% U, 20% I, 10% D), `chunk_rows={chunk}`, counted through the "
            "recording driver (tests/connectors/fakedbapi.py) because no Oracle or SQL Server runs on the build "
            "machine. Each array call is one round trip carrying a whole batch (Oracle `executemany` with array "
            "binding and batch errors; pyodbc `fast_executemany` parameter arrays); the one-INSERT-per-row "
            "baseline would need one round trip per row. \"client rows/s\" is the agent's own work (CSV parse, "
            "conversion, bind arrays) with a driver that answers at once: the ceiling the agent puts on a real "
            "server, not a server figure.\n\n" + head + body +
            "\nOn a real server: `EDX_TEST_ORACLE_URL=… python bench/bench_oracle_sqlserver.py --real` (and "
            "`EDX_TEST_MSSQL_URL=…`) applies the same batches and prints rows/s per phase; add those figures here "
            f"with the server's version and hardware.\n{END}\n")


def write_docs(text: str) -> None:
    path = ROOT / "docs" / "performance.md"
    old = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    if BEGIN in old and END in old:
        new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1:]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    path.write_text(new, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--chunk-rows", type=int, default=5000)
    ap.add_argument("--no-docs", action="store_true", help="print only; leave docs/performance.md alone")
    ap.add_argument("--real", action="store_true", help="also apply to the servers named by EDX_TEST_*_URL")
    a = ap.parse_args()
    figures = {k: through_fake(k, a.rows, a.chunk_rows) for k in ("oracle", "sqlserver")}
    text = section(a.rows, a.chunk_rows, figures)
    print(text)
    for var in ("EDX_TEST_ORACLE_URL", "EDX_TEST_MSSQL_URL"):
        url = os.environ.get(var)
        if url and a.real:
            print(real(url, a.rows))
        elif url:
            print(f"{var} is set: run `python bench/bench_oracle_sqlserver.py --real --no-docs` for server figures")
    if not a.no_docs:
        write_docs(text)


if __name__ == "__main__":
    main()
