"""oml_viz: see where and why a retrieval (metric-learning) model fails.

Layers (lower never import higher)::

    data -> engine -> analysis -> render / explain -> widgets / loggers -> pipelines

The top-level names are imported lazily so that ``import oml_viz`` stays cheap
(no matplotlib, timm or ipywidgets until they are used).

Example:
    >>> import numpy as np, oml_viz as ov
    >>> res = ov.retrieve(np.eye(4, dtype="float32"), [0, 0, 1, 1], top_n=2)
    >>> float(res.metrics(cmc_top_k=(1,), precision_top_k=(1,), map_top_k=(1,))["cmc/1"]["OVERALL"])
    0.5
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY_NAMES = {
    "retrieve": "oml_viz.engine",
    "RetrievalResult": "oml_viz.engine",
    "plot_worst_queries": "oml_viz.render",
    "plot_queries": "oml_viz.render",
    "figure_to_array": "oml_viz.render",
    "QueriesDisplay": "oml_viz.render",
    "attention_map": "oml_viz.explain",
    "gradcam_map": "oml_viz.explain",
    "draw_attention": "oml_viz.explain",
    "draw_gradcam": "oml_viz.explain",
    "explain_pair": "oml_viz.explain",
    # second round: diagnosis (analysis layer), scale and OML migration
    "compare": "oml_viz.analysis",
    "Comparison": "oml_viz.analysis",
    "find_label_issues": "oml_viz.analysis",
    "find_duplicates": "oml_viz.analysis",
    "project": "oml_viz.analysis",
    "plot_compared_queries": "oml_viz.render",
    "plot_confusions": "oml_viz.render",
    "plot_pairs": "oml_viz.render",
    "retrieve_sharded": "oml_viz.engine",
    "EmbeddingMetrics": "oml_viz.oml",
}
_SUBMODULES = {
    "data", "datasets", "engine", "analysis", "models", "explain", "render",
    "widgets", "loggers", "losses", "pipelines", "oml",
}

__all__ = sorted(_LAZY_NAMES) + sorted(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _LAZY_NAMES:
        value = getattr(import_module(_LAZY_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = import_module(f"oml_viz.{name}")
    else:
        raise AttributeError(f"module 'oml_viz' has no attribute {name!r}")
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
