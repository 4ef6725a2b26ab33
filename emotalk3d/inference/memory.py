"""Keep freed memory in the process instead of returning it to the OS at every free.

glibc's malloc serves large blocks (above a dynamic threshold of 128 KB to 32 MB) with mmap
and unmaps them on free, so every per-frame temporary of the renderer and G2ANet ([V, 128]
activations, [tiles, slab, pixels] compositing blocks: megabytes each) is page-faulted in
again on the next frame. Profiled on the demo subject at 256x256 (one thread, 2-core Xeon
VM): a fresh 9 MB tensor costs ~7 ms to fill against ~1 ms for a reused one, and raising
glibc's mmap and trim thresholds cut the per-frame path from 150 to 118 CPU ms
(appearance 48 -> 32 ms, rasterize 100 -> 87 ms); docs/benchmarks.md has the profile.

`retain_freed_memory()` raises both thresholds with `mallopt` so freed blocks stay in the
heap and are reused. Peak memory is unchanged (the same blocks are live at the peak); the
resident size simply does not shrink after the peak. It is a no-op off glibc, and
`EMOTALK3D_KEEP_MALLOC=1` in the environment turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
THRESHOLD_BYTES = 512 * 2**20  # blocks up to this come from (and return to) the heap

_applied: bool | None = None


def retain_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds once per process.

    Returns:
        True when the thresholds are (now or already) raised; False when not on glibc, when
        `mallopt` refused, or when `EMOTALK3D_KEEP_MALLOC=1` disables it.
    """
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get("EMOTALK3D_KEEP_MALLOC") == "1" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(M_MMAP_THRESHOLD, THRESHOLD_BYTES) == 1
    ok = mallopt(M_TRIM_THRESHOLD, THRESHOLD_BYTES) == 1 and ok
    _applied = ok
    return ok
