"""``MetricsPanel``: metrics per category as a table, a metric selector and the CMC@k curve.

Example:
    >>> from oml_viz.widgets import MetricsPanel
    >>> import numpy as np, oml_viz as ov
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 3)                                   # 4 labels x 3 items
    >>> images = [np.full((32, 32, 3), 40 * (i % 6), np.uint8) for i in range(12)]
    >>> res = ov.retrieve(rng.normal(size=(12, 8)).astype(np.float32) + labels[:, None], labels, top_n=5)
    >>> panel = MetricsPanel(res, categories=np.where(labels < 2, "even", "odd"), background=False)
    >>> panel.wait().view_png()[:4]
    b'\x89PNG'
    >>> panel.close()
"""
from __future__ import annotations

import warnings
from collections.abc import Hashable, Sequence
from typing import Any

import ipywidgets as w
import numpy as np
import pandas as pd

from ..render import metrics_figure
from .base import Panel, default_metric, item_categories
from .base import valid_ks as _ks
from .items import DEFAULT_FMR_VALS, result_metric_args
from .png import figure_to_png
from .tables import metrics_table_html


class MetricsPanel(Panel):
    """Metrics of a :class:`oml_viz.RetrievalResult` per category, with the CMC@k curve.

    Args:
        res: the retrieval result.
        categories: one category per item (default: the result's own categories; else OVERALL only).
        images: optional OML dataframe whose ``category`` column is used when neither is given.
        metric: the metric selected first (default ``"map/5"``, else the first column).
        precision_top_k, map_top_k, cmc_top_k: k values of the table (k above ``res.top_n`` are
            dropped); None (default): the result's metrics, as every panel offers them
            (:func:`oml_viz.widgets.items.result_metric_args`). The curve uses every k up to ``top_n``.
        fmr_vals, pcf_variance: extra columns, as in ``res.metrics`` (default ``fnmr@fmr/0.1``).

    The table is computed once, here; the selector only redraws.
    """

    css_class = "ov-metrics"

    def __init__(self, res: Any, categories: Sequence[Hashable] | None = None, *, images: Any = None,
                 metric: str | None = None, cmc_top_k: Sequence[int] | None = None,
                 precision_top_k: Sequence[int] | None = None, map_top_k: Sequence[int] | None = None,
                 fmr_vals: Sequence[float] = DEFAULT_FMR_VALS, pcf_variance: Sequence[float] = (),
                 background: bool = True):
        super().__init__(background=background)
        self.res = res
        top_n = int(res.retrieved_ids.shape[1])
        cats = item_categories(images, res, categories)
        curve = tuple(range(1, top_n + 1))
        own = result_metric_args(res, fmr_vals, pcf_variance)
        cmc_top_k = own["cmc_top_k"] if cmc_top_k is None else cmc_top_k
        precision_top_k = own["precision_top_k"] if precision_top_k is None else precision_top_k
        map_top_k = own["map_top_k"] if map_top_k is None else map_top_k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the no-ground-truth warning is shown in the panel instead
            full = res.metrics(cmc_top_k=_ks((*cmc_top_k, *curve), top_n), precision_top_k=_ks(precision_top_k, top_n),
                               map_top_k=_ks(map_top_k, top_n), fmr_vals=tuple(fmr_vals),
                               pcf_variance=tuple(pcf_variance), categories=cats)
        self.cmc_columns = [f"cmc/{k}" for k in curve]
        shown = [c for c in full.columns if not c.startswith("cmc/") or int(c.split("/")[1]) in _ks(cmc_top_k, top_n)]
        self.table: pd.DataFrame = full[shown]
        self.curve_table: pd.DataFrame = full[self.cmc_columns]
        metric = default_metric(top_n, metric)
        if metric not in self.table.columns:
            metric = self.table.columns[0] if metric == default_metric(top_n) else metric
        if metric not in self.table.columns:
            raise ValueError(f"metric: {metric!r} is not a column of the table {list(self.table.columns)}")

        self.metric = w.Dropdown(options=list(self.table.columns), value=metric, description="metric")
        self.metric.add_class("ov-metric-select")
        self.table_html = w.HTML(metrics_table_html(self.table, metric))
        self.table_html.add_class("ov-metrics-table")
        self.plot = self._slot("ov-metrics-image")
        no_gt = int((np.asarray(res.n_gt) == 0).sum())
        note = (f"<i>{no_gt} of {len(res.n_gt)} queries have no ground truth and are left out of the means.</i>"
                if no_gt else "")
        self.children = [w.HBox([self.metric, self.plot.progress]), self.table_html, w.HTML(note),
                         self.plot.image, self.plot.status]
        self.metric.observe(self._on_metric, names="value")
        self._start()

    def _on_metric(self, change: dict) -> None:
        self.table_html.value = metrics_table_html(self.table, change["new"])
        self._refresh()

    def _views(self) -> list:
        metric = self.metric.value
        data = pd.concat([self.table, self.curve_table.drop(columns=self.table.columns, errors="ignore")], axis=1)

        def make() -> bytes:
            return figure_to_png(metrics_figure(data, metric, self.cmc_columns))

        return [(self.plot, ("metrics", metric), make)]

    @property
    def state(self) -> dict:
        return {"metric": self.metric.value}
