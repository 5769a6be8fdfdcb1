"""``WorstQueriesPanel``: page through the worst queries; click a result to see why it matched.

The grid is :class:`oml_viz.render.QueriesDisplay`'s mosaic. Under it, one row of small buttons
per query (one per shown result, green = relevant, red = not) opens the pairwise explanation
(:func:`oml_viz.explain.explain_pair`) of that query and that result. The buttons are made once
and relabelled in place when the page changes. The next page is rendered ahead while idle.

Example:
    >>> import numpy as np, oml_viz as ov
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 3)                                   # 4 labels x 3 items
    >>> images = [np.full((32, 32, 3), 40 * (i % 6), np.uint8) for i in range(12)]
    >>> res = ov.retrieve(rng.normal(size=(12, 8)).astype(np.float32) + labels[:, None], labels, top_n=5)
    >>> vit = ov.models.ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32,
    ...                              depth=1, num_heads=2)
    >>> import tempfile
    >>> panel = WorstQueriesPanel(res, images, model=vit, metric="cmc/1", n_queries=2, n_instances=2,
    ...                           background=False)
    >>> panel.next_page(); panel.select(panel.page_query_ids[0], rank=1)
    >>> panel.page, panel.selected[1]
    (1, 1)
    >>> panel.export_png(f"{tempfile.mkdtemp()}/worst.png").suffix
    '.png'
    >>> panel.close()
"""
from __future__ import annotations

import os
from typing import Any, Hashable, Sequence

import ipywidgets as w
import numpy as np

from oml_viz.checks import check_int
from oml_viz.render import GT_COLOR, NOT_RELEVANT_COLOR, QUERY_COLOR, RELEVANT_COLOR, QueriesDisplay

from .base import Panel, default_metric, item_categories
from .items import Items, result_metric_names
from .paging import PagedQueries
from .png import captioned_strip, rgb_to_png

_ALL = "(all)"


class WorstQueriesPanel(PagedQueries, Panel):
    """Worst queries of a result, ``n_queries`` per page, with their results and ground truths.

    Args:
        res: the :class:`oml_viz.RetrievalResult`.
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        model: a timm model or ``oml_viz.models`` extractor for the pairwise explanation; None
            shows the two images without maps.
        categories: one per item (default: the result's, else the dataframe's ``category``).
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        metric: the per-query metric to rank by first (e.g. ``"cmc/1"``; default ``"map/5"``, or
            ``map/top_n`` when the result holds fewer than 5 columns).
        n_queries: queries per page; n_instances: results per query (at most ``top_n``);
        n_gt: nearest ground truths per query.
        explain_method: ``explain_pair``'s method (``"auto"``: token matching for ViTs, else Grad-CAM).
        tile_size: grid tile side in pixels.
        show_labels, label_names: labels in the tile captions, as in
            :meth:`oml_viz.render.QueriesDisplay.from_results` (on when labels are short).
        background: False makes every render finish before a call returns (scripts, tests).
    """

    css_class = "ov-worst-queries"

    def __init__(self, res: Any, images: Any, *, model: Any = None, categories: Sequence[Hashable] | None = None,
                 dataset_root: str | os.PathLike | None = None, metric: str | None = None, n_queries: int = 5,
                 n_instances: int = 5, n_gt: int = 2, explain_method: str = "auto", tile_size: int = 112,
                 show_labels: bool | None = None, label_names: Any = None, background: bool = True):
        super().__init__(background=background)
        top_n = int(res.retrieved_ids.shape[1])
        for name, v, lo in (("n_queries", n_queries, 1), ("n_instances", n_instances, 1), ("n_gt", n_gt, 0)):
            check_int(name, v, low=lo)
        if n_instances > top_n:
            raise ValueError(f"n_instances={n_instances} is above the result's top_n={top_n}: "
                             f"call retrieve(..., top_n={n_instances})")
        metric = default_metric(top_n, metric)
        options = result_metric_names(res, per_query_only=True)  # as the metrics panel's
        if metric not in options:
            res.per_query(metric)  # raises a clear error for an unknown metric or a k above top_n
            options = [metric, *options]
        self.res, self.model = res, model
        self.items = Items(images, dataset_root, labels=res.labels)
        self.categories = item_categories(images, res, categories)
        self.n_queries, self.n_gt, self.tile_size = int(n_queries), int(n_gt), int(tile_size)
        self.explain_method = explain_method
        if isinstance(label_names, str):  # a dataframe column: per item, read once
            if not hasattr(images, "columns") or label_names not in images.columns:
                raise ValueError(f"label_names: {label_names!r} is not a column of the images dataframe")
            label_names = images[label_names].to_numpy(dtype=object)
        self.show_labels, self.label_names = show_labels, label_names
        self.page = 0
        self.selected: tuple[int, int] | None = None  # (query id, rank from 1)
        self._orders: dict[tuple, np.ndarray] = {}
        self._on_select: list = []

        self.metric = w.Dropdown(options=options, value=metric, description="metric",
                                 layout=w.Layout(width="190px"))
        self.metric.add_class("ov-metric-select")
        by_name = {} if self.categories is None else {str(c): c for c in self.categories[res.query_ids]}
        self.category = w.Dropdown(options=[(_ALL, _ALL), *sorted(by_name.items())], value=_ALL,
                                   description="category", layout=w.Layout(width="230px"),
                                   disabled=self.categories is None)
        self.category.add_class("ov-category-select")
        self.n_instances = w.IntSlider(value=int(n_instances), min=1, max=top_n, description="results",
                                       continuous_update=False, layout=w.Layout(width="260px"))
        self.n_instances.add_class("ov-n-instances")
        self.prev_button = w.Button(description="◀ prev", layout=w.Layout(width="80px"))
        self.prev_button.add_class("ov-prev-page")
        self.next_button = w.Button(description="next ▶", layout=w.Layout(width="80px"))
        self.next_button.add_class("ov-next-page")
        self.page_label = w.HTML()
        self.page_label.add_class("ov-page-label")
        self.grid = self._slot("ov-grid-image")
        self.pair = self._slot("ov-pair-image")

        # One row of result buttons per query slot, made once and relabelled per page.
        self._row_labels = [w.HTML(layout=w.Layout(width="150px")) for _ in range(self.n_queries)]
        self._buttons = [[self._result_button(r, c) for c in range(top_n)] for r in range(self.n_queries)]
        self._rows = [w.HBox([self._row_labels[r], *self._buttons[r]]) for r in range(self.n_queries)]
        for row in self._rows:
            row.add_class("ov-result-row")
        self.pair_title = w.HTML("<i>Click a result button to see what made the query and that result similar.</i>")

        self.prev_button.on_click(lambda _: self.prev_page())
        self.next_button.on_click(lambda _: self.next_page())
        for control in (self.metric, self.category, self.n_instances):
            control.observe(self._on_control, names="value")
        self.children = [
            w.HBox([self.metric, self.category, self.n_instances]),
            w.HBox([self.prev_button, self.page_label, self.next_button, self.grid.progress]),
            self.grid.image, self.grid.status,
            w.HTML("<b>Explain a result</b> (query row → result rank):"), *self._rows,
            w.HBox([self.pair_title, self.pair.progress]), self.pair.image, self.pair.status,
        ]
        self._start()

    # ---------------------------------------------------------------- state
    @property
    def category_value(self) -> Hashable | None:
        return None if self.category.value == _ALL else self.category.value

    def _order(self) -> np.ndarray:
        """All ranked queries for the metric and category, worst first (the engine ranks them)."""
        key = (self.metric.value, self.category.value)
        if key not in self._orders:
            self._orders[key] = np.asarray(self.res.worst_queries(
                self.metric.value, len(self.res.query_ids), self.category_value,
                categories=self.categories if self.category_value is not None else None), dtype=np.int64)
        return self._orders[key]

    @property
    def state(self) -> dict:
        return {"metric": self.metric.value, "category": self.category_value, "page": self.page,
                "n_instances": self.n_instances.value, "selected": self.selected}

    # ---------------------------------------------------------------- actions
    def select(self, query_id: int, rank: int) -> None:
        """Explain the pair (query ``query_id``, its result at ``rank``, counted from 1)."""
        row = int(np.searchsorted(self.res.query_ids, query_id))
        if row >= len(self.res.query_ids) or self.res.query_ids[row] != query_id:
            raise ValueError(f"query_id: item {query_id} is not a query of this result")
        k = self.res.retrieved_ids.shape[1]
        if not 1 <= int(rank) <= k or self.res.retrieved_ids[row, int(rank) - 1] < 0:
            raise ValueError(f"rank: query {query_id} has no result at rank {rank}")
        self.selected = (int(query_id), int(rank))
        self._refresh()
        for callback in self._on_select:
            callback(int(query_id), int(self.res.retrieved_ids[row, int(rank) - 1]))

    def on_select(self, callback: Any) -> None:
        """Call ``callback(query_id, result_item_id)`` whenever a result is selected."""
        self._on_select.append(callback)

    def _on_control(self, change: dict) -> None:
        if change["owner"] is not self.n_instances:
            self.page = 0
        self._refresh()

    def _result_button(self, r: int, c: int) -> w.Button:
        b = w.Button(description=f"#{c + 1}", layout=w.Layout(width="46px", display="none"))
        b.add_class("ov-result-button")

        def click(_: w.Button) -> None:
            ids = self._page_ids(self.page)
            if r < len(ids):
                self.select(int(ids[r]), c + 1)

        b.on_click(click)
        return b

    # ---------------------------------------------------------------- views
    def _refresh(self) -> None:
        if self._closed:
            return
        page_ids = self._page_ids(self.page)
        n_pages, total = self.n_pages, len(self._order())
        self.page_label.value = (f"&nbsp;page <b>{self.page + 1}</b> / {n_pages} &nbsp;"
                                 f"<span style='color:#666'>({total} queries)</span>&nbsp;")
        self.prev_button.disabled = self.page == 0
        self.next_button.disabled = self.page >= n_pages - 1
        self._relabel_buttons(page_ids)
        super()._refresh()
        if self.page + 1 < n_pages:  # the likely next click
            key, make = self._grid_view(self.page + 1)
            self.grid.prefetch(key, make)

    def _relabel_buttons(self, page_ids: np.ndarray) -> None:
        n_inst = self.n_instances.value
        for r in range(self.n_queries):
            row_visible = r < len(page_ids)
            self._rows[r].layout.display = None if row_visible else "none"
            if not row_visible:
                continue
            qid = int(page_ids[r])
            q_row = int(np.searchsorted(self.res.query_ids, qid))
            self._row_labels[r].value = f"query <b>{qid}</b>"
            for c, b in enumerate(self._buttons[r]):
                gid = int(self.res.retrieved_ids[q_row, c])
                if c >= n_inst or gid < 0:
                    b.layout.display = "none"
                    continue
                rel = bool(self.res.is_relevant[q_row, c])
                b.layout.display = None
                b.button_style = "success" if rel else "danger"
                b.tooltip = (f"query {qid} vs result #{c + 1}: item {gid}, d={float(self.res.distances[q_row, c]):.3f}, "
                             f"{'relevant' if rel else 'not relevant'}")

    def _grid_view(self, page: int) -> tuple[tuple, Any]:
        ids = self._page_ids(page)
        metric, cat, n_inst = self.metric.value, self.category_value, self.n_instances.value
        title = f"worst queries by {metric}" + (f", category {cat}" if cat is not None else "") + \
                f" - page {page + 1}/{self.n_pages}"
        # the panel's one image source: a missing-files warning comes once per panel, not per page
        res, source, n_gt, tile = self.res, self.items.source, self.n_gt, self.tile_size
        labels = dict(show_labels=self.show_labels, label_names=self.label_names)

        def make() -> bytes:
            disp = QueriesDisplay.from_results(res, source, list(ids), metric=metric, n_instances=n_inst,
                                               n_gt=n_gt, tile_size=tile, title=title, **labels)
            return rgb_to_png(disp.render_mosaic()[0])

        return ("grid", metric, self.category.value, page, n_inst), make

    def _pair_view(self) -> tuple[tuple, Any]:
        qid, rank = self.selected  # type: ignore[misc]
        row = int(np.searchsorted(self.res.query_ids, qid))
        gid = int(self.res.retrieved_ids[row, rank - 1])
        dist = float(self.res.distances[row, rank - 1])
        rel = bool(self.res.is_relevant[row, rank - 1])
        items, model, method = self.items, self.model, self.explain_method
        q_cap = f"query {qid}\nlabel {self.res.labels[qid]}"
        g_cap = f"result #{rank}: item {gid}\nd={dist:.3f} {'relevant' if rel else 'not relevant'}"
        g_color = RELEVANT_COLOR if rel else NOT_RELEVANT_COLOR
        self.pair_title.value = (f"<b>query {qid}</b> vs <b>result #{rank}</b> (item {gid}, "
                                 f"{'relevant' if rel else 'not relevant'})")

        def make() -> bytes:
            q_img, g_img = items.image(qid), items.image(gid)
            if model is None:
                return rgb_to_png(captioned_strip([q_img, g_img], [q_cap, g_cap], 192, [QUERY_COLOR, g_color]))
            from oml_viz.explain import explain_pair

            pair = explain_pair(model, q_img, g_img, method=method)
            q_over, g_over = pair.overlays()
            return rgb_to_png(captioned_strip(
                [q_img, q_over, g_over, g_img],
                [q_cap, f"query map\n({pair.method})", f"result map\n({pair.method})", g_cap], 192,
                [QUERY_COLOR, GT_COLOR, GT_COLOR, g_color]))

        return ("pair", qid, gid, method), make

    def _views(self) -> list:
        views = [(self.grid, *self._grid_view(self.page))]
        if self.selected is not None:
            views.append((self.pair, *self._pair_view()))
        return views
