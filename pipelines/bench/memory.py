"""A process's memory as the benchmarks and memory tests report it (Linux /proc/self/status).

Peak RSS is VmHWM, not getrusage's ``ru_maxrss``: a child process reports the RSS its parent
had when it forked as its own maximum (a test runner's hundreds of MB), VmHWM starts afresh
at exec.
"""
from __future__ import annotations


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    """This process's resident memory now (MB)."""
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started (MB)."""
    return _status_mb("VmHWM")
