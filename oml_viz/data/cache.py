"""Bounded least-recently-used caches: one thread-safe LRU, limited by bytes and by items.

Figures redraw the same images again and again (a panel's slider, the next epoch's grid), and
decoding is the slow part; thumbnails are small, so a few hundred MB hold thousands.
:class:`LRUCache` is the one implementation; :class:`ThumbnailCache` (decoded images) and the
widgets' ``PngCache`` (PNG bytes) only say what they accept.

Example:
    >>> cache = ThumbnailCache(max_bytes=10_000_000)
    >>> cache.get_or_make(("a", 64), lambda: np.zeros((64, 64, 3), np.uint8)).shape
    (64, 64, 3)
    >>> lru = LRUCache(max_bytes=1000, max_items=2)
    >>> for k in "abc":
    ...     lru.put(k, k.encode())
    >>> "a" in lru, lru.get("c"), lru.nbytes
    (False, b'c', 2)
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

from oml_viz.errors import InputValueError


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value) + 64
    return 64


class LRUCache:
    """LRU cache bounded by ``max_bytes`` (array / bytes sizes) and ``max_items``; thread-safe.

    A value larger than ``max_bytes`` is not kept (nothing is evicted for it). Subclasses say
    what they accept in :meth:`prepare`.
    """

    def __init__(self, max_bytes: int = 256 * 2**20, max_items: int = 100_000):
        if max_bytes < 1 or max_items < 1:
            raise InputValueError(f"max_bytes and max_items must be >= 1, got {max_bytes}, {max_items}")
        self.max_bytes = int(max_bytes)
        self.max_items = int(max_items)
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def prepare(self, value: Any) -> Any:
        """The value as stored (here: numpy arrays, also inside a tuple, made read-only)."""
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, np.ndarray):
                v.flags.writeable = False
        return value

    def get(self, key: Hashable, default: Any = None) -> Any:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self.misses += 1
                return default
            self._data.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: Any) -> None:
        value = self.prepare(value)
        size = _nbytes(value)
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.max_bytes:
                return  # larger than the whole cache: do not evict everything for it
            self._data[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes or len(self._data) > self.max_items:
                _, (_, s) = self._data.popitem(last=False)
                self._bytes -= s

    def get_or_make(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The cached value for ``key``, or ``make()``'s result, stored."""
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            value = make()
            self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._bytes = 0
            self.hits = self.misses = 0


class ThumbnailCache(LRUCache):
    """The LRU for decoded thumbnails (numpy arrays, stored read-only so that one caller cannot
    alter another's image)."""


_DEFAULT = ThumbnailCache()


def default_cache() -> ThumbnailCache:
    """The process-wide thumbnail cache used when none is given."""
    return _DEFAULT
