"""Keeping freed memory: a large tensor allocated again after it was freed reuses the process's memory
instead of new pages that the kernel has to zero-fill (page faults), unless turned off."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dawn_lightning.allocator import ENV

PROBE = """
import resource, torch
from dawn_lightning.allocator import keep_freed_memory
kept = keep_freed_memory()
def step():  # large tensors of a few sizes every step, as a training or sampling loop allocates them
    big = torch.empty(64 * 2**20, dtype=torch.uint8).fill_(1)
    big + torch.empty(40 * 2**20, dtype=torch.uint8).fill_(1)[0]
for _ in range(15):  # glibc's heap settles: aligned blocks fit in the holes that freed ones leave
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(int(kept), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(keep: str) -> tuple[bool, int]:
    """(kept, page faults of 5 steps of 64, 64 and 40 MiB tensors after 15 steps) in a fresh process."""
    env = {**os.environ, ENV: keep}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    kept, count = out.stdout.split()
    return kept == "1", int(count)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc")
def test_freed_memory_is_reused_without_page_faults():
    kept, count = faults("1")
    off, system_count = faults("0")
    assert kept and not off
    pages = 5 * (64 + 64 + 40) * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert system_count > pages / 2  # glibc maps every block above 32 MiB afresh
    assert count < pages / 50
