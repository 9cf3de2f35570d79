"""Facts the benchmarks read from /proc: this process's peak RSS and the CPU model.

Peak RSS is VmHWM, not getrusage: Linux carries a parent's peak into ru_maxrss across fork and exec, so a
worker started by a bench process that had generated its data in memory would report that process's peak.
"""

from __future__ import annotations

import resource
from pathlib import Path


def vm_hwm_kib() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # no /proc: the best there is


def vm_hwm_mb() -> float:
    return vm_hwm_kib() / 1024


def cpu_model(default: str = "?") -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return default
