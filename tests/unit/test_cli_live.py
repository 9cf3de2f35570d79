"""The CLI's live progress line: drawn on a terminal while a batch applies, never in a pipe."""

from __future__ import annotations

import io
import time
from types import SimpleNamespace

from agent.cli._live import bar, clear_line, live_progress
from agent.progress import ApplyProgress


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_fills_with_the_rows_done():
    assert bar(0, 100, 10) == "[..........]" and bar(41, 100, 10) == "[####......]"
    assert bar(100, 100, 10) == bar(7, 0, 10) == "[##########]"


def test_a_terminal_sees_the_batch_being_applied_then_a_clean_line():
    p = ApplyProgress("student", 3, "snapshot", rows_total=1000, bytes_total=100)
    p.advance(50)
    ctx = SimpleNamespace(applying={"student": p})
    out = Tty()
    with live_progress(ctx, out, every=0.01):
        time.sleep(0.1)
    text = out.getvalue()
    assert "student [############............] seq 3 snapshot: 500 / 1,000 rows (50 %)" in text
    assert text.endswith("\r\x1b[K")


def test_a_pipe_gets_nothing():
    ctx = SimpleNamespace(applying={"student": ApplyProgress("student", 1, "changes", 10, 10)})
    out = io.StringIO()
    with live_progress(ctx, out, every=0.01):
        time.sleep(0.05)
    clear_line(out)
    assert out.getvalue() == ""
