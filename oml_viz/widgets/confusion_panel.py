"""``ConfusionPanel``: the label pairs a model confuses, as a list and a heat map; pick a pair to
see its queries.

The pair list and the heat map come from ``res.confusions(k)`` (computed once per k). Choosing a
pair shows the queries of its first label that retrieved the second within the first k, worst
first (``res.confused_queries``), as the worst-queries grid, paged.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> labels = [0, 0, 1, 1]
    >>> old = ov.retrieve(np.array([[0.], [2.], [1.], [3.]]), labels, top_n=2)
    >>> new = ov.retrieve(np.array([[0.], [.1], [3.], [3.1]]), labels, top_n=2)
    >>> images = [np.full((8, 8, 3), 60 * i, np.uint8) for i in range(4)]
    >>> panel = ConfusionPanel(old, images, k=2, background=False)
    >>> panel.table[["query_label", "retrieved_label", "count"]].values.tolist()
    [[0, 1, 3], [1, 0, 3]]
    >>> panel.select(0, 1)
    >>> panel.page_query_ids  # query 1 has two label-1 results in its first 2, query 0 one
    [1, 0]
    >>> panel.close()
"""
from __future__ import annotations

import html
import os
from typing import Any, Hashable

import ipywidgets as w
import numpy as np
import pandas as pd

from oml_viz.checks import check_int
from oml_viz.render import QueriesDisplay, plot_confusions

from .base import Panel, valid_ks
from .items import Items
from .paging import PagedQueries
from .png import figure_to_png, rgb_to_png

__all__ = ["ConfusionPanel"]


class ConfusionPanel(PagedQueries, Panel):
    """Confused label pairs of an :class:`oml_viz.RetrievalResult`.

    Args:
        res: the retrieval result.
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        k: results per query that count (default 5, or top_n when smaller).
        top: pairs in the list and the heat map.
        n_queries: queries per page of a pair; n_instances, n_gt: results and ground truths shown.
        tile_size: grid tile side in pixels; background: False renders before a call returns.
    """

    css_class = "ov-confusions"

    def __init__(self, res: Any, images: Any, *, dataset_root: str | os.PathLike | None = None, k: int | None = None,
                 top: int = 20, n_queries: int = 5, n_instances: int = 5, n_gt: int = 2, tile_size: int = 96,
                 background: bool = True):
        super().__init__(background=background)
        top_n = int(res.retrieved_ids.shape[1])
        k = min(5, top_n) if k is None else k
        k = check_int("k", k, low=1, high=int(res.top_n), hint=" (the result's top_n is the most)")
        for name, v in (("top", top), ("n_queries", n_queries), ("n_instances", n_instances)):
            check_int(name, v, low=1)
        self.res = res
        self.items = Items(images, dataset_root, labels=res.labels)
        self.top, self.n_queries, self.tile_size = int(top), int(n_queries), int(tile_size)
        self.n_instances, self.n_gt = min(int(n_instances), top_n), int(n_gt)
        self.page = 0
        self.selected: tuple[Hashable, Hashable] | None = None
        self._tables: dict[int, pd.DataFrame] = {}
        self._queries: dict[tuple, np.ndarray] = {}

        ks = valid_ks((1, 3, 5, 10, int(k), top_n), top_n)
        self.k = w.Dropdown(options=list(ks), value=int(k), description="k", layout=w.Layout(width="140px"))
        self.k.add_class("ov-k-select")
        self.pairs = w.Select(options=[], rows=min(12, self.top), description="pairs",
                              layout=w.Layout(width="460px"))
        self.pairs.add_class("ov-pair-select")
        self.summary = w.HTML()
        self.prev_button = w.Button(description="◀ prev", layout=w.Layout(width="80px"))
        self.prev_button.add_class("ov-prev-page")
        self.next_button = w.Button(description="next ▶", layout=w.Layout(width="80px"))
        self.next_button.add_class("ov-next-page")
        self.page_label = w.HTML()
        self.heat = self._slot("ov-confusion-image")
        self.grid = self._slot("ov-confused-queries-image")

        self.k.observe(self._on_k, names="value")
        self.pairs.observe(self._on_pair, names="value")
        self.prev_button.on_click(lambda _: self.prev_page())
        self.next_button.on_click(lambda _: self.next_page())
        self.children = [
            w.HBox([self.k, self.heat.progress]), self.summary, self.pairs,
            self.heat.image, self.heat.status,
            w.HBox([self.prev_button, self.page_label, self.next_button, self.grid.progress]),
            self.grid.image, self.grid.status,
        ]
        self._fill_pairs()
        self._start()

    # ---------------------------------------------------------------- state
    @property
    def table(self) -> pd.DataFrame:
        """``res.confusions(k)`` for the chosen k (computed once per k)."""
        k = int(self.k.value)
        if k not in self._tables:
            self._tables[k] = self.res.confusions(k=k)
        return self._tables[k]

    def _order(self) -> np.ndarray:
        if self.selected is None:
            return np.empty(0, dtype=np.int64)
        a, b = self.selected
        key = (int(self.k.value), self.pairs.value)
        if key not in self._queries:
            self._queries[key] = self.res.confused_queries(a, b, k=int(self.k.value))
        return self._queries[key]

    @property
    def state(self) -> dict:
        return {"k": int(self.k.value), "selected": self.selected, "page": self.page}

    # ---------------------------------------------------------------- actions
    def select(self, a: Hashable, b: Hashable) -> None:
        """Show the queries of label ``a`` that retrieved label ``b`` (a pair of the list)."""
        for i, (qa, qb) in enumerate(zip(self.table["query_label"], self.table["retrieved_label"])):
            if i >= self.top:
                break
            if qa == a and qb == b:
                self.pairs.value = i  # the observer refreshes
                return
        raise ValueError(f"({a!r}, {b!r}) is not among the {self.top} most confused pairs at k={self.k.value}")

    def _fill_pairs(self) -> None:
        head = self.table.head(self.top)
        self.pairs.options = [
            (f"{a} → {b}   ({c} results, {q} queries, {s:.0%})", i)
            for i, (a, b, c, q, s) in enumerate(head[["query_label", "retrieved_label", "count", "queries",
                                                     "share"]].itertuples(index=False))]
        n = len(self.table)
        self.summary.value = (f"<span style='color:#666'>{n} confused label pairs within the first "
                              f"{int(self.k.value)} results; the {min(n, self.top)} most frequent below. "
                              "Pick one to see its queries.</span>")

    def _on_k(self, change: dict) -> None:
        self.selected, self.page = None, 0
        self._fill_pairs()
        self.pairs.value = None
        self._refresh()

    def _on_pair(self, change: dict) -> None:
        i = change["new"]
        if i is None:
            self.selected = None
        else:
            row = self.table.iloc[int(i)]
            self.selected = (row["query_label"], row["retrieved_label"])
        self.page = 0
        self._refresh()

    # ---------------------------------------------------------------- views
    def _refresh(self) -> None:
        if self._closed:
            return
        if self.selected is None:
            self.page_label.value = "&nbsp;<i>pick a pair to see its queries</i>&nbsp;"
        else:
            a, b = self.selected
            self.page_label.value = (f"&nbsp;label <b>{html.escape(str(a))}</b> queries retrieving "
                                     f"<b>{html.escape(str(b))}</b>: page <b>{self.page + 1}</b> / {self.n_pages}"
                                     f" <span style='color:#666'>({len(self._order())} queries)</span>&nbsp;")
        self.prev_button.disabled = self.selected is None or self.page == 0
        self.next_button.disabled = self.selected is None or self.page >= self.n_pages - 1
        super()._refresh()

    def _views(self) -> list:
        k, top, res, conf = int(self.k.value), self.top, self.res, self.table

        def heat() -> bytes:
            return figure_to_png(plot_confusions(res, k=k, top=top, conf=conf))

        views = [(self.heat, ("heat", k, top), heat)]
        if self.selected is not None and self.page_query_ids:
            ids, (a, b) = self.page_query_ids, self.selected
            images, root = self.items.images, self.items.dataset_root
            n_inst, n_gt, tile = self.n_instances, self.n_gt, self.tile_size
            title = f"label {a} queries with label {b} in their first {k} - page {self.page + 1}/{self.n_pages}"

            def grid() -> bytes:
                disp = QueriesDisplay.from_results(res, images, ids, metric=f"map/{k}", n_instances=n_inst,
                                                   n_gt=n_gt, dataset_root=root, tile_size=tile, title=title)
                return rgb_to_png(disp.render_mosaic()[0])

            views.append((self.grid, ("grid", k, self.pairs.value, self.page, n_inst), grid))
        return views
