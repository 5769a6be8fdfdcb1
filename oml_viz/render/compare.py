"""The compared-queries grid: each row a query, model a's top results, then model b's.

Row layout (the worst-queries grid's colours and captions)::

    [query, blue] | [a: result 1..n, green = relevant / red = not] | [b: result 1..n]

The two result groups are headed with the models' names; the query's caption gives the metric
for both models (``map/5 0.80→0.20``).

Example:
    >>> import numpy as np, oml_viz as ov
    >>> labels = [0, 0, 1, 1]
    >>> old = ov.retrieve(np.array([[0.], [2.], [1.], [3.]]), labels, top_n=2)
    >>> new = ov.retrieve(np.array([[0.], [.1], [3.], [3.1]]), labels, top_n=2)
    >>> images = [np.full((8, 8, 3), 60 * i, np.uint8) for i in range(4)]
    >>> cmp = ov.compare(old, new, names=("old", "new"))
    >>> fig = plot_compared_queries(cmp, images, kind="improved", metric="cmc/1", n_queries=2, n_instances=2)
    >>> disp = ComparedQueriesDisplay.from_comparison(cmp, images, kind="improved", metric="cmc/1", n_instances=2)
    >>> [(t.item_id, t.role) for t in disp.plot().tiles_ if t.row == 0]  # query 0 | old's 2 results | new's
    [(0, 'query'), (2, 'not_relevant'), (1, 'relevant'), (1, 'relevant'), (2, 'not_relevant')]
"""
from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from oml_viz.checks import check_int
from oml_viz.data.cache import ThumbnailCache
from oml_viz.data.sources import BBoxMode, ImageSource

from .layout import GridLayout
from .queries import (
    _FONT_PX,
    _LINE_STEP,
    QueriesDisplay,
    QueryRow,
    _caption_labels,
    _fmt_distance,
    _rows_from_result,
)
from .text import draw_lines

__all__ = ["ComparedQueriesDisplay", "plot_compared_queries"]

_GROUP_HEAD = 22  # px above the first row for the models' names


class ComparedQueriesDisplay(QueriesDisplay):
    """Queries with model a's and model b's results side by side (scikit-learn Display style).

    Build it with :meth:`from_comparison`, then :meth:`plot` (``figure_``, ``tiles_``,
    ``layout_`` as for :class:`QueriesDisplay`; ``layout_``'s result group is a's, its "gt" group
    b's).
    """

    def __init__(self, rows_a: Sequence[QueryRow], rows_b: Sequence[QueryRow], source: ImageSource,
                 names: tuple[str, str], *, n_instances: int = 5, bbox_mode: BBoxMode = "crop",
                 tile_size: int = 128, title: str | None = None, labels: Mapping[int, str] | None = None):
        if len(rows_a) != len(rows_b):
            raise ValueError(f"rows_a has {len(rows_a)} rows but rows_b {len(rows_b)}")
        super().__init__(rows_a, source, n_instances=n_instances, n_gt=n_instances, bbox_mode=bbox_mode,
                         tile_size=tile_size, title=title, labels=labels)
        self.rows_b = list(rows_b)
        self.names = (str(names[0]), str(names[1]))

    @classmethod
    def from_comparison(
        cls,
        cmp: Any,
        images: Sequence[Any] | pd.DataFrame | ImageSource,
        query_ids: Sequence[int] | None = None,
        *,
        kind: str = "regressed",
        metric: str = "map/5",
        n_queries: int = 5,
        category: Hashable | None = None,
        categories: Sequence[Hashable] | None = None,
        n_instances: int = 5,
        dataset_root: str | os.PathLike | None = None,
        bbox_mode: BBoxMode = "crop",
        tile_size: int = 128,
        cache: ThumbnailCache | None = None,
        title: str | None = None,
        show_labels: bool | None = None,
        label_names: Mapping[Hashable, Any] | str | Sequence[Any] | None = None,
    ) -> ComparedQueriesDisplay:
        """Rows for an :class:`oml_viz.Comparison`: ``query_ids``, or when None the ``n_queries``
        queries of ``kind`` (``"regressed"``, ``"improved"``, ``"changed"``) by ``metric``, largest
        change first (``category``: one category's queries; categories from the comparison,
        ``categories=`` or the dataframe's ``category`` column)."""
        for name, v, low in (("n_instances", n_instances, 1), ("n_queries", n_queries, 1)):
            check_int(name, v, low=low)
        res_a, res_b = cmp.a, cmp.b
        source = images if isinstance(images, ImageSource) else ImageSource(images, dataset_root, cache=cache)
        if len(source) != res_a.n_items:
            raise ValueError(f"images holds {len(source)} items but the results were computed on {res_a.n_items}")
        if query_ids is None:
            if (category is not None and categories is None and cmp.categories is None
                    and isinstance(images, pd.DataFrame) and "category" in images.columns):
                categories = images["category"].tolist()
            query_ids = cmp.changed(metric, kind, n_queries, category, categories=categories)
            if title is None:
                what = {"regressed": f"{cmp.names[1]} worse than {cmp.names[0]}",
                        "improved": f"{cmp.names[1]} better than {cmp.names[0]}",
                        "changed": "changed most"}.get(kind, kind)
                title = (f"{len(query_ids)} queries {what} by {metric}"
                         + (f", category {category!r}" if category is not None else ""))
        query_ids = [int(q) for q in np.atleast_1d(np.asarray(query_ids, dtype=np.int64))]
        cmp.per_query(metric)  # a clear error for an unknown metric or a k above either top_n
        rows_a = _rows_from_result(res_a, query_ids, int(n_instances), 0, metric)
        rows_b = _rows_from_result(res_b, query_ids, int(n_instances), 0, metric)
        labels = _caption_labels(res_a, images, rows_a + rows_b, show_labels, label_names)
        return cls(rows_a, rows_b, source, cmp.names, n_instances=int(n_instances), bbox_mode=bbox_mode,
                   tile_size=tile_size, title=title, labels=labels)

    # ------------------------------------------------------------------ drawing
    def _layout(self, cells: list[tuple[int, int, int, str, str]] | None = None) -> GridLayout:
        cells = self._cells() if cells is None else cells
        n_lines = max([c[4].count("\n") + 1 for c in cells] or [2])
        return GridLayout(n_rows=max(1, len(self.rows)), n_instances=self.n_instances, n_gt=self.n_instances,
                          tile=self.tile_size, header_h=(26 if self.title else 0) + _GROUP_HEAD,
                          title_h=max(30, n_lines * _LINE_STEP + 3))

    def _cells(self) -> list[tuple[int, int, int, str, str]]:
        label = (lambda i: None) if self.labels is None else (lambda i: self.labels.get(int(i)))  # type: ignore[union-attr]
        cells = []
        for r, (ra, rb) in enumerate(zip(self.rows, self.rows_b)):
            score: list[str | None] = [None]
            if ra.metric is not None and ra.metric_value is not None and rb.metric_value is not None:
                score = [ra.metric, f"{ra.metric_value:.2f}→{rb.metric_value:.2f}"]  # two facts: narrow tiles wrap
            cells.append((r, 0, ra.query_id, "query",
                          self._caption([f"query id {ra.query_id}", label(ra.query_id), f"n_gt={ra.n_gt}", *score])))
            for offset, row in ((1, ra), (1 + self.n_instances, rb)):
                for i, (gid, d, rel) in enumerate(zip(row.result_ids, row.result_distances, row.result_relevant)):
                    cells.append((r, offset + i, int(gid), "relevant" if rel else "not_relevant",
                                  self._caption([f"#{i + 1}", f"id {int(gid)}", label(gid), _fmt_distance(float(d))])))
        return cells

    def _title_y(self, layout: GridLayout) -> float:
        return (layout.header_h - _GROUP_HEAD) / 2 + 2  # above the models' names, not on them

    def _draw_text(self, mosaic: np.ndarray, layout: GridLayout, tiles: list) -> None:
        super()._draw_text(mosaic, layout, tiles)
        y = layout.header_h - _GROUP_HEAD / 2
        for first, name in ((1, self.names[0]), (1 + self.n_instances, self.names[1])):
            x0 = layout.col_x(first)
            x1 = layout.col_x(first + self.n_instances - 1) + layout.tile
            draw_lines(mosaic, [name], (x0 + x1) / 2, y, _FONT_PX + 2, bold=True, anchor_bottom=False,
                       max_width=x1 - x0)
            mosaic[int(y) + 9, x0:x1, :3] = (160, 160, 160)  # a rule under the name spans the group


def plot_compared_queries(
    cmp: Any,
    images: Sequence[Any] | pd.DataFrame,
    kind: str = "regressed",
    metric: str = "map/5",
    n_queries: int = 5,
    n_instances: int = 5,
    category: Hashable | None = None,
    **kwargs: Any,
) -> Figure:
    """A figure of the ``n_queries`` queries that changed most (``kind``: ``"regressed"``,
    ``"improved"`` or ``"changed"``) by ``metric`` between the comparison's two models: the
    query, a's top ``n_instances`` results, then b's, each group headed with the model's name.

    Other keyword arguments go to :meth:`ComparedQueriesDisplay.from_comparison` (``query_ids``,
    ``categories``, ``dataset_root``, ``bbox_mode``, ``tile_size``, ``title``, ``cache``,
    ``show_labels``, ``label_names``) or to ``plot`` (``ax``, ``dpi``).
    """
    ax, dpi = kwargs.pop("ax", None), kwargs.pop("dpi", 100)
    query_ids = kwargs.pop("query_ids", None)
    disp = ComparedQueriesDisplay.from_comparison(cmp, images, query_ids, kind=kind, metric=metric,
                                                  n_queries=n_queries, category=category, n_instances=n_instances,
                                                  **kwargs)
    return disp.plot(ax, dpi=dpi).figure_
