"""oml_viz.render: matplotlib displays built with ``matplotlib.figure.Figure`` (no pyplot state).

Example:
    >>> import numpy as np, oml_viz as ov
    >>> emb = np.array([[0.0], [0.1], [1.0], [1.1]], np.float32)
    >>> res = ov.retrieve(emb, [0, 1, 0, 1], top_n=3)
    >>> images = [np.full((16, 16, 3), 60 * i, np.uint8) for i in range(4)]
    >>> fig = ov.plot_worst_queries(res, images, metric="map/2", n_queries=2, n_instances=2, n_gt=1)
    >>> rgb = ov.figure_to_array(fig)
    >>> rgb.dtype, rgb.ndim
    (dtype('uint8'), 3)
"""
from .colors import GT_COLOR, NOT_RELEVANT_COLOR, QUERY_COLOR, RELEVANT_COLOR
from .compare import ComparedQueriesDisplay, plot_compared_queries
from .confusions import plot_confusions
from .figure import figure_to_array
from .layout import GridLayout
from .metrics_plot import metrics_figure
from .pairs import plot_pairs
from .queries import QueriesDisplay, QueryRow, Tile, plot_queries, plot_worst_queries

__all__ = [
    "GT_COLOR",
    "NOT_RELEVANT_COLOR",
    "QUERY_COLOR",
    "RELEVANT_COLOR",
    "ComparedQueriesDisplay",
    "GridLayout",
    "QueriesDisplay",
    "QueryRow",
    "Tile",
    "figure_to_array",
    "metrics_figure",
    "plot_compared_queries",
    "plot_confusions",
    "plot_pairs",
    "plot_queries",
    "plot_worst_queries",
]
