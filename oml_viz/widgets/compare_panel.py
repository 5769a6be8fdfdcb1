"""``ComparePanel``: model a against model b, with intervals, and the queries that changed most.

The table (computed once, here) gives per group both models' means, the difference, its 95%
paired-bootstrap interval and the sign-flip p-value; a difference whose interval excludes 0 is
shaded green (b better) or red (b worse). Below, the regressed / improved / changed queries of
the chosen metric and category, ``n_queries`` per page, as the compared grid
(:class:`oml_viz.render.ComparedQueriesDisplay`); the next page is rendered ahead while idle.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> labels = [0, 0, 1, 1]
    >>> old = ov.retrieve(np.array([[0.], [2.], [1.], [3.]]), labels, top_n=2)
    >>> new = ov.retrieve(np.array([[0.], [.1], [3.], [3.1]]), labels, top_n=2)
    >>> images = [np.full((8, 8, 3), 60 * i, np.uint8) for i in range(4)]
    >>> panel = ComparePanel(ov.compare(old, new, names=("old", "new")), images, n_boot=100, background=False)
    >>> panel.kind.value = "improved"
    >>> panel.metric.value, panel.page_query_ids  # largest gain in map/2 first, ties by id
    ('map/2', [1, 2, 0, 3])
    >>> panel.close()
"""
from __future__ import annotations

import html
import os
import warnings
from typing import Any, Hashable, Sequence

import ipywidgets as w
import numpy as np
import pandas as pd

from oml_viz.checks import check_int
from oml_viz.engine.result import OVERALL
from oml_viz.render import ComparedQueriesDisplay

from .base import Panel, item_categories
from .items import Items
from .paging import PagedQueries
from .png import rgb_to_png
from .tables import TABLE_STYLE

__all__ = ["ComparePanel", "compare_table_html"]

_ALL = "(all)"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:right"
_HEAD = "padding:2px 8px;border-bottom:2px solid #888;text-align:right"
_BETTER = "background:#c8efc8"
_WORSE = "background:#f6c6c6"
_ROW_MARK = "outline:2px solid #f0c000"


def compare_table_html(table: pd.DataFrame, metric: str, names: tuple[str, str], digits: int = 3,
                       mark_row: Hashable | None = None) -> str:
    """One metric of a :meth:`Comparison.table` as escaped HTML: a, b, delta [interval], p.

    A delta whose interval excludes 0 is shaded (green: b better, red: b worse); NaN is a dash.

    Example:
        >>> t = pd.DataFrame({"m/a": [.5], "m/b": [.7], "m/delta": [.2], "m/ci_low": [.1], "m/ci_high": [.3],
        ...                   "m/p_value": [.01]}, index=["OVERALL"])
        >>> "#c8efc8" in compare_table_html(t, "m", ("a", "b"))
        True
    """
    def fmt(v: float) -> str:
        return "&mdash;" if not np.isfinite(v) else f"{v:.{digits}f}"

    heads = [html.escape(names[0]), html.escape(names[1]), "&Delta; (b &minus; a)", "95% interval", "p"]
    head = "".join(f"<th style='{_HEAD}'>{h}</th>" for h in heads)
    rows = []
    for group in table.index:
        get = lambda c: float(table.loc[group, f"{metric}/{c}"])  # noqa: E731
        low, high = get("ci_low"), get("ci_high")
        shade = _BETTER if low > 0 else _WORSE if high < 0 else ""
        cells = [fmt(get(names[0])), fmt(get(names[1])), f"{get('delta'):+.{digits}f}" if np.isfinite(get("delta"))
                 else "&mdash;", f"[{fmt(low)}, {fmt(high)}]", fmt(get("p_value"))]
        styles = ["", "", shade, shade, ""]
        tds = "".join(f"<td style='{_CELL};{s}'>{c}</td>" for c, s in zip(cells, styles))
        weight = "bold" if str(group) == OVERALL else "normal"
        mark = _ROW_MARK if mark_row is not None and group == mark_row else ""
        rows.append(f"<tr style='{mark}'><th style='{_CELL};text-align:left;font-weight:{weight}'>"
                    f"{html.escape(str(group))}</th>{tds}</tr>")
    return (f"<table class='ov-compare-table' style='{TABLE_STYLE}'><caption style='text-align:left'>"
            f"<b>{html.escape(metric)}</b></caption><thead><tr><th style='{_HEAD}'></th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


class ComparePanel(PagedQueries, Panel):
    """Compare two results over the same items (an :class:`oml_viz.Comparison`).

    Args:
        cmp: the comparison (``ov.compare(res_a, res_b, names=...)``).
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        categories: one per item (default: the comparison's, else the dataframe's ``category``).
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        metrics: the table's metrics (default ``cmc/1``, ``precision/K``, ``map/K``, K = 5 or the
            smaller top_n); metric: the one selected first (default the last, ``map/K``).
        n_boot, seed: the table's bootstrap resamples and seed.
        n_queries: queries per page; n_instances: results per model per query.
        tile_size: grid tile side in pixels; background: False renders before a call returns.
    """

    css_class = "ov-compare"

    def __init__(self, cmp: Any, images: Any, *, categories: Sequence[Hashable] | None = None,
                 dataset_root: str | os.PathLike | None = None, metrics: Sequence[str] | None = None,
                 metric: str | None = None, n_boot: int = 1000, seed: int = 0, n_queries: int = 5,
                 n_instances: int = 5, tile_size: int = 96, background: bool = True):
        super().__init__(background=background)
        top_n = min(int(cmp.a.top_n), int(cmp.b.top_n))
        for name, v in (("n_queries", n_queries), ("n_instances", n_instances)):
            check_int(name, v, low=1)
        k = min(5, top_n)
        metrics = list(metrics) if metrics is not None else ["cmc/1", f"precision/{k}", f"map/{k}"]
        metric = metric if metric is not None else metrics[-1]
        if metric not in metrics:
            raise ValueError(f"metric: {metric!r} is not one of the table's metrics {metrics}")
        self.cmp = cmp
        self.items = Items(images, dataset_root, labels=cmp.a.labels)
        self.categories = item_categories(images, cmp.a, categories)
        if self.categories is None and cmp.categories is not None:
            self.categories = np.asarray(cmp.categories, dtype=object)
        self.n_queries, self.n_instances, self.tile_size = int(n_queries), min(int(n_instances), top_n), int(tile_size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the no-ground-truth note is shown in the panel instead
            self.table: pd.DataFrame = cmp.table(metrics=metrics, categories=self.categories, n_boot=n_boot,
                                                 seed=seed)
        self.page = 0
        self._orders: dict[tuple, np.ndarray] = {}

        self.metric = w.Dropdown(options=metrics, value=metric, description="metric", layout=w.Layout(width="200px"))
        self.metric.add_class("ov-metric-select")
        by_name = {} if self.categories is None else {str(c): c for c in self.categories[cmp.a.query_ids]}
        self.category = w.Dropdown(options=[(_ALL, _ALL), *sorted(by_name.items())], value=_ALL,
                                   description="category", layout=w.Layout(width="230px"),
                                   disabled=self.categories is None)
        self.category.add_class("ov-category-select")
        self.kind = w.ToggleButtons(options=["regressed", "improved", "changed"], value="regressed",
                                    tooltips=[f"{cmp.names[1]} worse than {cmp.names[0]}",
                                              f"{cmp.names[1]} better than {cmp.names[0]}", "either way"])
        self.kind.add_class("ov-kind-select")
        self.prev_button = w.Button(description="◀ prev", layout=w.Layout(width="80px"))
        self.prev_button.add_class("ov-prev-page")
        self.next_button = w.Button(description="next ▶", layout=w.Layout(width="80px"))
        self.next_button.add_class("ov-next-page")
        self.page_label = w.HTML()
        self.page_label.add_class("ov-page-label")
        self.table_html = w.HTML()
        self.table_html.add_class("ov-compare-table")
        no_gt = int((np.asarray(cmp.a.n_gt) == 0).sum())
        note = (f"<i>{no_gt} of {len(cmp.a.n_gt)} queries have no ground truth and are left out.</i> "
                if no_gt else "")
        self.note = w.HTML(note + "<span style='color:#666'>Shaded: the 95% interval of the difference "
                           "excludes 0 (green: b better, red: b worse). p: paired sign-flip test.</span>")
        self.grid = self._slot("ov-compare-grid-image")

        self.prev_button.on_click(lambda _: self.prev_page())
        self.next_button.on_click(lambda _: self.next_page())
        for control in (self.metric, self.category, self.kind):
            control.observe(self._on_control, names="value")
        self.children = [
            w.HBox([self.metric, self.category]), self.table_html, self.note,
            w.HBox([self.kind]),
            w.HBox([self.prev_button, self.page_label, self.next_button, self.grid.progress]),
            self.grid.image, self.grid.status,
        ]
        self._start()

    # ---------------------------------------------------------------- state
    @property
    def category_value(self) -> Hashable | None:
        return None if self.category.value == _ALL else self.category.value

    def _order(self) -> np.ndarray:
        """Every query of the chosen kind, metric and category, largest change first (the
        comparison ranks them)."""
        key = (self.metric.value, self.kind.value, self.category.value)
        if key not in self._orders:
            cat = self.category_value
            self._orders[key] = np.asarray(self.cmp.changed(
                self.metric.value, self.kind.value, None, cat,
                categories=self.categories if cat is not None else None), dtype=np.int64)
        return self._orders[key]

    @property
    def state(self) -> dict:
        return {"metric": self.metric.value, "kind": self.kind.value, "category": self.category_value,
                "page": self.page}

    # ---------------------------------------------------------------- actions
    def _on_control(self, change: dict) -> None:
        self.page = 0
        self._refresh()

    # ---------------------------------------------------------------- views
    def _refresh(self) -> None:
        if self._closed:
            return
        self.table_html.value = compare_table_html(self.table, self.metric.value, self.cmp.names,
                                                   mark_row=self.category_value)
        n_pages, total = self.n_pages, len(self._order())
        self.page_label.value = (f"&nbsp;page <b>{self.page + 1}</b> / {n_pages} &nbsp;"
                                 f"<span style='color:#666'>({total} {html.escape(self.kind.value)} queries)"
                                 f"</span>&nbsp;")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= n_pages - 1
        super()._refresh()
        if self.page + 1 < n_pages:  # the likely next click
            self.grid.prefetch(*self._grid_view(self.page + 1))

    def _grid_view(self, page: int) -> tuple[tuple, Any]:
        ids = [int(i) for i in self._page_ids(page)]
        metric, kind, cat = self.metric.value, self.kind.value, self.category_value
        a, b = self.cmp.names
        what = {"regressed": f"{b} worse than {a}", "improved": f"{b} better than {a}", "changed": "changed"}[kind]
        title = (f"queries {what} by {metric}" + (f", category {cat}" if cat is not None else "")
                 + f" - page {page + 1}/{self.n_pages}")
        cmp, images, root, n_inst, tile = self.cmp, self.items.images, self.items.dataset_root, \
            self.n_instances, self.tile_size

        def make() -> bytes:
            disp = ComparedQueriesDisplay.from_comparison(cmp, images, ids, metric=metric, n_instances=n_inst,
                                                          dataset_root=root, tile_size=tile, title=title)
            return rgb_to_png(disp.render_mosaic()[0])

        return ("compare-grid", metric, kind, self.category.value, page), make

    def _views(self) -> list:
        return [(self.grid, *self._grid_view(self.page))]
