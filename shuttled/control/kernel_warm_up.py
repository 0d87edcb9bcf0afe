"""Load the control kernels' machine code from numba's on-disk cache before the first tick.

A numba kernel with `cache=True` is only read back from its cache (NUMBA_CACHE_DIR, or the
package's __pycache__) when it is first called: in the daemon that is the first control tick,
which comes 0.15 s late for it. `shuttled serve` calls `warm_cached_kernels()` in a worker thread
while the devices are contacted and the operator server starts.

Nothing here knows the kernels' arguments (they change with the control code): every compiled
kernel of a loaded `shuttled` module is asked which specialisations its cache holds for this
machine and this source, and those, exactly, are loaded. That uses numba's cache index, which
is not public API: if a numba upgrade changes it, the warm-up logs why and does nothing, and the
first tick loads the kernels as before.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from types import ModuleType
from typing import Any

import structlog

log = structlog.get_logger("shuttled.kernels")


def daemon_modules() -> list[ModuleType]:
    return [m for name, m in list(sys.modules.items()) if name.startswith("shuttled.")]


def _kernels(modules: Iterable[ModuleType]) -> list[Any]:
    from numba.core.registry import CPUDispatcher

    found: dict[int, Any] = {}
    for module in modules:
        for value in list(vars(module).values()):
            # inline="always" ones live inside their callers' machine code, not on their own.
            if (
                isinstance(value, CPUDispatcher)
                and value._cache is not None
                and value.targetoptions.get("inline", "never") != "always"
            ):
                found[id(value)] = value
    return list(found.values())


def _cached_signatures(kernel: Any) -> list[tuple[Any, ...]]:
    """Signatures the kernel's cache holds for this CPU and this source (stale ones excluded:
    compiling those would not load but compile, for seconds)."""
    cache = kernel._cache
    codegen = kernel.targetctx.codegen()
    index = cache._cache_file._load_index()
    return [key[0] for key in index if cache._index_key(key[0], codegen) == key]


def warm_cached_kernels(modules: Iterable[ModuleType] | None = None) -> int:
    """Load every cached specialisation of the kernels of `modules` (default: the daemon's);
    returns how many. Never raises: without it, the first call loads the kernel instead."""
    loaded = 0
    try:
        for kernel in _kernels(daemon_modules() if modules is None else modules):
            for signature in _cached_signatures(kernel):
                if signature not in kernel.overloads:
                    kernel.compile(signature)
                    loaded += 1
    except Exception as error:
        log.warning("control kernels not warmed up; the first tick loads them", error=repr(error))
    return loaded
