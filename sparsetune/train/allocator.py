"""Keep freed memory inside the training process instead of handing it back to the kernel.

Each masked training step allocates a masked copy of every weight and its gradient, then frees
them. With glibc's defaults those blocks go back to the kernel at once and the next step faults
them in again: for LeNet-5 on 2 cores that is 2-3k minor page faults a step and most of what
masks cost (benchmarks/README.md). Raising glibc's trim and mmap thresholds keeps them for reuse.

The setting is process-wide, so it is the entry point's choice, never the library's: the CLI's
`main`, the Ray trainable and the benchmarks and scripts that train call `keep_freed_memory()`;
`fit` does not.
"""

from __future__ import annotations

import ctypes
import sys

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Blocks below this come from the heap (reused) rather than fresh mmaps: above any LeNet/VGG
# weight or activation of a CPU-sized batch, below the decoded datasets.
_MMAP_THRESHOLD_BYTES = 64 << 20
# Freed heap kept before glibc trims it back to the kernel.
_TRIM_THRESHOLD_BYTES = 1 << 30

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Tune glibc's allocator for this process, once; True when it took effect. A no-op (False)
    off glibc (macOS, musl), where the allocators already keep freed blocks."""
    global _applied
    if _applied is None:
        _applied = _set_glibc_thresholds()
    return _applied


def _set_glibc_thresholds() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success.
    return (
        mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES) == 1
        and mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES) == 1
    )
