"""oml_viz.analysis: what to fix. Reads ``RetrievalResult``s and calls the engine; draws nothing.

- :func:`compare` / :class:`Comparison`: model A against model B, query by query, with paired
  bootstrap intervals and sign-flip p-values (``compare.py``).
- :func:`find_label_issues`: items whose neighbours suggest another label (``label_issues.py``).
- :func:`find_duplicates`: near-duplicate pairs and cross-split leaks (``duplicates.py``).
- :func:`project`: 2-D maps of the embeddings by PCA, UMAP or t-SNE (``projection.py``).

Names are imported lazily, so that one module's heavy optional dependency (umap-learn) is loaded
only when it is used.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

# compare() shares its name with its module: imported eagerly, so that importing the module
# oml_viz.analysis.compare (doctests, a user) can never replace the function on this package.
from .compare import Comparison, compare  # noqa: E402

_NAMES = {
    "compare": ".compare",
    "Comparison": ".compare",
    "find_label_issues": ".label_issues",
    "find_duplicates": ".duplicates",
    "project": ".projection",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module 'oml_viz.analysis' has no attribute {name!r}")
    value = getattr(import_module(_NAMES[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
