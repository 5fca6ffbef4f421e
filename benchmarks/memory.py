"""Memory of one benchmark run: resident set size on CPU (its peak reset between runs where
Linux allows it), allocated memory on CUDA. Tooling for `benchmarks.bench_distill`.
"""

from __future__ import annotations

import gc
import resource
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


def rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KB on Linux, bytes on macOS
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


@contextmanager
def peak_memory(device: torch.device) -> Iterator[dict[str, Any]]:
    """Peak memory of the enclosed code: `{"rss_peak_mb", "rss_start_mb", "rss_extra_mb",
    "rss_peak_scope", "cuda_peak_mb"}` (filled in on exit)."""
    out: dict[str, Any] = {}
    gc.collect()
    scope = "run" if _reset_peak_rss() else "process"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = rss_mb()
    try:
        yield out
    finally:
        peak = max(_peak_rss_mb(), start)
        out.update(rss_start_mb=start, rss_peak_mb=peak, rss_extra_mb=peak - start,
                   rss_peak_scope=scope)
        if device.type == "cuda":
            out["cuda_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
