"""A benchmark process's own memory: its resident-set size and high-water mark, memory available on the
machine, and running a measurement in a fresh process so that its peak is its own."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import resource
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dawn_lightning.allocator import keep_freed_memory


def status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB, or None where there is none."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """The resident-set size in MiB now (ru_maxrss where /proc is missing)."""
    return status_mib("VmRSS") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak() -> bool:
    """Resets the process's RSS high-water mark (Linux: write 5 to clear_refs); False where not allowed."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_mib(reset: bool) -> float:
    """The RSS high-water mark in MiB: VmHWM after a reset; otherwise ru_maxrss (KiB on Linux), which also
    holds the peak of the build (and, outside a fresh process, of whatever ran before)."""
    hwm = status_mib("VmHWM") if reset else None
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_mib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_isolated(measure: Callable[..., dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
    """``measure(**kwargs)`` in a fresh "spawn" process (freed memory kept, as generation does), so that its
    memory figures are its own. ``measure`` must be importable (a module-level function)."""
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=1, mp_context=context, initializer=keep_freed_memory
    ) as pool:
        return pool.submit(measure, **kwargs).result()


def measured_row(
    run: Callable[..., dict[str, Any]], identity: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """``run(**kwargs)``'s row, or ``identity`` with a note when the measurement failed (its process killed
    for memory, an allocation refused), so that one configuration that does not fit ends no benchmark."""
    try:
        return run(**kwargs)
    except (concurrent.futures.process.BrokenProcessPool, MemoryError, RuntimeError) as error:
        return identity | {"note": f"failed: {error!r}"}
