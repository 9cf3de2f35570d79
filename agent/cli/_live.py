"""A live progress line for long CLI work (sync, resync): a bar, rows done of total, rows/s, time left.

Drawn on stderr twice a second while a batch applies, and only when stderr is a terminal: in a pipe, a
log file or under systemd nothing is drawn (the per-batch summary lines still print on stdout).
"""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

from ..progress import describe

WIDTH = 24


def bar(done: int, total: int, width: int = WIDTH) -> str:
    filled = width if total <= 0 else min(width, width * done // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


def clear_line(stream: TextIO | None = None) -> None:
    """Erase a progress line before printing a normal one (no-op off a terminal)."""
    out = stream or sys.stderr
    if getattr(out, "isatty", lambda: False)():
        out.write("\r\x1b[K")
        out.flush()


@contextmanager
def live_progress(ctx: Any, stream: TextIO | None = None, every: float = 0.5) -> Iterator[None]:
    """Show the progress of whatever ``ctx`` applies (``Context.applying``) until the block ends."""
    out = stream or sys.stderr
    if not getattr(out, "isatty", lambda: False)():
        yield
        return
    stop = threading.Event()
    drawn = [False]

    def draw() -> None:
        while not stop.wait(every):
            for name, p in list(ctx.applying.items()):
                s = p.snapshot()
                out.write(f"\r\x1b[K{name} {bar(s['rows_done'], s['rows_total'])} {describe(s)}")
                out.flush()
                drawn[0] = True
                break

    t = threading.Thread(target=draw, name="edx-progress", daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()
        if drawn[0]:
            out.write("\r\x1b[K")
            out.flush()


__all__ = ["bar", "clear_line", "live_progress"]
