"""Live apply progress: rows done estimated from the payload bytes read, rate, time left, one line."""

from __future__ import annotations

from agent import progress as P


def test_rows_done_follow_the_bytes_read_and_the_rate_gives_the_time_left(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(P.time, "monotonic", lambda: clock[0])
    p = P.ApplyProgress("student", 7, "snapshot", rows_total=1_000, bytes_total=50_000)
    p.advance(10_000)
    clock[0] = 102.0
    s = p.snapshot()
    assert (s["rows_done"], s["rows_per_s"], s["eta_s"], s["phase"]) == (200, 100.0, 8.0, "load")
    assert P.describe(s) == "seq 7 snapshot: 200 / 1,000 rows (20 %), 100 rows/s, about 8 s left"
    p.advance(45_000)   # a connector that reads again (refused rows) cannot pass the total
    s = p.snapshot()
    assert (s["rows_done"], s["phase"], s["eta_s"]) == (1_000, "finish", None)
    assert P.describe(s).endswith("merging, reconciling and committing")


def test_an_empty_batch_does_not_divide_by_zero():
    s = P.ApplyProgress("student", 1, "changes", rows_total=0, bytes_total=0).snapshot()
    assert s["rows_done"] == 0 and "rows" in P.describe(s)
