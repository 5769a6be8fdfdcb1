"""oml_viz.oml: what open-metric-learning users already have, working as written.

- :class:`EmbeddingMetrics`: a drop-in for OML's plain-Python validation loop, computed by the
  shared engine (``embedding_metrics.py``).
- OML pipeline configs, translated into ours (``configs.py``).
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

_NAMES = {
    "EmbeddingMetrics": ".embedding_metrics",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'oml_viz.oml' has no attribute {name!r}")
    value = getattr(import_module(_NAMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
