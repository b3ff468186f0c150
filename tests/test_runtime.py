"""Tests of fastadapt.backends.process_setup's process settings: glibc keeps freed tensors' memory
instead of unmapping it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Allocates two 40 MB tensors ([80, 2000, 64] activations) and frees them, 50 times, and counts
# the minor page faults. glibc's defaults always serve blocks above 32 MB with a fresh mmap whose
# 10,240 pages all fault in again (below 32 MB it depends on the order of earlier frees).
_CHILD = """
import json, resource, sys
import torch
from fastadapt.backends.process_setup import configure_process
configure_process(1, keep_freed_memory=sys.argv[1] == "keep")
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def use():
    x = torch.ones(80, 2000, 64)
    y = x * 2
    del x, y
for _ in range(5):  # warm-up: the heap grows to its working size
    use()
start = faults()
for _ in range(50):
    use()
print(json.dumps({"faults": faults() - start, "threads": torch.get_num_threads()}))
"""


def _faults(mode: str) -> dict[str, int]:
    out = subprocess.run([sys.executable, "-c", _CHILD, mode], capture_output=True, text=True,
                         check=True, timeout=120)
    result: dict[str, int] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_memory_is_reused_without_page_faults() -> None:
    kept, default = _faults("keep"), _faults("system")
    assert kept["threads"] == default["threads"] == 1
    # default glibc: about 50 x 2 x 10,240 faults (measured 1.0M); retained: the pages stay
    # mapped between uses (measured 20k: a few hundred per round, from torch's own allocations)
    assert default["faults"] > 50 * 10_000
    assert kept["faults"] < 50 * 2_000


def test_retain_freed_memory_reports_whether_it_applied() -> None:
    from fastadapt.backends.process_setup import retain_freed_memory

    assert retain_freed_memory() is sys.platform.startswith("linux")
