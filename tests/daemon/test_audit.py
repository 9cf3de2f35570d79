"""The audit log's hash chain: intact across rotation and pruning, and every kind of tampering detected."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import subprocess
import sys
from pathlib import Path

import pytest

from agent import audit
from agent.errors import SchemaConflict

T0 = dt.datetime(2025, 1, 10, 8, 0, tzinfo=dt.timezone.utc)


def write(root: Path, n: int, *, alg: str = "sha256", max_bytes: int = 8 << 20,
          start: dt.datetime = T0, step: dt.timedelta = dt.timedelta(minutes=1)) -> audit.AuditLog:
    log = audit.AuditLog(root, alg=alg, max_bytes=max_bytes)
    for i in range(n):
        log.record("batch_applied", dataset="student", seq=i + 1, rows=10 * i, now=start + i * step)
    return log


def lines(root: Path) -> list[tuple[Path, list[str]]]:
    return [(p, p.read_text().splitlines(keepends=True)) for p in audit.list_files(root)]


def test_records_carry_who_what_when_outcome_and_chain(tmp_path):
    log = audit.AuditLog(tmp_path, via="daemon")
    with audit.correlation("abc123"):
        r1 = log.record("enrolment", agent_id="ag-1", token="secret-token-value")
        r2 = log.record("batch_rejected", outcome="envelope-bad-signature", dataset="student", seq=4)
    assert r1["seq"] == 1 and r1["prev"] == audit.GENESIS and r2["prev"] == r1["hash"]
    assert r1["who"]["via"] == "daemon" and r1["who"]["uid"] >= 0 and r1["who"]["user"]
    assert r1["cid"] == r2["cid"] == "abc123"
    assert r2["outcome"] == "envelope-bad-signature" and r2["detail"] == {"dataset": "student", "seq": 4}
    assert r1["detail"]["token"] == "***"   # secrets never reach the audit log either
    assert r1["ts"].endswith("+00:00")
    v = audit.verify(tmp_path)
    assert v.ok and v.records == 2 and v.last_hash == r2["hash"]


def test_action_records_the_error_code_of_a_failed_operation(tmp_path):
    log = audit.AuditLog(tmp_path)
    with pytest.raises(SchemaConflict):
        with log.action("resync", dataset="student") as extra:
            extra["table"] = "ods_student"
            raise SchemaConflict("column removed")
    with log.action("enrolment") as extra:
        extra["agent_id"] = "ag-9"
    recs = [json.loads(x) for _, ls in lines(tmp_path) for x in ls]
    assert [(r["event"], r["outcome"]) for r in recs] == [("resync", "schema-conflict"), ("enrolment", "ok")]
    assert recs[0]["detail"]["table"] == "ods_student" and recs[1]["detail"]["agent_id"] == "ag-9"


@pytest.mark.parametrize("alg", ["sha256", "sm3"])
def test_rotation_keeps_the_chain_across_files(tmp_path, alg):
    write(tmp_path, 40, alg=alg, max_bytes=2000)
    files = lines(tmp_path)
    assert len(files) > 3
    # the first record of each file links to the last record of the previous one
    for (_, prev_lines), (_, cur_lines) in zip(files, files[1:]):
        assert json.loads(cur_lines[0])["prev"] == json.loads(prev_lines[-1])["hash"]
    v = audit.verify(tmp_path)
    assert v.ok and v.records == 40 and v.first_seq == 1 and v.last_seq == 40
    assert json.loads(files[0][1][0])["alg"] == alg


def test_a_new_month_starts_a_new_file(tmp_path):
    log = audit.AuditLog(tmp_path)
    log.record("a", now=T0)
    log.record("b", now=T0 + dt.timedelta(days=31))
    assert [p.name for p in audit.list_files(tmp_path)] == ["audit-000001-20250110.jsonl",
                                                           "audit-000002-20250210.jsonl"]
    assert audit.verify(tmp_path).ok


def _rewrite(path: Path, new_lines: list[str]) -> None:
    path.write_text("".join(new_lines))


def test_an_edited_record_is_named(tmp_path):
    write(tmp_path, 10, max_bytes=1500)
    path, ls = lines(tmp_path)[1]
    rec = json.loads(ls[1])
    rec["detail"]["rows"] = 999_999
    ls[1] = audit.canonical(rec).decode() + "\n"
    _rewrite(path, ls)
    v = audit.verify(tmp_path)
    assert not v.ok
    assert v.broken["seq"] == rec["seq"] and v.broken["file"] == path.name and v.broken["line"] == 2
    assert "edited" in v.broken["reason"]


def test_an_edit_with_a_recomputed_digest_breaks_the_next_link(tmp_path):
    write(tmp_path, 6)
    path, ls = lines(tmp_path)[0]
    rec = json.loads(ls[2])
    rec["outcome"] = "ok-forged"
    rec["hash"] = audit.chain_digest(rec["alg"], rec["prev"], rec)
    ls[2] = audit.canonical(rec).decode() + "\n"
    _rewrite(path, ls)
    v = audit.verify(tmp_path)
    assert not v.ok and v.broken["seq"] == 4 and "link" in v.broken["reason"]


def test_a_deleted_record_is_named(tmp_path):
    write(tmp_path, 8)
    path, ls = lines(tmp_path)[0]
    del ls[4]
    _rewrite(path, ls)
    v = audit.verify(tmp_path)
    assert not v.ok and v.broken["line"] == 5 and v.broken["seq"] == 6
    assert "deleted" in v.broken["reason"]


def test_reordered_records_are_named(tmp_path):
    write(tmp_path, 8)
    path, ls = lines(tmp_path)[0]
    ls[2], ls[3] = ls[3], ls[2]
    _rewrite(path, ls)
    v = audit.verify(tmp_path)
    assert not v.ok and v.broken["line"] == 3 and v.broken["seq"] == 4


def test_records_cut_from_the_end_are_detected_by_the_head(tmp_path):
    write(tmp_path, 8)
    path, ls = lines(tmp_path)[0]
    _rewrite(path, ls[:5])
    v = audit.verify(tmp_path)
    assert not v.ok and "removed from the end" in v.broken["reason"] and v.broken["seq"] == 6


def test_a_cut_also_applied_to_the_head_file_is_caught_by_an_external_head(tmp_path):
    log = write(tmp_path, 8)
    external = log.head()
    path, ls = lines(tmp_path)[0]
    _rewrite(path, ls[:5])
    rec5 = json.loads(ls[4])
    (tmp_path / "audit.head").write_text(json.dumps({"seq": 5, "hash": rec5["hash"], "file": path.name}))
    assert audit.verify(tmp_path).ok   # consistent on its own...
    v = audit.verify(tmp_path, expect_head=(external["seq"], external["hash"]))
    assert not v.ok and "expected head" in v.broken["reason"]   # ...but not with the platform's copy


def test_a_file_cut_mid_record_is_detected(tmp_path):
    write(tmp_path, 5)
    path = audit.list_files(tmp_path)[0]
    data = path.read_bytes()
    path.write_bytes(data[:-30])
    v = audit.verify(tmp_path)
    assert not v.ok and v.broken["line"] == 5 and "cut" in v.broken["reason"]


def test_a_deleted_middle_file_and_a_deleted_first_file_are_detected(tmp_path):
    write(tmp_path, 30, max_bytes=1500)
    files = audit.list_files(tmp_path)
    files[1].unlink()
    v = audit.verify(tmp_path)
    assert not v.ok and v.broken["file"] == files[2].name and v.broken["line"] == 1

    other = tmp_path / "b"
    write(other, 30, max_bytes=1500)
    audit.list_files(other)[0].unlink()
    v = audit.verify(other)
    assert not v.ok and "missing" in v.broken["reason"]


def test_a_torn_last_line_is_cut_and_the_chain_goes_on(tmp_path):
    log = write(tmp_path, 3)
    path = audit.list_files(tmp_path)[0]
    with path.open("ab") as f:
        f.write(b'{"seq":4,"ts":"2025-01-1')   # power lost in the middle of a write
    assert not audit.verify(tmp_path).ok
    log.record("daemon_started", now=T0 + dt.timedelta(hours=1))
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert [r["event"] for r in recs[-2:]] == ["audit_torn_tail_cut", "daemon_started"]
    assert recs[-2]["detail"]["bytes"] == 24
    assert audit.verify(tmp_path).ok


def test_pruning_keeps_180_days_and_the_rest_verifiable(tmp_path):
    log = audit.AuditLog(tmp_path, retention_days=30)   # raised to the legal minimum
    assert log.retention_days == 180
    for month in range(12):
        log.record("batch_applied", month=month, now=T0 + dt.timedelta(days=31 * month))
    now = T0 + dt.timedelta(days=31 * 11 + 1)
    removed = log.prune(now=now)
    assert len(removed) == 5   # files whose successor started more than 180 days before now
    first = audit.list_files(tmp_path)[0]
    assert json.loads(first.read_text().splitlines()[0])["ts"] < (now - dt.timedelta(days=180)).isoformat()
    v = audit.verify(tmp_path)
    assert v.ok and v.first_seq == 6 and v.records == 8   # 7 left plus the audit_pruned record
    anchor = json.loads((tmp_path / "audit.anchor").read_text())
    assert anchor["seq"] == 5
    # the anchor is what lets the remaining chain start mid-way; without it the gap shows
    (tmp_path / "audit.anchor").unlink()
    assert not audit.verify(tmp_path).ok


def _writer(root: str, n: int) -> None:
    log = audit.AuditLog(Path(root), max_bytes=4000)
    for i in range(n):
        log.record("cli_action", i=i)


def test_concurrent_writers_in_several_processes_keep_one_chain(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 40)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    v = audit.verify(tmp_path)
    assert v.ok and v.records == 160


def test_cli_verify_exit_codes_and_message(tmp_path):
    write(tmp_path, 5)
    cmd = [sys.executable, "-m", "agent", "audit", "verify", "--dir", str(tmp_path)]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "intact: 5 record(s)" in ok.stdout, ok.stderr
    path, ls = lines(tmp_path)[0]
    del ls[1]
    _rewrite(path, ls)
    bad = subprocess.run(cmd[:3] + ["--json"] + cmd[3:], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 65
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False and doc["broken"]["line"] == 2 and doc["broken"]["seq"] == 3
    human = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert f"broken at {path.name} line 2 (sequence 3)" in human.stdout


def test_the_audit_section_sets_directory_hash_rotation_and_retention(tmp_path, monkeypatch):
    from agent import config
    from agent.errors import ConfigError

    monkeypatch.delenv("EDX_AGENT_AUDIT_DIR", raising=False)
    monkeypatch.delenv("EDX_AGENT_AUDIT_HASH", raising=False)
    path = tmp_path / "agent.toml"
    base = f'[agent]\nstate_dir = "{tmp_path / "state"}"\n[database]\nurl = "sqlite:///x.db"\n'
    path.write_text(base)
    default = audit.for_config(config.load(path))
    assert default.root == tmp_path / "state" / "audit" and default.alg == "sha256"
    assert default.retention_days == 180 and default.max_bytes == 8 << 20
    path.write_text(base + '[keys]\nsuite = "gm"\n')
    assert audit.for_config(config.load(path)).alg == "sm3"     # auto: SM3 with the 国密 suite
    path.write_text(base + '[audit]\ndir = "trail"\nhash = "sm3"\nretention_days = 400\nmax_file_mb = 2\n')
    log = audit.for_config(config.load(path))
    assert (log.root, log.alg, log.retention_days, log.max_bytes) == (tmp_path / "trail", "sm3", 400, 2 << 20)
    log.record("init")
    assert audit.verify(tmp_path / "trail").ok
    path.write_text(base + '[audit]\nretention_days = 90\nhash = "md5"\n')
    with pytest.raises(ConfigError) as e:
        config.load(path)
    assert {p.split(":")[0] for p in e.value.problems} == {"audit.retention_days", "audit.hash"}
