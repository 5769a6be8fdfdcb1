"""oml_viz.render: matplotlib displays built with ``matplotlib.figure.Figure`` (no pyplot state).

Example:
    >>> import oml_viz as ov
    >>> fig = ov.plot_worst_queries(res, df, metric="map/5")   # doctest: +SKIP
    >>> rgb = ov.figure_to_array(fig)                          # doctest: +SKIP
"""
from .colors import GT_COLOR, NOT_RELEVANT_COLOR, QUERY_COLOR, RELEVANT_COLOR
from .figure import figure_to_array
from .layout import GridLayout
from .metrics_plot import metrics_figure
from .queries import QueriesDisplay, QueryRow, Tile, plot_queries, plot_worst_queries

__all__ = [
    "GT_COLOR",
    "NOT_RELEVANT_COLOR",
    "QUERY_COLOR",
    "RELEVANT_COLOR",
    "GridLayout",
    "QueriesDisplay",
    "QueryRow",
    "Tile",
    "figure_to_array",
    "metrics_figure",
    "plot_queries",
    "plot_worst_queries",
]
