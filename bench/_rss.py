"""Peak RSS of this process, as Linux counts it for the process's own memory map.

VmHWM, not getrusage: Linux carries a parent's peak into ru_maxrss across fork and exec, so a worker
started by a bench process that had generated its data in memory would report that process's peak.
"""

from __future__ import annotations

from pathlib import Path


def vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0
