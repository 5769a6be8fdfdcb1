"""``Dashboard``: the panels as tabs over one shared ``RetrievalResult``, and a static HTML report.

Example:
    >>> import tempfile
    >>> from oml_viz.widgets import Dashboard
    >>> import numpy as np, oml_viz as ov
    >>> rng = np.random.default_rng(0)
    >>> labels = np.repeat(np.arange(4), 3)                                   # 4 labels x 3 items
    >>> images = [np.full((32, 32, 3), 40 * (i % 6), np.uint8) for i in range(12)]
    >>> res = ov.retrieve(rng.normal(size=(12, 8)).astype(np.float32) + labels[:, None], labels, top_n=5)
    >>> vit = ov.models.ViTExtractor("vit_tiny_patch16_224", img_size=32, patch_size=8, embed_dim=32,
    ...                              depth=1, num_heads=2)
    >>> cnn = ov.models.ResnetExtractor("resnet18")
    >>> dash = Dashboard(res, images, model=vit, cnn=cnn, map_method=None, background=False)
    >>> dash.wait().save_html(f"{tempfile.mkdtemp()}/report.html").stat().st_size > 1000
    True
    >>> dash.close()
"""
from __future__ import annotations

import html
import os
import warnings
from pathlib import Path
from typing import Any, Hashable, Sequence

import ipywidgets as w

from oml_viz.explain.inputs import is_vit, unwrap_model
from oml_viz.models.describe import describe_model

from .attention_panel import AttentionPanel
from .base import Panel, close_tree, item_categories, write_atomic
from .compare_panel import ComparePanel, compare_table_html
from .confusion_panel import ConfusionPanel
from .data_issues_panel import DataIssuesPanel
from .embedding_map_panel import EmbeddingMapPanel
from .gradcam_panel import GradCAMPanel
from .items import default_item_ids
from .metrics_panel import MetricsPanel
from .report import html_report
from .tables import metrics_table_html
from .worst_queries_panel import WorstQueriesPanel


class Dashboard(w.VBox):
    """Metrics, worst queries, attention and Grad-CAM tabs over one retrieval result.

    Args:
        res: the :class:`oml_viz.RetrievalResult`.
        images: the N items' images (paths / PIL / arrays) or the OML dataframe.
        model: the embedding model (a ViT gives the Attention tab; it explains result pairs).
        cnn: a CNN for the Grad-CAM tab (default: ``model``).
        dataset_root: root of relative paths (default: ``df.attrs["dataset_root"]``).
        categories: one per item (default: the result's, else the dataframe's ``category``).
        item_ids: the items the Attention and Grad-CAM tabs offer (default: the 12 worst queries).
        metric: the metric the panels start with.
        gradcam_kwargs: more arguments for :class:`GradCAMPanel` (``methods``, ``layers``, ``input_size``).
        background: False makes every render finish before a call returns.
        baseline: another result over the same items (e.g. an earlier checkpoint's): adds a
            Compare tab, ``ov.compare(baseline, res, names=names)``.
        names: what the Compare tab calls the baseline and ``res``.
        map_method: the Map tab's projection of the embeddings (``"umap"``, ``"pca"``, ``"tsne"``;
            None leaves the tab out).
        data_issues: False leaves out the Data issues tab (label errors, duplicates, leaks).

    A Confusions tab (the label pairs ``res`` confuses) is always there. Tabs without what they need (no model, a model that is not a ViT) are left out. A result
    clicked in the Worst queries tab becomes the item of the Attention tab and the item and
    gallery target of the Grad-CAM tab when one of those is opened next (nothing is rendered
    for a hidden tab).
    """

    def __init__(self, res: Any, images: Any, model: Any = None, cnn: Any = None, *,
                 dataset_root: str | os.PathLike | None = None, categories: Sequence[Hashable] | None = None,
                 item_ids: Sequence[int] | None = None, metric: str | None = None,
                 gradcam_kwargs: dict | None = None, background: bool = True, baseline: Any = None,
                 names: tuple[str, str] = ("baseline", "current"), map_method: str | None = "umap",
                 data_issues: bool = True):
        super().__init__()
        self.add_class("ov-dashboard")
        self.res, self.images, self.model, self.cnn = res, images, model, cnn
        self.dataset_root = dataset_root if dataset_root is not None else getattr(images, "attrs", {}).get(
            "dataset_root")
        cats = item_categories(images, res, categories)
        if item_ids is None:
            item_ids = default_item_ids(res, len(res.labels), metric, n=12)
        common = dict(dataset_root=dataset_root, background=background)
        self.metrics = MetricsPanel(res, cats, metric=metric, background=background)
        self.worst = WorstQueriesPanel(res, images, model=model if model is not None else cnn, categories=cats,
                                       metric=metric, **common)
        self.attention: AttentionPanel | None = None
        if model is not None and is_vit(unwrap_model(model)):
            self.attention = AttentionPanel(model, images, res=res, item_ids=item_ids, **common)
        cam_model = cnn if cnn is not None else model
        self.gradcam: GradCAMPanel | None = None
        if cam_model is not None:
            self.gradcam = GradCAMPanel(cam_model, images, res=res, item_ids=item_ids, **common,
                                        **(gradcam_kwargs or {}))
        self.compare: ComparePanel | None = None
        if baseline is not None:
            from oml_viz.analysis import compare

            self.compare = ComparePanel(compare(baseline, res, names=names, categories=cats), images, **common)
        self.confusions = ConfusionPanel(res, images, **common)
        self.embedding_map: EmbeddingMapPanel | None = None
        if map_method is not None:
            try:
                self.embedding_map = EmbeddingMapPanel(res, images, method=map_method, categories=cats, **common)
            except ImportError as e:  # the maps extra is not installed: the other tabs still work
                warnings.warn(f"Map tab left out ({e}); pip install 'oml_viz[maps]'", stacklevel=2)
        self.data_issues: DataIssuesPanel | None = DataIssuesPanel(res, images, **common) if data_issues else None
        pages = [("Metrics", self.metrics), ("Worst queries", self.worst), ("Attention", self.attention),
                 ("Grad-CAM", self.gradcam), ("Compare", self.compare), ("Confusions", self.confusions),
                 ("Map", self.embedding_map), ("Data issues", self.data_issues)]
        pages = [(t, p) for t, p in pages if p is not None]
        self.tabs = w.Tab(children=[p for _, p in pages], titles=[t for t, _ in pages])
        self.tabs.add_class("ov-tabs")
        self.children = [self.tabs]
        self._picked: tuple[int, int] | None = None  # the last (query, result) clicked
        self._applied: dict[int, tuple[int, int]] = {}  # what each tab last followed
        self.worst.on_select(self._on_pick)
        self.tabs.observe(self._on_tab, names="selected_index")

    def _on_pick(self, query_id: int, result_id: int) -> None:
        self._picked = (query_id, result_id)

    def _on_tab(self, change: dict) -> None:
        index = change["new"]
        if self._picked is None or index is None or self._applied.get(index) == self._picked:
            return
        panel = self.tabs.children[index]
        query_id, result_id = self._picked
        if panel is self.attention:
            self.attention.show_item(query_id)
        elif panel is self.gradcam:
            self.gradcam.show_item(query_id, gallery=result_id)
        self._applied[index] = self._picked

    @property
    def panels(self) -> dict[str, Panel]:
        """The panels by tab title."""
        return dict(zip(self.tabs.titles, self.tabs.children))

    def wait(self, timeout: float | None = 120.0) -> "Dashboard":
        """Block until every panel's pending renders are done."""
        for p in self.panels.values():
            p.wait(timeout)
        return self

    def save_html(self, path: str | os.PathLike, title: str = "oml_viz report") -> Path:
        """Write a standalone HTML report of every tab's current view (images inlined as base64).

        Every label, path and title is HTML-escaped; the file is written whole or not at all.
        """
        sections = []
        sections.append(("Metrics", metrics_table_html(self.metrics.table, self.metrics.metric.value),
                         [self.metrics.view_png()]))
        state = self.worst.state
        desc = (f"<p>ranked by <b>{html.escape(str(state['metric']))}</b>, category "
                f"{html.escape(str(state['category'] if state['category'] is not None else 'all'))}, page "
                f"{state['page'] + 1} of {self.worst.n_pages}</p>")
        sections.append(("Worst queries", desc, [self.worst.view_png()]))
        for name, panel in (("Attention", self.attention), ("Grad-CAM", self.gradcam)):
            if panel is not None:
                # a panel that can say what its view shows does (Grad-CAM: whose embedding is the target)
                body = "<p>" + (html.escape(panel.describe()) if hasattr(panel, "describe") else
                                ", ".join(f"{html.escape(str(k))} = {html.escape(str(v))}"
                                          for k, v in panel.state.items())) + "</p>"
                sections.append((name, body, [panel.view_png()]))
        if self.compare is not None:
            c = self.compare
            body = (compare_table_html(c.table, c.metric.value, c.cmp.names)
                    + f"<p>{html.escape(str(c.state['kind']))} queries by {html.escape(str(c.state['metric']))}, "
                    f"page {c.state['page'] + 1} of {c.n_pages}</p>")
            sections.append(("Compare", body, [c.view_png()]))
        conf = self.confusions
        body = (f"<p>{len(conf.table)} confused label pairs within the first {conf.state['k']} results"
                + (f"; queries of label {html.escape(str(conf.selected[0]))} retrieving "
                   f"{html.escape(str(conf.selected[1]))}" if conf.selected is not None else "") + "</p>")
        sections.append(("Confusions", body, [conf.view_png()]))
        if self.embedding_map is not None:
            m = self.embedding_map
            body = (f"<p>{len(m.xy)} items, coloured by <b>{html.escape(str(m.color.value))}</b>"
                    + (f"; {len(m.selected)} selected" if m.selected else "") + "</p>")
            sections.append(("Map", body, [m.view_png()]))
        if self.data_issues is not None:
            di = self.data_issues
            sections.append(("Data issues", f"<p>{di.summary.value}</p><p>view: {html.escape(di.view.value)}, "
                             f"page {di.page + 1} of {di.n_pages}</p>", [di.view_png()]))
        meta = [("result", repr(self.res))]
        if self.dataset_root is not None:
            meta.append(("dataset root", str(self.dataset_root)))
        for name, m in (("model", self.model), ("cnn", self.cnn)):
            if m is not None:
                meta.append((name, describe_model(m)))  # arch + the kwargs that shape it + parameters
        return write_atomic(path, html_report(title, sections, meta).encode("utf-8"))

    def close(self) -> None:
        """Close every panel and widget of the dashboard."""
        for panel in list(self.tabs.children):
            panel.close()
        close_tree(self.tabs)
        super().close()

