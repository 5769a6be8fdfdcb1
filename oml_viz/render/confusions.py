"""Heat map of the label pairs a model confuses most (from ``res.confusions``).

Rows are query labels, columns retrieved labels, both from the ``top`` most frequent pairs; each
cell holds how often that pair occurs among the wrong results within the first k (or the share of
the row label's queries that retrieved the column label). Hot = red, as every oml_viz heat map.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> res = ov.retrieve(np.array([[0.0], [0.1], [0.15], [1.0], [1.1]]), ["a", "a", "b", "b", "c"], top_n=2)
    >>> fig = plot_confusions(res, k=2, top=5)
    >>> fig.axes[0].get_title()
    'most confused label pairs (first 2 results): 3 of 3 pairs'
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from oml_viz.checks import check_int

__all__ = ["confusion_matrix_of", "plot_confusions"]

VALUES = ("count", "share", "queries")


def confusion_matrix_of(conf: pd.DataFrame, top: int = 20, value: str = "count") -> pd.DataFrame:
    """The ``top`` pairs of a confusions table as a matrix: query labels (rows, most confused
    first) x retrieved labels (columns), ``value`` in the cells of those pairs, NaN elsewhere."""
    if value not in VALUES:
        raise ValueError(f"value must be one of {list(VALUES)}; got {value!r}")
    top = check_int("top", top, low=1)
    head = conf.head(int(top))
    rows = list(dict.fromkeys(head["query_label"].tolist()))
    cols = list(dict.fromkeys(head["retrieved_label"].tolist()))
    matrix = np.full((len(rows), len(cols)), np.nan)
    where_r = {_key(v): i for i, v in enumerate(rows)}
    where_c = {_key(v): j for j, v in enumerate(cols)}
    for a, b, v in zip(head["query_label"], head["retrieved_label"], head[value]):
        matrix[where_r[_key(a)], where_c[_key(b)]] = v
    return pd.DataFrame(matrix, index=pd.Index(rows, dtype=object), columns=pd.Index(cols, dtype=object))


def _key(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v)


def plot_confusions(res: Any, k: int = 5, top: int = 20, value: str = "count", *,
                    conf: pd.DataFrame | None = None, max_label_chars: int = 18) -> Figure:
    """Heat map of the ``top`` most confused (query label, retrieved label) pairs of ``res``
    within its first ``k`` results; ``value``: ``"count"`` (default), ``"queries"`` or
    ``"share"``. ``conf``: a ``res.confusions(k)`` table already at hand. A pyplot-free Figure."""
    conf = res.confusions(k=k) if conf is None else conf
    matrix = confusion_matrix_of(conf, top, value)
    n_r, n_c = matrix.shape
    fig = Figure(figsize=(min(3 + 0.45 * max(n_c, 1), 16), min(2 + 0.35 * max(n_r, 1), 14)), dpi=100,
                 layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    shown = min(int(top), len(conf))
    ax.set_title(f"most confused label pairs (first {k} results): {shown} of {len(conf)} pairs", fontsize=10)
    if n_r == 0:
        ax.text(0.5, 0.5, "no confusions: every result within the first k is relevant", ha="center",
                va="center", fontsize=10, transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    data = np.ma.masked_invalid(matrix.to_numpy())
    image = ax.imshow(data, cmap="Reds", aspect="auto", vmin=0, interpolation="nearest")
    fig.colorbar(image, ax=ax, label=value, shrink=0.9)

    def short(v: Any) -> str:
        text = str(v)
        return text if len(text) <= max_label_chars else text[: max_label_chars - 1] + "…"

    ax.set_xticks(range(n_c), [short(v) for v in matrix.columns], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(n_r), [short(v) for v in matrix.index], fontsize=8)
    ax.set_xlabel("retrieved label (wrong result)", fontsize=9)
    ax.set_ylabel("query label", fontsize=9)
    top_value = float(np.nanmax(matrix.to_numpy()))
    if n_r * n_c <= 400:
        for i in range(n_r):
            for j in range(n_c):
                v = matrix.iat[i, j]
                if np.isfinite(v):
                    text = f"{v:.2f}" if value == "share" else f"{int(v)}"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7,
                            color="white" if v > 0.6 * top_value else "black")
    return fig
