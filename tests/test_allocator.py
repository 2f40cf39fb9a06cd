"""The command line keeps freed memory mapped (glibc): a freed 256 MB block is reused, not faulted in again.

Each case runs in a fresh interpreter and reads its resident set size from ``/proc/self/statm``,
the kernel's own count, before and after freeing a large block whose every page was written.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest

from vmgga import allocator

glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's"
)

MB = 1 << 20


def resident_after_free(keep: bool) -> dict[str, int]:
    """Resident bytes with a 256 MB block alive, after freeing it, and after allocating it again."""
    code = textwrap.dedent(f"""
        import json, os
        from vmgga.allocator import keep_freed_memory
        taken = keep_freed_memory() if {keep} else False
        page = os.sysconf("SC_PAGE_SIZE")
        rss = lambda: int(open("/proc/self/statm").read().split()[1]) * page
        block = b"\\x01" * (256 << 20)
        alive = rss()
        del block
        freed = rss()
        block = b"\\x02" * (256 << 20)
        again = rss()
        print(json.dumps(dict(taken=taken, alive=alive, freed=freed, again=again)))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


@glibc_only
def test_without_it_glibc_returns_a_freed_large_block() -> None:
    """The baseline the setting changes: glibc unmaps a freed 256 MB block at once."""
    rss = resident_after_free(keep=False)
    assert rss["alive"] - rss["freed"] > 200 * MB


@glibc_only
def test_freed_large_block_stays_mapped_and_is_reused() -> None:
    rss = resident_after_free(keep=True)
    assert rss["taken"] is True
    assert rss["alive"] - rss["freed"] < 16 * MB  # kept
    assert rss["again"] - rss["alive"] < 16 * MB  # the second block reuses the first one's pages


def test_other_c_libraries_are_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(allocator.platform, "libc_ver", lambda: ("", ""))
    assert allocator.keep_freed_memory() is False
