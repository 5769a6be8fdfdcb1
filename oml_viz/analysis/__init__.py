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

from oml_viz.lazy import lazy_names

# compare() shares its name with its module: imported eagerly, so that importing the module
# oml_viz.analysis.compare (doctests, a user) can never replace the function on this package.
from .compare import Comparison, compare  # noqa: E402, F401

_NAMES = {
    "compare": ".compare",
    "Comparison": ".compare",
    "find_label_issues": ".label_issues",
    "find_duplicates": ".duplicates",
    "project": ".projection",
}

__getattr__, __dir__, __all__ = lazy_names(__name__, _NAMES, globals())
