"""Keep freed memory in the process instead of handing it back to the kernel (glibc only).

A registration allocates and frees arrays of hundreds of MB over and over (an 84 M-voxel CT grid
in float32 is 336 MB). glibc serves every block above 32 MB with its own ``mmap`` and returns it
with ``munmap`` when freed, so the next array of that size faults in and zeroes every page again:
on the clinical CT benchmark that was 11-12 s of system time in a 25 s run. With
``M_MMAP_MAX = 0`` every block comes from the heap, and with a high ``M_TRIM_THRESHOLD`` the freed
heap stays mapped, so the next array reuses pages that are already there. The peak resident memory
stays where the largest simultaneous arrays put it (measured in ``benchmarks/README.md``, session 7);
only the memory is not given back before the process ends.

Only the entry points that own their process call this: the ``vmgga`` command line and the MONAI
bundle's ``run`` (``monai_bundle/configs/*.json``). Library callers (``vmgga.register``) keep their
allocator as it is; they can get the same with the environment variables
``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=<bytes>``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

#: ``mallopt`` parameters of glibc's ``malloc.h``.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: Only a free stretch of more than this many bytes at the top of the heap is given back (the largest
#: value ``mallopt``'s int takes, 2 GiB: more than any single array of a clinical-size run).
TRIM_THRESHOLD_BYTES = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``mallopt`` exists and means what this module says), else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None


def keep_freed_memory() -> bool:
    """Serve large blocks from the heap and keep freed heap mapped; True if the allocator took it.

    A no-op returning False where the C library is not glibc (macOS, Windows, musl).
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
