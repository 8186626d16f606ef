"""Whether a model's parameters fit in memory: counted before anything is allocated, so that a size
such as MLP(2, [10**9]) is a clear MemoryError at once instead of minutes of allocating (or the
out-of-memory killer)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable

from ._backend import Value

__all__ = ["available_memory", "bytes_per_parameter", "check_fits"]

_QUIET_BELOW = 2**26  # bytes: a model smaller than this is never checked against the machine's memory


def bytes_per_parameter() -> int:
    """What one parameter costs, in bytes: its Value, its float and the list slot that holds it."""
    return sys.getsizeof(Value(0.5)) + sys.getsizeof(0.5) + 8


def available_memory() -> int | None:
    """Bytes this process may still allocate, as well as the system tells: the memory available
    (Linux: MemAvailable; elsewhere the free pages), capped by an address-space limit (RLIMIT_AS) if
    one is set; None where nothing says."""
    found = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    if found is None:
        with contextlib.suppress(AttributeError, OSError, ValueError):
            found = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
        if soft != resource.RLIM_INFINITY and soft > 0:
            found = soft if found is None else min(found, soft)
    except (ImportError, OSError, ValueError):
        pass
    return found


def _gb(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.1f} MiB"


def check_fits(count: int, what: Callable[[], str]) -> None:
    """A MemoryError, before anything is allocated, if count parameters cannot fit in memory: the
    message names the model (what(), made only then), the count and the bytes needed."""
    need = count * bytes_per_parameter()
    if need < _QUIET_BELOW:
        return
    free = available_memory()
    if free is not None and need > free:
        raise MemoryError(
            f"{what()} would have {count:,} parameters, about {_gb(need)} "
            f"({bytes_per_parameter()} bytes each), more than the {_gb(free)} of memory available: "
            "make it smaller"
        )
