"""umap-learn: its numba kernels, compiled with on-disk caching.

umap-learn compiles most of its kernels with ``numba.njit`` *without* ``cache=True``, so every
new Python process spends tens of seconds compiling them again (measured: 5k x 64 took 47 s cold,
most of it compiling). numba's public ``Dispatcher.enable_caching()`` turns the disk cache on for
a kernel that has not compiled yet; this walks umap's modules and does it for each. What is
internal here: which umap modules hold the kernels (module paths, not a documented API).
"""
from __future__ import annotations

import importlib

_MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.distances", "umap.sparse")
_done = False


def enable_numba_cache() -> int:
    """Turn numba's disk cache on for umap's kernels (once per process); returns how many."""
    global _done
    if _done:
        return 0
    from numba.core.registry import CPUDispatcher

    count = 0
    for name in _MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for obj in list(vars(module).values()):
            if isinstance(obj, CPUDispatcher):
                try:
                    obj.enable_caching()
                    count += 1
                except Exception:  # a kernel numba cannot cache (e.g. defined dynamically): compiled as before
                    pass
    _done = True
    return count
