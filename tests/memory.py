"""A process's own peak resident memory, from Linux's /proc (tests that memory stays flat)."""


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) / 1024


def reset_peak() -> float:
    """The peak (VmHWM) starts again from now; returns the resident memory now, in MB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return rss_mb()


def peak_mb() -> float:
    """The peak resident memory since the process started or the last reset_peak, in MB."""
    return _status_mb("VmHWM")


def rss_mb() -> float:
    """The resident memory now, in MB."""
    return _status_mb("VmRSS")
