"""oml_viz.render: matplotlib displays built with ``matplotlib.figure.Figure`` (no pyplot state).

Example:
    >>> import oml_viz as ov
    >>> fig = ov.plot_worst_queries(res, df, metric="map/5")   # doctest: +SKIP
    >>> rgb = ov.figure_to_array(fig)                          # doctest: +SKIP
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
