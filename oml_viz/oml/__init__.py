"""oml_viz.oml: what open-metric-learning users already have, working as written.

- :class:`EmbeddingMetrics`: a drop-in for OML's plain-Python validation loop, computed by the
  shared engine (``embedding_metrics.py``).
- OML pipeline configs, translated into ours (``configs.py``).
"""
from __future__ import annotations

from oml_viz.lazy import lazy_names

_NAMES = {
    "EmbeddingMetrics": ".embedding_metrics",
}

__getattr__, __dir__, __all__ = lazy_names(__name__, _NAMES, globals())
