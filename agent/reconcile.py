"""The reconciliation figure of a batch, computed from its payload the way connectors compute it from the table.

The hub calls ``expected_checksum`` when publishing and puts the result in the batch metadata; the agent's
connector computes the same figure from what the database holds after applying and refuses to commit on a
mismatch (``ReconciliationError``). The figure is ``{"rows": n, "sum64": hex, "deleted": n}``:

* snapshot: every record (rows), order-independent checksum of their canonical fields (sum64), deleted 0;
* changes: the last operation per primary key wins (I and U are upserts, D deletes); rows and sum64 cover
  the keys whose last operation is I or U (their final values), deleted counts keys whose last one is D.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .payload import Checksum, iter_records
from .schema import Schema


def expected_checksum(manifest_kind: str, schema: Schema,
                      records: Iterable[tuple[str, Sequence[str | None]]]) -> dict[str, Any]:
    """The figure a connector must reproduce after applying these records (canonical field texts)."""
    ck = Checksum()
    if manifest_kind == "snapshot":
        for _op, fields in records:
            ck.add(fields)
        return {**ck.to_dict(), "deleted": 0}
    if manifest_kind != "changes":
        raise ValueError(f"unknown batch kind {manifest_kind!r}")
    pk = [schema.names.index(k) for k in schema.primary_key]
    last: dict[tuple[str | None, ...], tuple[str, Sequence[str | None]]] = {}
    for op, fields in records:
        last[tuple(fields[i] for i in pk)] = (op, fields)
    deleted = 0
    for op, fields in last.values():
        if op == "D":
            deleted += 1
        else:
            ck.add(fields)
    return {**ck.to_dict(), "deleted": deleted}


def expected_from_payload(stream: Any) -> dict[str, Any]:
    """The figure of a whole payload stream (manifest line first), e.g. a decrypted batch file."""
    from .payload import Manifest
    manifest = Manifest.read_from(stream)
    return expected_checksum(manifest.kind, manifest.schema, iter_records(stream))


__all__ = ["expected_checksum", "expected_from_payload"]
