"""Joint-debug mode (前置环境联调): doctor, then one real batch through the whole pipeline into a sandbox.

The platform seals a synthetic test dataset for this agent; it is downloaded, verified, decrypted and
applied exactly like production data, but into sandbox tables (``database.sandbox_prefix``), read back,
checksummed against what was sent, and dropped unless ``--keep``. The report (steps, timings, error
codes, versions, config digest — no secrets) is printed and sent to the platform, where the platform
team sees it on the agent's page under the same correlation id.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from . import __version__, envelope
from .doctor import Report, Step, _run
from .errors import AgentError, ReconciliationError
from .payload import Checksum, Manifest, iter_records

log = structlog.get_logger(__name__)
TEST_DATASET = "edx_selftest"


def _expected_checksum(ctx: Any, path: Path, header: Any) -> tuple[Checksum, Manifest]:
    """What the batch carries, computed from the payload itself (a third, independent read)."""
    with path.open("rb") as f:
        envelope.read_header(f, trusted=ctx.hub_keys, allowed_suites=ctx.allowed_suites)
        import io

        stream = envelope.open_payload(f, header, ctx.keys)
        reader = io.BufferedReader(stream, 1 << 20)
        manifest = Manifest.read_from(reader)
        ck = Checksum()
        for _op, fields in iter_records(reader):
            ck.add(fields)
        stream.finish()
    return ck, manifest


def run_test(ctx: Any, doctor_report: Report, *, keep: bool = False) -> dict[str, Any]:
    """Run the pipeline on the platform's test batch into the sandbox; return the report."""
    from .pipeline import apply_file

    correlation_id = uuid.uuid4().hex
    report = Report(steps=list(doctor_report.steps), facts=dict(doctor_report.facts))
    ctx.table_prefix = ctx.cfg.database.sandbox_prefix
    table = ctx.table_for(TEST_DATASET)
    holder: dict[str, Any] = {}
    log.info("joint_debug_start", correlation_id=correlation_id)

    def download() -> str:
        resp = ctx.client.test_batch()
        dest = ctx.spool.root / "test" / f"{correlation_id}.edx"
        dest.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with dest.open("wb") as f:
            for chunk in resp.iter_content(1 << 20):
                f.write(chunk)
                size += len(chunk)
        holder["path"] = dest
        return f"{size} bytes"

    def verify() -> str:
        with holder["path"].open("rb") as f:
            header = envelope.read_header(f, trusted=ctx.hub_keys, allowed_suites=ctx.allowed_suites)
            envelope.check_context(header, recipient_id=ctx.agent_id, recipient_keys=ctx.keys,
                                   dataset_id=TEST_DATASET, now_ms=int(time.time() * 1000))
            envelope.verify_stream(f, header, ctx.keys)
        holder["header"] = header
        return f"signature, recipient and {header.payload_len} bytes of chunks verified ({header.suite.label})"

    def apply() -> str:
        out = apply_file(ctx, holder["path"], TEST_DATASET)
        holder["outcome"] = out
        return f"{out.rows} rows into {table} (+{out.inserted} ~{out.updated} -{out.deleted})"

    def readback() -> str:
        expected, manifest = _expected_checksum(ctx, holder["path"], holder["header"])
        got = ctx.connector.table_checksum(table, manifest.schema, ctx.schema_name)
        if got != expected:
            raise ReconciliationError(f"read back {got!r}, sent {expected!r}: a type or encoding does not "
                                      "round-trip on this database")
        return f"{got.count} rows read back, checksum {got.hexdigest()} matches"

    try:
        _run(report, "test_download", download)
        _run(report, "test_verify", verify, ["test_download"])
        _run(report, "test_apply", apply, ["test_verify"])
        _run(report, "test_readback", readback, ["test_apply"])
    finally:
        if not keep:
            try:
                ctx.connector.purge(TEST_DATASET, table, ctx.schema_name)
                ctx.connector.drop_table(table, ctx.schema_name)
            except AgentError as e:
                report.steps.append(Step("test_cleanup", False, detail=str(e), remedy=e.remedy_text, code=e.code))
        path = holder.get("path")
        if path is not None:
            path.unlink(missing_ok=True)
    from .cli.version_cmd import versions

    doc = {
        "correlation_id": correlation_id, "ok": report.ok, "agent_version": __version__,
        "versions": versions(), "config_digest": ctx.cfg.digest(), "sandbox_table": table, "kept": keep,
        "steps": [asdict(s) for s in report.steps], "facts": report.facts,
    }
    try:
        ctx.client.test_report(doc, correlation_id)
        doc["sent_to_platform"] = True
    except AgentError as e:
        doc["sent_to_platform"] = False
        doc["send_error"] = e.to_dict()
    log.info("joint_debug_done", correlation_id=correlation_id, ok=report.ok)
    return doc
