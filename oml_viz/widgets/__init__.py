"""oml_viz.widgets: ipywidgets panels over one ``RetrievalResult`` (thin views: no maths here).

- :class:`MetricsPanel`: metrics per category, a metric selector, the CMC@k curve.
- :class:`WorstQueriesPanel`: the worst queries, paged; a click on a result explains the pair.
- :class:`AttentionPanel`: ViT attention per item, block, head (mean / one / max) or rollout.
- :class:`GradCAMPanel`: Grad-CAM per method and layer, toward the own embedding or a gallery item.
- :class:`ComparePanel`: model a against model b with intervals; the regressed / improved queries.
- :class:`ConfusionPanel`: the label pairs a model confuses, heat map, a pair's queries.
- :class:`EmbeddingMapPanel`: the items on a 2-D map (jupyter-scatter); a lasso shows their images.
- :class:`DataIssuesPanel`: suspected label errors, near-duplicates and train/validation leaks.
- :class:`Dashboard`: all of them as tabs, plus ``save_html`` for a static report.

Images are PNG bytes made without pyplot and cached by view state; clicks update existing
widgets in place and heavy work runs on one worker thread. Every panel has ``export_png(path)``
and ``close()``.

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
    >>> dash = Dashboard(res, images, model=vit, map_method=None, background=False)
    >>> dash.save_html(f"{tempfile.mkdtemp()}/report.html").name
    'report.html'
    >>> dash.close()
"""
from .attention_panel import AttentionPanel
from .base import Panel
from .compare_panel import ComparePanel
from .confusion_panel import ConfusionPanel
from .dashboard import Dashboard
from .data_issues_panel import DataIssuesPanel
from .embedding_map_panel import EmbeddingMapPanel
from .gradcam_panel import GradCAMPanel, target_layer_names
from .metrics_panel import MetricsPanel, metrics_figure
from .png import PngCache, figure_to_png, rgb_to_png
from .worst_queries_panel import WorstQueriesPanel

__all__ = [
    "AttentionPanel",
    "ComparePanel",
    "ConfusionPanel",
    "Dashboard",
    "DataIssuesPanel",
    "EmbeddingMapPanel",
    "GradCAMPanel",
    "MetricsPanel",
    "Panel",
    "PngCache",
    "WorstQueriesPanel",
    "figure_to_png",
    "metrics_figure",
    "rgb_to_png",
    "target_layer_names",
]
