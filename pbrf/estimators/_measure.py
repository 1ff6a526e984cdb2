"""Wall time and peak memory of one estimator call.

CUDA: ``torch.cuda.max_memory_allocated`` above the allocation at the start. CPU: the process's
resident set size sampled every ``interval`` seconds from ``/proc/self/statm`` by a background
thread (torch releases the GIL in its kernels), peak minus the size at the start: it counts
every allocation (torch, numpy, Python) but can miss peaks shorter than the interval, and other
threads of the process are counted too. Memory an earlier call freed but the C allocator kept
would hide new allocations, so with glibc ``malloc_trim(0)`` first returns it to the system.
Elsewhere the memory figure is ``None``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import torch

_STATM = "/proc/self/statm"


def _trim_heap() -> None:
    """Return freed heap memory to the system (glibc only; a no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    with suppress(OSError, AttributeError, TypeError):
        ctypes.CDLL(name).malloc_trim(0)


def _rss_bytes() -> int | None:
    try:
        with open(_STATM) as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def measure(device: torch.device, interval: float = 0.002) -> Iterator[dict[str, Any]]:
    """Yield a dict filled on exit with ``wall_time_s``, ``peak_memory_mb``, ``memory_method``."""
    out: dict[str, Any] = {}
    stop = threading.Event()
    thread: threading.Thread | None = None
    peak = [0]
    sample: Callable[[], int | None]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        method = "cuda_max_memory_allocated"
    else:
        _trim_heap()
        base = _rss_bytes()
        method = "sampled_rss" if base is not None else None
        if base is not None:
            peak[0] = base
            sample = _rss_bytes

            def run() -> None:
                while not stop.wait(interval):
                    value = sample()
                    if value is not None and value > peak[0]:
                        peak[0] = value

            thread = threading.Thread(target=run, daemon=True)
            thread.start()
    start = time.perf_counter()
    try:
        yield out
    finally:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        out["wall_time_s"] = time.perf_counter() - start
        if thread is not None:
            stop.set()
            thread.join()
            last = _rss_bytes()
            peak[0] = max(peak[0], last or 0)
        if device.type == "cuda":
            out["peak_memory_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        elif base is not None:
            out["peak_memory_mb"] = (peak[0] - base) / 2**20
        else:
            out["peak_memory_mb"] = None
        out["memory_method"] = method
